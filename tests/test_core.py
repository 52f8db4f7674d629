"""The pure core (geoinv.invert), the Prior contract, per-datum noise and the callbacks."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

import geoinv
from geoinv import (
    ACCEPTANCE,
    ConfigError,
    EarlyStopping,
    FaciesVelocity,
    InverseProblem,
    LatentSGDConfig,
    Prior,
    StraightRay,
    SurveyError,
    build_problem,
    invert,
    make_solver,
    solver,
)
from geoinv.prior import expected_latent_norm
from geoinv.solvers import Callback, Monitor, Refill
from geoinv.solvers.proposals import Proposals

from .helpers import SMALL, TinyDecoder


@pytest.fixture
def field(small_grid, small_survey):
    """A survey holding noisy straight-ray data of a TinyDecoder model, errors 0.05 ns."""
    prior = TinyDecoder(small_grid.shape)
    truth = prior.decode(torch.tensor([[0.8, -0.5, 0.3]]))[0]
    operator = StraightRay(small_grid, small_survey)
    survey = operator.make_synthetic_data(FaciesVelocity().slowness(truth.double()), 0.05e-9,
                                          torch.Generator().manual_seed(3))
    return prior, operator, survey, truth


def test_invert_recovers_the_model(field):
    prior, operator, survey, truth = field
    solutions = invert(survey, prior, operator, solver("latent-sgd", LatentSGDConfig(**SMALL)))
    assert solutions.accepted[0, 0]
    assert solutions.normalised_misfit[0, 0] < ACCEPTANCE
    assert (solutions.models[0, 0] - truth).abs().max() < 0.05
    # misfits in ns, and the normalised misfit is the RMSE over σ = 0.05 ns
    torch.testing.assert_close(solutions.normalised_misfit, solutions.misfit / 0.05, rtol=1e-5, atol=1e-6)
    assert solutions.config["data_unit"] == "ns"


def test_invert_by_names_on_a_grid(field, small_grid):
    prior, _, survey, _ = field
    solutions = invert(survey, prior, "straight-ray", "latent-sgd", grid=small_grid, n_candidates=1)
    assert solutions.parameters.shape == (1, 1, 3)
    assert tuple(solutions.config["then"]) == tuple(asdict(s) for s in LatentSGDConfig.default_linear().then)


def test_schedule_follows_operator_linearity(small_grid, small_survey):
    linear = make_solver("latent-sgd", StraightRay(small_grid, small_survey))
    refill = make_solver("latent-sgd", geoinv.Eikonal(small_grid, small_survey))
    # RML candidates from the accepted basins replace the proposals' unaccepted candidates
    assert isinstance(refill, Refill) and refill.config.seed == 0
    assert refill.config.rounds == 3  # a data set with nothing accepted is searched up to twice more
    proposals = refill.search_solver
    assert isinstance(proposals, Proposals) and not refill.is_fitted  # the network is built on fit
    assert proposals.config.draws_per_start == 3  # three proposals per returned candidate, the best kept
    assert proposals.then.config == LatentSGDConfig.proposal_finish(n_starts=20, progress=False)
    # a quick look (epochs) or a preset runs from prior draws
    nonlinear = make_solver("latent-sgd", geoinv.Eikonal(small_grid, small_survey), epochs=120)
    assert linear.config == LatentSGDConfig.default_linear(n_starts=20, progress=False)
    assert nonlinear.config == LatentSGDConfig.default_nonlinear(n_starts=20, progress=False).with_epochs(120)
    assert {stage.optimizer for stage in linear.config.stages} == {"gauss-newton"}
    stages = nonlinear.config.stages
    assert (stages[0].relinearize, stages[0].kernel) == (10, "straight-ray")
    assert [stage.optimizer for stage in stages] == ["sgd", "adam", "gauss-newton", "gauss-newton"]
    assert make_solver("latent-sgd", geoinv.Eikonal(small_grid, small_survey), preset="default-nonlinear").config \
        == LatentSGDConfig.default_nonlinear(n_starts=20, progress=False)
    assert [stage.temperature for stage in stages[2:]] == [2.0, 1.0]
    assert (nonlinear.config.explore, nonlinear.config.explore_stages) == (2, 2)  # the best half goes on to GN
    with pytest.raises(ConfigError, match="latent-sgd only"):
        make_solver("tandem", StraightRay(small_grid, small_survey), preset="adam")


def test_per_datum_errors_weight_the_misfit(field):
    """χ²: a datum with a 10× larger error counts 100× less."""
    prior, operator, survey, _ = field
    errors = np.full(survey.n_data, 0.05e-9)
    errors[:5] = 0.5e-9
    problem = build_problem(survey.with_data(survey.traveltimes, errors), prior, operator)
    residual = torch.zeros(1, survey.n_data)
    residual[0, 0] = 1.0  # 1 ns off on a datum with σ = 0.5 ns
    rmse, normalised = problem.misfits(problem.observed[None] + residual, problem.observed[None])
    assert rmse.item() == pytest.approx(1 / math.sqrt(survey.n_data))
    assert normalised.item() == pytest.approx(2.0 / math.sqrt(survey.n_data), rel=1e-5)


def test_core_errors_name_the_fix(field, small_grid):
    prior, operator, survey, _ = field
    with pytest.raises(SurveyError, match="noise_std="):
        build_problem(survey.with_data(survey.traveltimes, None).__class__(
            survey.sources, survey.receivers, survey.pairs, survey.traveltimes), prior, operator)
    with pytest.raises(SurveyError, match="no traveltimes"):
        build_problem(geoinv.Survey(survey.sources, survey.receivers), prior, operator)
    with pytest.raises(ConfigError, match="canvas"):
        invert(survey, TinyDecoder((3, 3)), "straight-ray")  # the sensors do not fit its 0.3 m canvas
    with pytest.raises(ConfigError, match="prior makes models of shape"):
        invert(survey, TinyDecoder((5, 5)), operator)
    with pytest.raises(ConfigError, match="Prior"):
        InverseProblem.latent_tomography(object(), FaciesVelocity(), operator)
    moved = geoinv.Survey(np.asarray(survey.sources) + np.array([0.0, 0.5]), survey.receivers, survey.pairs,
                          survey.traveltimes, survey.errors)
    with pytest.raises(ConfigError, match="another survey geometry"):
        invert(moved, prior, operator)


def test_noise_std_is_validated(field):
    prior, operator, survey, _ = field
    problem = build_problem(survey, prior, operator)
    for bad in (0.0, -1.0, float("nan"), np.ones(3)):
        with pytest.raises(SurveyError, match="noise_std"):
            problem.with_observed(problem.observed, noise_std=bad)


def test_vae_implements_the_prior_contract():
    vae = geoinv.VAE(geoinv.VAEConfig((33, 17), latent_dim=4, channels=(4, 8), kernels=(5, 4), strides=(2, 2),
                                      hidden=16))
    assert isinstance(vae, Prior)
    latent = vae.sample_latent(6, torch.Generator().manual_seed(0))
    assert latent.shape == (6, 4)
    torch.testing.assert_close(latent, torch.randn(6, 4, generator=torch.Generator().manual_seed(0)))
    models = vae.sample(6, torch.Generator().manual_seed(0))
    assert models.shape == (6, 33, 17) and not models.requires_grad
    assert vae.typical_norm == pytest.approx(expected_latent_norm(4))
    ring = vae.regularizer(latent, "ring")
    torch.testing.assert_close(ring, (latent.norm(dim=1) - expected_latent_norm(4)).pow(2))
    torch.testing.assert_close(vae.regularizer(latent, "origin"), latent.pow(2).sum(1))
    torch.testing.assert_close(vae.log_density(latent), -0.5 * latent.pow(2).sum(1))
    with pytest.raises(ConfigError, match="regularization"):
        vae.regularizer(latent, "ridge")
    frozen = vae.frozen()
    assert frozen is vae and not any(p.requires_grad for p in vae.parameters()) and not vae.training


def test_latent_problem_takes_the_prior_from_the_prior(small_grid, small_survey):
    """A prior whose latent space is not N(0, I): problem box and regularizer follow it."""

    class ShiftedPrior(TinyDecoder):
        @property
        def latent_mean(self):
            return torch.full((3,), 2.0)

        def sample_latent(self, n, generator=None):
            return 2.0 + torch.randn(n, 3, generator=generator)

    prior = ShiftedPrior(small_grid.shape)
    problem = InverseProblem.latent_tomography(prior, FaciesVelocity(), StraightRay(small_grid, small_survey),
                                               noise_std=0.1)
    torch.testing.assert_close(problem.prior_mean, torch.full((3,), 2.0))
    at_centre = problem.regularization(torch.full((1, 3), 2.0), "origin")
    assert at_centre.item() == 0.0
    assert problem.sample_prior(500, torch.Generator().manual_seed(0)).mean().item() == pytest.approx(2.0, abs=0.1)


def test_generic_problem_prior_box_is_lazy():
    calls = []

    def sample(n, generator=None):
        calls.append(n)
        return torch.rand(n, 2, generator=generator) * 4.0

    problem = InverseProblem(lambda x: x.sum(1, keepdim=True), 2, 1, sample)
    assert calls == []  # nothing drawn at construction
    low, high = problem.bounds
    assert calls == [10_000]
    assert torch.allclose(low, torch.full((2,), 0.1), atol=0.05) and torch.allclose(high, torch.full((2,), 3.9),
                                                                                   atol=0.05)


def test_early_stopping_and_custom_callbacks(field):
    prior, operator, survey, _ = field
    seen = []

    class Recorder(Callback):
        def on_step(self, run):
            seen.append((run.step, dict(run.metrics)))

    stopper = EarlyStopping("best_rmse", goal=10.0)  # reached at the first full-data record
    method = solver("latent-sgd", LatentSGDConfig(**SMALL), callbacks=[Recorder(), stopper])
    solutions = invert(survey, prior, operator, method)
    steps_per_epoch = math.ceil(survey.n_data / SMALL["batch_size"])
    assert stopper.stopped_at == steps_per_epoch
    assert len(solutions.history["step_size"]) == steps_per_epoch
    assert seen[-1][0] == steps_per_epoch and "best_rmse" in seen[-1][1]
    assert solutions.history["step"][-1] == steps_per_epoch


def test_early_stopping_patience_and_monitor():
    stopper = EarlyStopping("loss", patience=2)
    with Monitor("test", 10, [stopper]) as monitor:
        values = [3.0, 2.0, 2.5, 2.1, 1.0]
        stops = [monitor.step(loss=v) for v in values]
    assert stops == [False, False, False, True, False]
    with pytest.raises(ConfigError, match="goal"):
        EarlyStopping("loss")


def test_diverging_step_is_reported(field):
    prior, operator, survey, _ = field
    method = solver("latent-sgd", LatentSGDConfig(**{**SMALL, "step_size": 1e30, "epochs": 2}))
    with pytest.raises(ConfigError, match="diverged at step"):
        invert(survey, prior, operator, method)
    with pytest.raises(ConfigError, match="step_size"):
        LatentSGDConfig(step_size=float("inf"))
