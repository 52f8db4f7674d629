"""Randomize-then-optimize: exact on a Gaussian posterior, corrected by its weights on a curved one."""

from __future__ import annotations

import pytest
import torch

from geoinv import ConfigError, InverseProblem
from geoinv.sampling.rto import RTOConfig, independence_chains, rto_draws

from .test_sampling import gaussian_posterior, latent_problem


def test_on_a_linear_forward_every_draw_weighs_alike_and_the_draws_are_the_posterior():
    problem, _, _, _, mean, covariance = gaussian_posterior()
    draws = rto_draws(problem, torch.zeros(3), 6000, torch.Generator().manual_seed(2))
    assert draws.converged.all() and draws.iterations <= 3  # a linear system: one Newton step
    assert float(draws.log_weight.max() - draws.log_weight.min()) < 1e-6
    chains, acceptance = independence_chains(draws, 4, torch.Generator().manual_seed(3))
    assert chains.shape == (4, 1500, 3) and (acceptance == 1).all()
    samples = chains.reshape(-1, 3).double()
    standard_error = covariance.diagonal().sqrt().double() / samples.shape[0] ** 0.5
    assert ((samples.mean(dim=0) - mean.double()).abs() < 4 * standard_error).all()
    torch.testing.assert_close(torch.cov(samples.T), covariance.double(),
                               atol=0.08 * float(covariance.diagonal().max()), rtol=0)


def curved_problem() -> tuple[InverseProblem, torch.Tensor, torch.Tensor]:
    """One latent coordinate, F(z) = z + 0.4 z³ observed twice, σ = 0.6: a skewed posterior, its mean and
    variance by quadrature on a fine grid."""
    sigma, observed = 0.6, torch.tensor([1.9, 2.4])
    problem = latent_problem(lambda z: (z + 0.4 * z**3).expand(-1, 2), 1, observed, sigma)
    grid = torch.linspace(-4, 4, 40001, dtype=torch.float64)
    predicted = grid + 0.4 * grid**3
    log_density = -0.5 * grid**2 - 0.5 * ((predicted[:, None] - observed.double()) / sigma).pow(2).sum(dim=1)
    density = (log_density - log_density.max()).exp()
    density /= density.sum()
    mean = (density * grid).sum()
    return problem, mean, (density * (grid - mean) ** 2).sum()


def test_on_a_curved_forward_the_weights_correct_the_draws_to_the_posterior():
    problem, mean, variance = curved_problem()
    draws = rto_draws(problem, torch.tensor([0.95]), 16000, torch.Generator().manual_seed(4))
    assert draws.converged.all()
    assert float(draws.log_weight.std()) > 0.01  # the forward bends: the proposal is not the posterior
    raw = draws.latent.double()[:, 0]
    chains, acceptance = independence_chains(draws, 4, torch.Generator().manual_seed(5))
    corrected = chains.reshape(-1).double()
    assert 0.5 < float(acceptance.mean()) < 1.0
    # the chains' mean within 5 standard errors of the quadrature (correlated draws: an effective
    # sample of about the accepted moves); the uncorrected proposal is measurably off
    error = 5 * (variance / (acceptance.mean() * corrected.numel())).sqrt()
    assert abs(corrected.mean() - mean) < error < abs(raw.mean() - mean)  # 0.0005 < 0.006 < 0.016
    assert abs(corrected.var() - variance) < 0.06 * variance
    assert abs(raw.var() - variance) > 2 * abs(corrected.var() - variance)


def test_bad_settings_and_problems_are_refused():
    problem, *_ = gaussian_posterior()
    with pytest.raises(ConfigError, match="iterations"):
        RTOConfig(iterations=0)
    with pytest.raises(ConfigError, match="tolerance"):
        RTOConfig(tolerance=2.0)
    with pytest.raises(ConfigError, match="n_draws"):
        rto_draws(problem, torch.zeros(3), 0)
    skewed = InverseProblem(lambda z: z, 2, 2, lambda n, generator=None: torch.randn(n, 2, generator=generator),
                            observed=[0.0, 0.0], noise_std=1.0, log_prior=lambda z: -z.abs().sum(dim=1))
    with pytest.raises(ConfigError, match="standard-normal"):
        rto_draws(skewed, torch.zeros(2), 4)
    draws = rto_draws(problem, torch.zeros(3), 4)
    with pytest.raises(ConfigError, match="2 draws per chain"):
        independence_chains(draws, 3)
