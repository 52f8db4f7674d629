import math

import numpy as np
import pytest
import torch

from geoinv import (
    ConfigError,
    Eikonal,
    FaciesVelocity,
    InverseProblem,
    LatentSGD,
    LatentSGDConfig,
    Solutions,
    StraightRay,
    solver,
)
from geoinv.solvers import expected_latent_norm

from .helpers import TinyDecoder


@pytest.fixture
def problem(small_grid, small_survey):
    decoder = TinyDecoder(small_grid.shape)
    problem = InverseProblem.latent_tomography(decoder, FaciesVelocity(), StraightRay(small_grid, small_survey),
                                               noise_std=0.05)
    truth = torch.tensor([[0.8, -0.5, 0.3]])
    observed = problem.simulate(truth, 0.05, torch.Generator().manual_seed(3))[0]
    return problem.with_observed(observed), truth


def small_config(**overrides):
    settings = {"step_size": 5e-3, "step_decay": 0.97, "epochs": 80, "batch_size": 5, "reg_weight": 1.0,
                "reg_decay": 0.99, "n_starts": 8, "progress": False, "seed": 1}
    return LatentSGDConfig(**{**settings, **overrides})


def test_scheduled_sgd_recovers_known_minimum(problem):
    problem, truth = problem
    solutions = LatentSGD(small_config()).solve(problem)
    assert solutions.acceptance_rate.item() >= 0.75
    assert torch.allclose(solutions.best[0], truth[0], atol=0.1)
    truth_model = problem.model(truth)[0]
    assert (solutions.models[0, 0] - truth_model).abs().max() < 0.05
    # candidates are sorted and the misfit is the full-data RMSE of the re-simulated data
    assert torch.all(solutions.misfit[0, 1:] >= solutions.misfit[0, :-1])
    rmse = (solutions.data[0] - problem.observed).pow(2).mean(1).sqrt()
    torch.testing.assert_close(rmse, solutions.misfit[0])


def test_schedules_decay_as_configured(problem):
    problem, _ = problem
    config = small_config(epochs=6, decay_every=2, step_decay=0.5, reg_decay=0.9, batch_size=10)
    history = LatentSGD(config).solve(problem).history
    steps_per_epoch = math.ceil(25 / 10)
    assert len(history["step_size"]) == 6 * steps_per_epoch
    expected_steps = [5e-3 * 0.5 ** (k // (2 * steps_per_epoch)) for k in range(6 * steps_per_epoch)]
    np.testing.assert_allclose(history["step_size"], expected_steps)
    np.testing.assert_allclose(history["reg_weight"], 1.0 * 0.9 ** np.arange(6 * steps_per_epoch))
    assert list(history["step"]) == [0, *range(steps_per_epoch, 6 * steps_per_epoch + 1, steps_per_epoch)]
    assert history["data_rmse"].shape == (7, 1, 8)


def test_batched_starts_equal_one_at_a_time(problem):
    problem, _ = problem
    starts = torch.randn(4, 3, generator=torch.Generator().manual_seed(5))
    config = small_config(epochs=10)
    together = LatentSGD(config).solve(problem, initial=starts)
    order = torch.as_tensor(together.history["order"][0])
    for k in range(4):
        alone = LatentSGD(config).solve(problem, initial=starts[k:k + 1])
        position = int((order == k).nonzero())
        torch.testing.assert_close(alone.parameters[0, 0], together.parameters[0, position], rtol=1e-4, atol=1e-5)


def test_several_surveys_in_one_batch(problem):
    problem, truth = problem
    second = problem.simulate(torch.tensor([[-0.4, 0.6, -0.2]]))[0]
    observed = torch.stack([problem.observed, second])
    solutions = LatentSGD(small_config(n_starts=4)).solve(problem, observed)
    assert solutions.parameters.shape == (2, 4, 3)
    assert torch.allclose(solutions.best[0], truth[0], atol=0.15)
    assert torch.allclose(solutions.best[1], torch.tensor([-0.4, 0.6, -0.2]), atol=0.15)


def test_source_minibatches_with_eikonal(small_grid, small_survey):
    decoder = TinyDecoder(small_grid.shape)
    problem = InverseProblem.latent_tomography(decoder, FaciesVelocity(), Eikonal(small_grid, small_survey),
                                               noise_std=0.05)
    truth = torch.tensor([[0.8, -0.5, 0.3]])
    problem = problem.with_observed(problem.simulate(truth)[0])
    config = small_config(minibatch="source", epochs=40, step_size=4e-3, n_starts=4)
    solutions = LatentSGD(config).solve(problem)
    assert len(solutions.history["step_size"]) == 40 * 5  # one source (5 data) per step
    assert solutions.misfit[0, 0] < 0.1
    assert torch.allclose(solutions.best[0], truth[0], atol=0.15)


def test_presets_and_registry():
    linear = LatentSGDConfig.named("reference-linear")
    assert (linear.step_size, linear.step_decay, linear.epochs, linear.batch_size) == (1e-2, 0.95, 120, 25)
    assert (linear.regularization, linear.reg_weight, linear.reg_decay) == ("ring", 10.0, 0.999)
    nonlinear = LatentSGDConfig.reference_nonlinear()
    assert (nonlinear.step_size, nonlinear.step_decay, nonlinear.decay_every, nonlinear.epochs,
            nonlinear.reg_decay) == (0.1, 0.8, 5, 30, 0.99)
    gd = LatentSGDConfig.plain_gd()
    assert gd.batch_size is None and gd.regularization == "none" and gd.misfit_scale == pytest.approx(0.04)
    assert LatentSGDConfig.adam().optimizer == "adam"
    assert solver("latent-sgd", epochs=3).config.epochs == 3
    assert expected_latent_norm(20) == pytest.approx(4.4166, abs=1e-4)


@pytest.mark.parametrize("overrides, match", [
    ({"step_size": -1e-2}, "step_size"),
    ({"regularization": "ridge"}, "regularization"),
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"minibatch": "shots"}, "minibatch"),
    ({"step_decay": 1.5}, "step_decay"),
])
def test_bad_configuration_raises(overrides, match):
    with pytest.raises(ConfigError, match=match):
        LatentSGDConfig(**overrides)
    with pytest.raises(ConfigError):
        solver("latent-sgd", no_such_option=1)


def test_solutions_hdf5_roundtrip(problem, tmp_path):
    problem, _ = problem
    solutions = LatentSGD(small_config(epochs=3, n_starts=3)).solve(problem)
    path = tmp_path / "result.h5"
    solutions.to_hdf5(path)
    loaded = Solutions.from_hdf5(path)
    torch.testing.assert_close(loaded.parameters, solutions.parameters)
    torch.testing.assert_close(loaded.models, solutions.models)
    assert loaded.config["solver"] == "latent-sgd" and loaded.config["epochs"] == 3
    np.testing.assert_array_equal(loaded.history["data_rmse"], solutions.history["data_rmse"])
