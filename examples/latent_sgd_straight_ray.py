"""Invert synthetic crosshole traveltimes in the latent space of the shipped VAE.

The Python-API version of ``geoinv demo``: a decoder sample is the truth, so
scheduled SGD should fit the data to the noise level. Run it from the
repository root: ``python examples/latent_sgd_straight_ray.py`` (about a minute).
"""

import torch

import geoinv
from geoinv.plot import inversion_figure

grid, survey = geoinv.Grid2D.crosshole(), geoinv.Survey.crosshole()
vae = geoinv.default_vae()
vae.requires_grad_(False)                 # we optimise z, not the network
petrophysics = geoinv.FaciesVelocity()    # channel 0.06 m/ns, matrix 0.08 m/ns
operator = geoinv.StraightRay(grid, survey)

problem = geoinv.InverseProblem.latent_tomography(vae, petrophysics, operator, noise_std=0.25)
generator = torch.Generator().manual_seed(42)
true_latent = torch.randn(1, vae.latent_dim, generator=generator)
observed = problem.simulate(true_latent, noise_std=0.25, generator=generator)[0]   # ns
problem = problem.with_observed(observed)

config = geoinv.LatentSGDConfig.reference_linear(n_starts=10)
solutions = geoinv.solver("latent-sgd", config).solve(problem)
print(solutions.summary())
truth = problem.model(true_latent)[0]
print("model RMSE of the best start:", float((solutions.models[0, 0] - truth).pow(2).mean().sqrt()))
inversion_figure(grid, solutions, "latent_sgd_straight_ray.png", truth.numpy(), survey)
print("wrote latent_sgd_straight_ray.png")
