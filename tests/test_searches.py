"""The solver skeleton and the search wrappers around any solver (geoinv.solvers.searches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoinv import ConfigError, solver
from geoinv.solvers import NetworkConfig
from geoinv.solvers.base import Search, Solver
from geoinv.solvers.searches import Explore, Portfolio
from geoinv.tasks import task

NA = {"forward": NetworkConfig(hidden=(32,), epochs=30), "n_starts": 24, "search_steps": 40, "n_candidates": 3,
      "n_train": 400, "progress": False}


@pytest.fixture(scope="module")
def arm():
    problem = task("robotic-arm")
    truth = problem.sample_prior(2, torch.Generator().manual_seed(5))
    return problem.with_observed(problem.forward(truth), noise_std=0.02)


@pytest.fixture(scope="module")
def neural_adjoint(arm):
    return solver("neural-adjoint", **NA).fit(arm)


class Centre(Solver):
    """A solver in one method: every candidate is the mean of its starts (a real, if useless, search)."""

    name = "centre"

    def __init__(self, **overrides):
        from dataclasses import make_dataclass

        super().__init__(make_dataclass("CentreConfig", [("n_starts", int, 4), ("seed", int, 0)])(), **overrides)

    def search(self, problem, target, starts, generator, n_candidates):
        return Search(starts.mean(dim=1, keepdim=True).expand_as(starts).clone(), {"seen": starts.numpy()})


def test_a_solver_is_one_search_method(arm):
    """The base solve draws the starts (or takes initial=), calls search once, and finishes."""
    solutions = Centre().solve(arm, n_candidates=5)
    assert solutions.parameters.shape == (2, 5, arm.n_parameters)
    seen = torch.as_tensor(solutions.history["seen"])
    expected = arm.sample_prior(10, torch.Generator().manual_seed(0)).reshape(2, 5, -1).float()
    torch.testing.assert_close(seen, expected)  # seeded with config.seed, drawn survey after survey
    initial = torch.zeros(3, arm.n_parameters)
    again = Centre().solve(arm, initial=initial)
    assert again.parameters.shape == (2, 3, arm.n_parameters) and torch.all(again.parameters == 0)
    with pytest.raises(ConfigError, match="initial must have shape"):
        Centre().solve(arm, initial=torch.zeros(3, arm.n_parameters + 1))


def test_explore_keeps_the_truly_best_of_many_draws_of_any_solver(arm, neural_adjoint):
    """Explore around Neural Adjoint: the 3 kept of 9 surrogate-ranked candidates fit at least as well as the
    3 Neural Adjoint keeps alone from the same draws (it ranks by its surrogate, explore by the true misfit)."""
    alone = neural_adjoint.solve(arm)
    explored = Explore(neural_adjoint, draws_per_start=3, n_starts=3, seed=neural_adjoint.config.seed).solve(arm)
    assert explored.n_candidates == 3 and explored.history["explore_draws"] == 9
    best_alone = alone.normalised_misfit.min(dim=1).values
    assert torch.all(explored.normalised_misfit[:, 0] <= best_alone + 1e-6)
    assert torch.all(explored.normalised_misfit[:, :-1] <= explored.normalised_misfit[:, 1:])


def test_explore_then_refines_the_kept_from_their_parameters(arm, neural_adjoint):
    refined = Explore(neural_adjoint, then=Centre(), draws_per_start=2, n_starts=3, seed=0).solve(arm)
    kept = Explore(neural_adjoint, draws_per_start=2, n_starts=3, seed=0).solve(arm)
    centre = kept.parameters.mean(dim=1)
    torch.testing.assert_close(refined.parameters[:, 0], centre)
    assert "explore_surrogate_loss" in refined.history


def test_a_portfolio_of_different_solvers_keeps_the_best_of_all(arm, neural_adjoint):
    portfolio = Portfolio([(1.0, Centre()), (1.0, neural_adjoint)], n_starts=3, seed=2)
    together = portfolio.solve(arm)
    generator = torch.Generator().manual_seed(2)
    first = Centre().solve(arm, n_candidates=3, generator=generator)
    second = neural_adjoint.solve(arm, n_candidates=3, generator=generator)
    pooled = torch.cat([first.normalised_misfit, second.normalised_misfit], dim=1).sort(dim=1).values[:, :3]
    torch.testing.assert_close(together.normalised_misfit, pooled)
    source = together.history["portfolio_source"]
    assert source.shape == (2, 3) and set(np.unique(source)) <= {0, 1}


def test_wrappers_validate_what_they_wrap(arm):
    with pytest.raises(ConfigError, match="starts from points"):
        Explore(Centre(), then=solver("tandem"))
    with pytest.raises(ConfigError, match="share"):
        Portfolio([(0.0, Centre())])
    with pytest.raises(ConfigError, match="Solver"):
        Portfolio([(1.0, "latent-sgd")])
    with pytest.raises(ConfigError, match="returns models"):
        Portfolio([(1.0, Centre()), (1.0, solver("pygimli-smooth"))])
    with pytest.raises(ConfigError, match="draws_per_start"):
        Explore(Centre(), draws_per_start=0)
    with pytest.raises(ConfigError, match="initial"):
        Explore(Centre()).solve(arm, initial=torch.zeros(2, arm.n_parameters))
