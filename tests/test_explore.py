"""Keep-the-best-of-many in latent SGD: explore × n_starts draws, the best n_starts refined."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import ConfigError, FaciesVelocity, LatentSGDConfig, StraightRay, build_problem, solver
from geoinv.solvers.latent_sgd import Stage

from .helpers import TinyDecoder

TRUTH = torch.tensor([[0.8, -0.5, 0.3]])
SEARCH = {"step_size": 5e-3, "epochs": 4, "batch_size": 5, "reg_weight": 1.0, "progress": False, "seed": 1}


@pytest.fixture
def problem(small_grid, small_survey):
    prior, petro = TinyDecoder(small_grid.shape), FaciesVelocity()
    operator = StraightRay(small_grid, small_survey)
    field = operator.make_synthetic_data(petro.slowness(prior.decode(TRUTH)[0].double()), 0.05e-9,
                                         torch.Generator().manual_seed(3))
    return build_problem(field, prior, operator, petro)


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
    with pytest.raises(ConfigError, match="then="):
        LatentSGDConfig(explore=2)
    with pytest.raises(ConfigError, match="explore × n_starts"):
        LatentSGDConfig(explore=20_000, n_starts=10, then=(Stage.polish(1),))


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
