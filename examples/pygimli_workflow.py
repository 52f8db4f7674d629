"""A pyGIMLi user's round trip: .sgt file in, geoinv's structured prior, pyGIMLi vectors out
=========================================================================================

1. Simulate a crosshole survey over a channelized truth and write it as a
   pyGIMLi unified data file (``.sgt``) with pyGIMLi itself.
2. Read it back with ``geoinv.read_survey`` (sensors, picks, errors).
3. Invert with geoinv's latent SGD (the shipped VAE prior) and with pyGIMLi's
   smoothness-constrained inversion (``pygimli-smooth``), same grid and data.
4. Hand both results back as pyGIMLi cell vectors and plot them with ``pg.show``.

Run from the repository root: ``python examples/pygimli_workflow.py``
(about 8 minutes on 2 cores, most of it pyGIMLi's Dijkstra Jacobians: ≈ 15 s
each on this 129 × 65 grid; ``--quick`` for a shorter look, ≈ 3 minutes).
"""

import os
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pygimli as pg
import torch

import geoinv
from geoinv.interop import solutions_to_mesh
from geoinv.io.pygimli import grid_to_mesh, model_to_mesh, survey_to_data_container

matplotlib.use("Agg")
import matplotlib.pyplot as plt

QUICK = os.environ.get("GEOINV_QUICK") == "1" or "--quick" in sys.argv  # small settings (the docs build)
output = Path("pygimli_workflow")
output.mkdir(exist_ok=True)

# 1. a synthetic field survey, written by pyGIMLi
grid, survey = geoinv.Grid2D.crosshole(), geoinv.Survey.crosshole()
prior = geoinv.default_vae().frozen()
petrophysics = geoinv.FaciesVelocity()  # channels 0.06 m/ns in a 0.08 m/ns matrix
truth = prior.sample(1, torch.Generator().manual_seed(3))[0]
operator = geoinv.forward("eikonal", grid=grid, survey=survey)
field = operator.make_synthetic_data(petrophysics.slowness(truth.double()), noise_std=0.25e-9,
                                     generator=torch.Generator().manual_seed(4))
container = survey_to_data_container(field)
container.save(str(output / "crosshole.sgt"), "s g t err")
print(f"wrote {output / 'crosshole.sgt'}: {container}")

# 2. read it back as a geoinv survey (errors from the file's err column)
survey_in, _ = geoinv.read_survey(output / "crosshole.sgt")
print(survey_in)

# 3. invert: latent SGD with the VAE prior, and pyGIMLi's smoothness inversion
starts, iterations = (2, 1) if QUICK else (4, 12)
schedule = geoinv.default_latent_sgd(operator, n_starts=starts, epochs=1 if QUICK else None)
latent = geoinv.invert(survey_in, prior, operator, geoinv.solver("latent-sgd", schedule), petrophysics,
                       n_candidates=starts, seed=0)
print("latent SGD:", latent.summary(), sep="\n")
smooth = geoinv.invert(survey_in, prior, "eikonal",
                       geoinv.solver("pygimli-smooth", max_iterations=iterations), petrophysics, grid=grid)
print("pyGIMLi smoothness:", smooth.summary(), sep="\n")
for name, result in (("latent SGD", latent), ("pyGIMLi smooth", smooth)):
    rmse = float((result.models[0, 0] - truth).pow(2).mean().sqrt())
    print(f"{name}: model RMSE {rmse:.3f} (facies units)")

# 4. back to pyGIMLi: cell vectors on the grid mesh, ready for pg.show
mesh = grid_to_mesh(grid)
latent_vectors = solutions_to_mesh(latent, grid, mesh)
smooth_vectors = solutions_to_mesh(smooth, grid, mesh)
panels = [("truth", model_to_mesh(truth, grid, mesh)), ("latent SGD (best)", latent_vectors["best"]),
          ("latent SGD (channel probability)", latent_vectors["channel_probability"]),
          ("pyGIMLi smoothness", smooth_vectors["best"])]
figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 5))
for axis, (title, vector) in zip(axes, panels):
    pg.show(mesh, vector, ax=axis, cMap="gray_r", cMin=0, cMax=1, label="facies", showMesh=False)
    axis.set_title(title, fontsize=9)
figure.tight_layout()
figure.savefig(output / "pygimli_workflow.png", dpi=110)
print(f"wrote {output / 'pygimli_workflow.png'}")
assert np.isfinite(latent_vectors["best"]).all() and np.isfinite(smooth_vectors["best"]).all()
