"""Field picks in a column file, with unknown facies velocities and a time-zero offset
====================================================================================

Field surveys come as pick files, not as geoinv HDF5: one pick per line with
the source and receiver positions, the time and its error. They never come with
the facies velocities, and radar picks often carry a constant time-zero offset.
This example makes such a file itself (boreholes at x = 10 and 15 m, picks
2.2 ns late, velocities the inversion is not told), reads it, places the
boreholes on the prior's canvas, and inverts for the model, both velocities and
the offset together. Run it from the repository root:
``python examples/field_survey.py`` (about two minutes on one core).
"""

import os
import sys

import numpy as np
import torch

import geoinv
from geoinv.canvas import describe_placement, place_on_canvas
from geoinv.nuisance import DISPLAY_UNITS
from geoinv.plot import inversion_figure

QUICK = os.environ.get("GEOINV_QUICK") == "1" or "--quick" in sys.argv  # small settings (the docs build)

# %%
# A synthetic field survey, written as a CSV file the way a picking program would
prior = geoinv.default_vae().frozen()
depths = np.arange(1.0, 12.01, 0.5)
geometry = geoinv.Survey(np.c_[np.full(depths.size, 10.0), depths], np.c_[np.full(depths.size, 15.0), depths])
canvas = place_on_canvas(geometry, prior.model_shape)            # the prior's 129 × 65 cells, centred
true_velocities = geoinv.FaciesVelocity(0.068, 0.091)           # m/ns; the inversion is not told
true_time_zero, error = 2.2e-9, 0.8e-9                           # s
truth = prior.sample(1, torch.Generator().manual_seed(23))[0]
clean = geoinv.StraightRay(canvas, geometry)(true_velocities.slowness(truth.double())[None])[0].numpy()
picks = clean + true_time_zero + np.random.default_rng(5).normal(0.0, error, clean.shape)
table = np.column_stack([geometry.source_positions, geometry.receiver_positions, picks * 1e9,
                         np.full(picks.size, error * 1e9)])
np.savetxt("field_picks.csv", table, fmt="%.6g", delimiter=",",
           header="source_x,source_z,receiver_x,receiver_z,time,sigma", comments="")

# %%
# Read it (times in ns; the header names the columns), and see what the picks say
survey, _ = geoinv.read_survey("field_picks.csv", time_unit="ns")
apparent = survey.apparent_velocities() * 1e-9                   # m/ns
start = geoinv.start_velocities(survey)
print(f"{survey}: apparent velocities {apparent.min():.4f}-{apparent.max():.4f} m/ns; start "
      f"{start.channel_velocity * 1e-9:.4f}/{start.matrix_velocity * 1e-9:.4f} m/ns")
print(f"on the prior's canvas: {describe_placement(canvas)}")

# %%
# Invert for the model, both velocities and the time zero (start: the picks' apparent velocities)
operator = geoinv.forward("straight-ray", grid=canvas, survey=survey)
method = geoinv.make_solver("latent-sgd", operator, n_starts=2 if QUICK else 10, epochs=1 if QUICK else None)
solutions = geoinv.invert(survey, prior, operator, method, unknowns=geoinv.FieldUnknowns())
print(solutions.summary())
truths = {"channel_velocity": true_velocities.channel_velocity, "matrix_velocity": true_velocities.matrix_velocity,
          "time_zero": true_time_zero}
for name, (best, mean, spread) in solutions.unknowns_summary().items():
    factor, unit = DISPLAY_UNITS[name]
    print(f"{name}: best {best * factor:.4f} {unit}, mean {mean * factor:.4f} ± {spread * factor:.4f} "
          f"(true {truths[name] * factor:.4f})")

# %%
# The result figure: truth, best model, posterior mean, standard deviation and channel probability
inversion_figure(canvas, solutions, "field_survey.png", truth.numpy(), survey,
                 title="field picks, velocities and time zero estimated")
print("wrote field_picks.csv and field_survey.png")
