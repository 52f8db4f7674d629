"""A portfolio of latent searches: several schedules from their own draws, the best n_starts of all kept."""

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


def _runs(problem, main, member, n_starts, share):
    """The portfolio and its two searches run alone from the same generator, one after the other."""
    portfolio = solver("latent-sgd", LatentSGDConfig(**{**main, "portfolio": ((share, member),)}))
    together = portfolio.solve(problem, n_candidates=n_starts)
    generator = torch.Generator().manual_seed(main["seed"])
    alone = solver("latent-sgd", LatentSGDConfig(**main)).solve(problem, n_candidates=n_starts, generator=generator)
    other = solver("latent-sgd", member).solve(problem, n_candidates=round(share * n_starts), generator=generator)
    return together, alone, other


def test_a_portfolio_keeps_the_best_candidates_of_all_its_searches(problem):
    # a search that cannot move (one tiny step) beside one that converges: the kept are the best of both
    stuck = {**SEARCH, "step_size": 1e-9, "epochs": 1}
    member = LatentSGDConfig(**SEARCH, then=(Stage.gauss_newton(8),))
    together, alone, other = _runs(problem, stuck, member, n_starts=3, share=2.0)
    assert together.n_candidates == 3
    pooled = torch.cat([alone.normalised_misfit, other.normalised_misfit], dim=1)
    torch.testing.assert_close(together.normalised_misfit[0], pooled[0].sort().values[:3])
    assert together.accepted.all(), "the converging member's candidates were not kept"
    source = together.history["portfolio_source"]
    assert source.shape == (1, 3) and set(source[0]) == {1}
    # the main search's own history keeps its plain keys, the member's is prefixed
    assert together.history["data_rmse"].shape[1:] == (1, 3)
    assert together.history["portfolio1_data_rmse"].shape[1:] == (1, 6)


def test_a_portfolio_member_runs_from_its_share_of_draws(problem):
    member = LatentSGDConfig(**SEARCH)
    together, alone, other = _runs(problem, SEARCH, member, n_starts=4, share=0.5)
    pooled = torch.cat([alone.parameters, other.parameters], dim=1)
    assert other.n_candidates == 2
    order = together.history["order"][0]
    torch.testing.assert_close(together.parameters[0], pooled[0, order])
    np.testing.assert_array_equal(together.history["portfolio_source"][0], (order >= 4).astype(int))


def test_portfolio_is_validated_and_follows_with_epochs():
    member = LatentSGDConfig(**SEARCH)
    for bad in ((0.0, member), (float("inf"), member), (True, member)):
        with pytest.raises(ConfigError, match="share"):
            LatentSGDConfig(portfolio=(bad,))
    with pytest.raises(ConfigError, match="pairs"):
        LatentSGDConfig(portfolio=(member,))
    with pytest.raises(ConfigError, match="without a portfolio"):
        LatentSGDConfig(portfolio=((1.0, LatentSGDConfig(portfolio=((1.0, member),))),))
    built = LatentSGDConfig(portfolio=((1.0, {"epochs": 7}),))
    assert built.portfolio[0][1].epochs == 7
    assert built.with_epochs(2).portfolio[0][1].epochs == 2
    with pytest.raises(ConfigError, match="initial"):
        solver("latent-sgd", LatentSGDConfig(portfolio=((1.0, member),))).solve(None, initial=torch.zeros(1, 3))
