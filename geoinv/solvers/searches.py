"""Searches that wrap any solver: explore (many draws, keep the best) and a portfolio of solvers.

Each wrapper is itself a :class:`~geoinv.solvers.base.Solver`, so wrappers
compose (a portfolio of explorers) and run wherever a solver runs. A wrapped
solver is asked for a number of candidates (``n_candidates``) and draws its own
starts from the shared generator, so it sees exactly the draws it would have
drawn alone; a refinement after exploring must start from points
(``takes_starts``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .._typing import TensorLike
from .._validation import require_count
from ..errors import ConfigError
from ..problem import InverseProblem
from .base import Solutions, Solver, _gather, check_n_starts

__all__ = ["Explore", "ExploreConfig", "Portfolio", "PortfolioConfig", "best_positions", "first_candidates",
           "keep_best"]


_PER_CANDIDATE = ("parameters", "data", "misfit", "accepted", "models", "normalised_misfit")


def first_candidates(solutions: Solutions, count: int) -> dict:
    """The per-candidate fields of sorted ``solutions`` cut to the first ``count`` candidates."""
    return {name: getattr(solutions, name)[:, :count] for name in _PER_CANDIDATE
            if getattr(solutions, name) is not None}


def best_positions(solutions: Solutions, count: int) -> torch.Tensor:
    """Positions ``(S, count)`` of the ``count`` candidates with the lowest true misfit (normalised where a
    noise level exists), whatever order the solver ranked them in."""
    key = solutions.normalised_misfit if solutions.normalised_misfit is not None else solutions.misfit
    return torch.argsort(key, dim=1, stable=True)[:, :count]


def _candidates_at(solutions: Solutions, positions: torch.Tensor) -> dict:
    return {name: _gather(getattr(solutions, name), positions) for name in _PER_CANDIDATE
            if getattr(solutions, name) is not None}


def keep_best(solutions: Solutions, count: int) -> Solutions:
    """The ``count`` candidates with the lowest true misfit per data set; the history restricted to them.

    History entries with a trailing ``(S, R)`` (per start, in start order) keep
    the kept starts' columns in start order; ``explore_kept`` holds their start
    indices (best first), ``explore_draws`` how many ran, and ``order`` sorts
    the kept columns as in any run.
    """
    count = min(count, solutions.n_candidates)
    positions = best_positions(solutions, count)
    kept = np.take_along_axis(np.asarray(solutions.history["order"]), positions.numpy(), axis=1)  # start indices
    n_surveys, n_draws = kept.shape[0], solutions.n_candidates
    in_draw_order = np.sort(kept, axis=1)
    history: dict = {}
    for key, value in solutions.history.items():
        value = np.asarray(value)
        if key != "order" and value.ndim >= 2 and value.shape[-2:] == (n_surveys, n_draws):
            index = np.broadcast_to(in_draw_order, (*value.shape[:-2], n_surveys, count))
            value = np.take_along_axis(value, index, axis=-1)
        history[key] = value
    rank = np.argsort(np.argsort(kept, axis=1), axis=1)
    history.update(order=rank, explore_kept=kept, explore_draws=n_draws)
    return replace(solutions, **_candidates_at(solutions, positions), history=history)


def _require_starts(solver: Solver, wrapper: str) -> Solver:
    if not isinstance(solver, Solver):
        raise ConfigError(f"{wrapper} wraps a geoinv Solver, got {type(solver).__name__}")
    if not solver.takes_starts:
        raise ConfigError(f"{wrapper} needs a solver that starts from points (initial=); {solver.name!r} "
                          "computes its candidates from the data alone")
    return solver


def _wrapper_start(wrapper: Solver, n_candidates, generator, initial, refusal: str) -> tuple[int, torch.Generator]:
    """A wrapper's prologue: no ``initial`` (it draws its own), candidates kept, the seeded generator."""
    if initial is not None:
        raise ConfigError(refusal)
    n_keep = check_n_starts(n_candidates or wrapper.config.n_starts)
    return n_keep, generator or torch.Generator().manual_seed(wrapper.config.seed)


def _stage_count(solver: Solver) -> int:
    """Stages of a staged solver's schedule (0 for others): later stages are numbered after them."""
    return len(getattr(solver.config, "stages", ()))


@dataclass(frozen=True)
class ExploreConfig:
    """Settings of :class:`Explore`.

    Parameters
    ----------
    draws_per_start : int
        Prior draws per kept candidate (≥ 1).
    n_starts : int
        Candidates kept per data set (default for ``solve``'s ``n_candidates``).
    seed : int
        Seeds the draws (and whatever randomness the wrapped solvers use after them).
    """

    draws_per_start: int = 2
    n_starts: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "draws_per_start", require_count(
            self.draws_per_start, "draws_per_start", meaning="prior draws per kept start", error=ConfigError))
        check_n_starts(self.n_starts)


class Explore(Solver):
    """Run a solver from many prior draws and keep the best; optionally refine those with another.

    Parameters
    ----------
    solver : Solver
        The exploring search, run from ``draws_per_start × n_candidates`` draws.
    then : Solver, optional
        Run from the kept candidates (``initial=``): cheap exploration, costly
        refinement. Without it the kept candidates are returned.
    config : ExploreConfig, optional
    **overrides
        Replace single settings of ``config``.

    Notes
    -----
    Without ``then`` the history is the explorer's restricted to the kept
    draws (``explore_kept``: their draw indices, best first; ``explore_draws``:
    how many ran). With ``then`` it is the refinement's, and the explorer's
    whole history under ``explore_*``; stage numbers of a staged refinement
    count on from the explorer's stages.
    """

    name = "explore"
    config_class = ExploreConfig

    def __init__(self, solver: Solver, then: Solver | None = None, config: ExploreConfig | None = None,
                 callbacks: Sequence[Any] = (), **overrides: Any) -> None:
        super().__init__(config, callbacks, **overrides)
        if not isinstance(solver, Solver):
            raise ConfigError(f"explore wraps a geoinv Solver, got {type(solver).__name__}")
        self.solver = solver
        self.then = None if then is None else _require_starts(then, "explore's refinement")

    def fit(self, problem: InverseProblem, **kwargs: Any) -> Explore:
        self.solver.fit(problem, **kwargs)
        if self.then is not None:
            self.then.fit(problem, **kwargs)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "explorer": self.solver.describe(),
                "then": None if self.then is None else self.then.describe()}

    def solve(self, problem: InverseProblem, observed: TensorLike | None = None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        n_keep, generator = _wrapper_start(self, n_candidates, generator, initial, "explore draws its own starts "
                                           "from the prior; pass initial to the wrapped solver alone")
        n_draws = check_n_starts(self.config.draws_per_start * n_keep, "draws_per_start × n_candidates")
        explored = self.solver.solve(problem, observed, n_draws, generator=generator)
        if self.then is None:
            kept = keep_best(explored, n_keep)
            return replace(kept, config={**kept.config, **self.describe(), "ranking": "misfit"})
        best = _gather(explored.parameters, best_positions(explored, n_keep))
        refined = self.then.solve(problem, observed, generator=generator, initial=best)
        history = dict(refined.history)
        if "stage" in history:
            history["stage"] = history["stage"] + _stage_count(self.solver)
        history.update({f"explore_{key}": value for key, value in explored.history.items()})
        return replace(refined, history=history, wall_time=explored.wall_time + refined.wall_time,
                       config={**refined.config, **self.describe()})


@dataclass(frozen=True)
class PortfolioConfig:
    """Settings of :class:`Portfolio`.

    Parameters
    ----------
    n_starts : int
        Candidates kept per data set (default for ``solve``'s ``n_candidates``).
    seed : int
        Seeds the members' draws, one member after the other.
    """

    n_starts: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        check_n_starts(self.n_starts)


class Portfolio(Solver):
    """Several solvers, each from its own share of prior draws; the best candidates of all are kept.

    Parameters
    ----------
    members : sequence of (float, Solver)
        ``(share, solver)``: the solver is asked for ``max(1, round(share × n))``
        candidates (its starts, for solvers that draw them), where ``n`` is the
        number of candidates kept.
    config : PortfolioConfig, optional
    **overrides
        Replace single settings of ``config``.

    Notes
    -----
    The members run one after the other on one generator (reproducible). The
    history's plain keys are member 0's, ``portfolio{i}_*`` member i's, and
    ``portfolio_source`` (S, n) says which member each kept candidate came from;
    ``order`` indexes the members' candidates concatenated, member 0 first.
    """

    name = "portfolio"
    config_class = PortfolioConfig

    def __init__(self, members: Sequence[tuple[float, Solver]], config: PortfolioConfig | None = None,
                 callbacks: Sequence[Any] = (), **overrides: Any) -> None:
        super().__init__(config, callbacks, **overrides)
        checked = []
        for entry in members:
            if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                raise ConfigError(f"portfolio members must be (share, Solver) pairs, got {entry!r}")
            share, member = entry
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < math.inf:
                raise ConfigError(f"a portfolio share (draws per kept start) must be finite and > 0, got {share!r}")
            if not isinstance(member, Solver):
                raise ConfigError(f"a portfolio member must be a geoinv Solver, got {type(member).__name__}")
            if member.model_space:  # its candidates are models: they cannot be pooled with parameters
                raise ConfigError(f"a portfolio pools parameter vectors; {member.name!r} returns models")
            checked.append((float(share), member))
        if not checked:
            raise ConfigError("a portfolio needs at least one (share, Solver) member")
        self.members = tuple(checked)

    def fit(self, problem: InverseProblem, **kwargs: Any) -> Portfolio:
        for _, member in self.members:
            member.fit(problem, **kwargs)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "members": [(share, member.describe()) for share, member in self.members]}

    def solve(self, problem: InverseProblem, observed: TensorLike | None = None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        n_keep, generator = _wrapper_start(self, n_candidates, generator, initial, "a portfolio draws its own "
                                           "starts from the prior; pass initial without a portfolio")
        target = problem.targets(observed)
        runs = [member.solve(problem, observed, max(1, round(share * n_keep)), generator=generator)
                for share, member in self.members]
        history = dict(runs[0].history)
        history.update({f"portfolio{i}_{key}": value for i, run in enumerate(runs[1:], 1)
                        for key, value in run.history.items()})
        candidates = torch.cat([run.parameters for run in runs], dim=1)
        started = time.perf_counter()
        merged = self.finish(problem, candidates, target, history, 0.0)
        wall_time = sum(run.wall_time for run in runs) + time.perf_counter() - started
        source = np.concatenate([np.full(run.parameters.shape[:2], i) for i, run in enumerate(runs)], axis=1)
        order = merged.history["order"][:, :n_keep]
        merged.history.update(order=order, portfolio_source=np.take_along_axis(source, order, axis=1))
        return replace(merged, **first_candidates(merged, n_keep), wall_time=wall_time,
                       config={**merged.config, "n_candidates": n_keep})
