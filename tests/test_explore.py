"""Keep-the-best-of-many in latent SGD: explore × n_starts draws, the best n_starts refined."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import ConfigError, LatentSGDConfig, solver
from geoinv.solvers import Stage

SEARCH = {"step_size": 5e-3, "epochs": 4, "batch_size": 5, "reg_weight": 1.0, "progress": False, "seed": 1}


@pytest.fixture
def problem(tiny_latent_problem):
    return tiny_latent_problem


def test_explore_refines_the_best_of_the_first_stage(problem):
    config = LatentSGDConfig(**SEARCH, n_starts=3, explore=4, then=(Stage.polish(5),))
    solutions = solver("latent-sgd", config).solve(problem)
    history = solutions.history
    assert solutions.n_candidates == 3
    explored_end = history["explore_data_rmse"][-1, 0]  # the 12 explored starts at the end of stage 0
    assert explored_end.shape == (12,)
    # the kept starts are the three best explored ones: the refinement begins at their misfits
    np.testing.assert_allclose(np.sort(history["data_rmse"][0, 0]), np.sort(explored_end)[:3], rtol=1e-4)
    assert set(np.unique(history["stage"])) == {1}
    assert solutions.config["explore"] == 4
    plain = solver("latent-sgd", LatentSGDConfig(**SEARCH, n_starts=3, then=(Stage.polish(5),))).solve(problem)
    assert float(solutions.misfit[0, 0]) < float(plain.misfit[0, 0])


def test_explore_is_validated():
    with pytest.raises(ConfigError, match="explore"):
        LatentSGDConfig(explore=0)
    for bad in (0, 3, True, 1.5):
        with pytest.raises(ConfigError, match="explore_stages"):
            LatentSGDConfig(explore=2, explore_stages=bad, then=(Stage.polish(1),))
    with pytest.raises(ConfigError, match="explore × n_starts"):
        LatentSGDConfig(explore=20_000, n_starts=10, then=(Stage.polish(1),))


def test_exploring_every_stage_keeps_the_best_finished_draws(problem):
    schedule = {**SEARCH, "then": (Stage.polish(3),)}
    kept = solver("latent-sgd", LatentSGDConfig(**schedule, n_starts=3, explore=4, explore_stages=None)).solve(problem)
    every = solver("latent-sgd", LatentSGDConfig(**schedule, n_starts=12)).solve(problem)  # the same 12 draws
    assert kept.n_candidates == 3
    torch.testing.assert_close(kept.parameters, every.parameters[:, :3])
    torch.testing.assert_close(kept.normalised_misfit, every.normalised_misfit[:, :3])
    history = kept.history
    np.testing.assert_array_equal(history["explore_kept"], every.history["order"][:, :3])
    assert history["explore_draws"] == 12
    # the history describes the kept starts, and order sorts them as in any run
    last = history["data_rmse"][-1, 0]
    assert last.shape == (3,)
    np.testing.assert_allclose(last[history["order"][0]], kept.misfit[0].numpy(), rtol=1e-4)


def test_keeping_the_best_works_per_observed_data_set(problem):
    second = problem.simulate(torch.tensor([[-0.6, 0.9, 0.1]]), 0.05, torch.Generator().manual_seed(4))
    observed = torch.cat([problem.targets(), second])
    kept = solver("latent-sgd", LatentSGDConfig(**SEARCH, n_starts=2, explore=3, explore_stages=None)).solve(
        problem, observed=observed)
    every = solver("latent-sgd", LatentSGDConfig(**SEARCH, n_starts=6)).solve(problem, observed=observed)
    assert kept.parameters.shape == (2, 2, 3)
    torch.testing.assert_close(kept.parameters, every.parameters[:, :2])
    assert kept.history["data_rmse"].shape[1:] == (2, 2)


def test_exploring_two_of_three_stages_numbers_the_stages_as_one_run(problem):
    config = LatentSGDConfig(**SEARCH, n_starts=2, explore=3, explore_stages=2,
                             then=(Stage.polish(2), Stage.polish(2)))
    history = solver("latent-sgd", config).solve(problem).history
    assert set(np.unique(history["stage"])) == {2}
    assert set(np.unique(history["explore_stage"])) == {0, 1}
    assert history["explore_data_rmse"].shape[-1] == 6


def test_explore_refuses_explicit_starts(problem):
    config = LatentSGDConfig(**SEARCH, n_starts=2, explore=2, then=(Stage.polish(1),))
    with pytest.raises(ConfigError, match="initial"):
        solver("latent-sgd", config).solve(problem, initial=torch.zeros(2, 3))


def test_with_stages_replaces_the_schedule_and_keeps_the_run_settings():
    stages = (Stage.polish(2), Stage.gauss_newton(1))
    config = LatentSGDConfig(n_starts=3, seed=5, progress=False).with_stages(stages)
    assert config.stages == stages
    assert (config.n_starts, config.seed, config.progress) == (3, 5, False)
    with pytest.raises(ConfigError, match="at least one"):
        config.with_stages(())
