"""The latent-search options: staged schedules, decoder temperature, χ² weights, refinement beyond the prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import (
    ConfigError,
    FaciesVelocity,
    InverseProblem,
    LatentSGDConfig,
    StraightRay,
    build_problem,
    solver,
)
from geoinv.solvers import Stage
from geoinv.solvers.refine import RefineConfig, refine_models

from .helpers import SMALL, TinyDecoder

TRUTH = torch.tensor([[0.8, -0.5, 0.3]])


@pytest.fixture
def setting(small_grid, small_survey):
    prior = TinyDecoder(small_grid.shape)
    operator = StraightRay(small_grid, small_survey)
    return prior, operator, FaciesVelocity()


def _field(setting, model, errors_s, seed=3):
    _, operator, petro = setting
    return operator.make_synthetic_data(petro.slowness(model.double()), errors_s, torch.Generator().manual_seed(seed))


def test_stages_run_in_order_with_their_own_settings(setting):
    prior, operator, petro = setting
    field = _field(setting, prior.decode(TRUTH)[0], 0.05e-9)
    polish = Stage(optimizer="adam", step_size=1e-2, step_decay=1.0, epochs=100, batch_size=None,
                   regularization="none", reg_weight=0.0)
    config = LatentSGDConfig(**{**SMALL, "epochs": 60, "temperature": 2.0}, then=(polish,))
    solutions = solver("latent-sgd", config).solve(build_problem(field, prior, operator, petro))
    history = solutions.history
    steps_first = 60 * 5  # 25 data in minibatches of 5
    assert list(np.unique(history["stage"])) == [0, 1]
    assert (history["stage"] == 0).sum() == steps_first and (history["stage"] == 1).sum() == 100
    assert set(history["temperature"][:steps_first]) == {2.0} and set(history["temperature"][steps_first:]) == {1.0}
    np.testing.assert_allclose(history["step_size"][steps_first:], 1e-2)
    assert history["step"][-1] == steps_first + 100
    assert solutions.accepted[0, 0]
    assert config.stages[1] == polish and solutions.config["then"][0]["optimizer"] == "adam"


def test_stage_settings_are_validated():
    with pytest.raises(ConfigError, match="temperature"):
        Stage(temperature=0.5)
    with pytest.raises(ConfigError, match="Stage"):
        LatentSGDConfig(then=("adam",))
    assert LatentSGDConfig(then=({"optimizer": "adam"},)).stages[1].optimizer == "adam"
    assert LatentSGDConfig.named("sgd-linear").then[0].optimizer == "adam"
    continuation = LatentSGDConfig.named("default-linear")
    assert [stage.optimizer for stage in continuation.stages] == ["gauss-newton"] * 6
    assert [stage.temperature for stage in continuation.stages] == [32.0, 16.0, 8.0, 4.0, 2.0, 1.0]
    assert (continuation.explore, continuation.explore_stages) == (5, None)
    with pytest.raises(ConfigError, match="temperatures"):
        LatentSGDConfig.gauss_newton_continuation(temperatures=(4.0, 1.0))


def test_temperature_smooths_the_decoder(setting):
    prior, operator, petro = setting
    latent = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    warm = prior.tempered(4.0)
    torch.testing.assert_close(warm.decode(latent), torch.sigmoid(prior.decode_logits(latent) / 4.0))
    assert prior.tempered(1.0) is prior and warm.latent_dim == 3 and warm.model_shape == prior.model_shape
    assert (warm.decode(latent) - 0.5).abs().mean() < (prior.decode(latent) - 0.5).abs().mean()
    problem = InverseProblem.latent_tomography(prior, petro, operator, noise_std=0.1)
    problem = problem.with_observed(problem.forward(latent[:1])[0])
    tempered = problem.tempered(4.0)
    assert torch.equal(tempered.observed, problem.observed) and torch.equal(tempered.noise_std, problem.noise_std)
    torch.testing.assert_close(tempered.forward(latent), problem.forward(latent) * 0 + tempered.forward(latent))
    assert not torch.allclose(tempered.forward(latent), problem.forward(latent))
    generic = InverseProblem(lambda x: x, 2, 2, lambda n, generator=None: torch.zeros(n, 2))
    with pytest.raises(ConfigError, match="temperature"):
        generic.tempered(2.0)


def test_chi_square_weights_discount_noisy_data(setting):
    """Five picks are 1.5 ns off but say so (σ = 5 ns): the χ² objective recovers the truth, the
    unweighted one (same data, equal errors) is pulled away by them."""
    prior, operator, petro = setting
    truth = prior.decode(TRUTH)[0]
    clean = _field(setting, truth, 0.02e-9)
    times = clean.traveltimes.copy()
    times[:5] += 1.5e-9
    errors = np.full(clean.n_data, 0.02e-9)
    errors[:5] = 5e-9
    config = LatentSGDConfig(**SMALL)
    weighted = solver("latent-sgd", config).solve(build_problem(clean.with_data(times, errors), prior, operator, petro))
    plain = solver("latent-sgd", config).solve(build_problem(clean.with_data(times, 0.02e-9), prior, operator, petro))
    error_weighted = (weighted.parameters[0, 0] - TRUTH[0]).norm()
    error_plain = (plain.parameters[0, 0] - TRUTH[0]).norm()
    assert weighted.accepted[0, 0] and error_weighted < 0.05
    assert error_plain > 3 * error_weighted


def test_refinement_goes_beyond_the_prior(setting):
    """Truth = a decoder model plus a channel blob the decoder cannot make: refining the best
    decoded models fits the data to the noise where the prior could not, stops there
    (discrepancy principle), and moves the model towards the truth. (25 rays on 96 cells
    leave most of the blob unresolved, so the model error drops by ~15 %, not more.)"""
    prior, operator, petro = setting
    truth = prior.decode(TRUTH)[0].clone()
    truth[4:8, 2:6] = 1.0
    field = _field(setting, truth, 0.02e-9)
    problem = build_problem(field, prior, operator, petro)
    solutions = solver("latent-sgd", LatentSGDConfig(**SMALL)).solve(problem)
    assert not solutions.accepted[0, 0]  # the prior cannot fit it
    refined = refine_models(problem, solutions, RefineConfig(n_models=2, steps=600))
    before = (solutions.models[0, :2] - truth).pow(2).mean(dim=(1, 2)).sqrt()
    after = (refined["models"][0] - truth).pow(2).mean(dim=(1, 2)).sqrt()
    assert torch.all(after < 0.9 * before)
    assert torch.all(refined["normalised_misfit"][0] <= 1.0) and torch.all(refined["steps"][0] < 600)
    assert torch.all(refined["accepted"][0])
    assert refined["models"].shape == (1, 2, *truth.shape)
    with pytest.raises(ConfigError, match="model_forward"):
        refine_models(InverseProblem(lambda x: x, 1, 1, lambda n, generator=None: torch.zeros(n, 1)), solutions)
