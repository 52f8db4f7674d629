"""Invert synthetic crosshole traveltimes in the latent space of the shipped VAE
=============================================================================

The Python-API version of ``geoinv demo``: a decoder sample is the truth, so
scheduled SGD should fit the data to the noise level. Run it from the
repository root: ``python examples/latent_sgd_straight_ray.py`` (about a minute).
"""

import os
import sys

import torch

import geoinv
from geoinv.plot import inversion_figure

QUICK = os.environ.get("GEOINV_QUICK") == "1" or "--quick" in sys.argv  # small settings (the docs build)

grid, survey = geoinv.Grid2D.crosshole(), geoinv.Survey.crosshole()
prior = geoinv.default_vae().frozen()     # we optimise z, not the network
petrophysics = geoinv.FaciesVelocity()    # channel 0.06 m/ns, matrix 0.08 m/ns
operator = geoinv.StraightRay(grid, survey)

generator = torch.Generator().manual_seed(42)
truth = prior.sample(1, generator)[0]     # facies of a decoder sample
field = operator.make_synthetic_data(petrophysics.slowness(truth.double()), noise_std=0.25e-9,
                                     generator=generator)   # traveltimes and errors in s

config = geoinv.LatentSGDConfig.reference_linear(n_starts=10)
solver = geoinv.solver("latent-sgd", config.with_epochs(2) if QUICK else config)
solutions = geoinv.invert(field, prior, operator, solver, petrophysics)
print(solutions.summary())
print("model RMSE of the best start:", float((solutions.models[0, 0] - truth).pow(2).mean().sqrt()))
inversion_figure(grid, solutions, "latent_sgd_straight_ray.png", truth.numpy(), field)
print("wrote latent_sgd_straight_ray.png")
