"""Randomized maximum likelihood: more candidates from the basins a search has found.

A global search on a nonlinear forward (amortized proposals on eikonal data)
finds the data's basin from a fraction of its draws; the draws that miss it end
in local minima. Once one candidate is accepted, more candidates of that basin
cost a few Gauss-Newton iterations each: randomized maximum likelihood (RML,
Oliver, He & Reynolds 1996; "randomize-then-optimize", Bardsley et al. 2014)
minimises, for each new candidate k,

    φ_k(z) = ‖(F(z) − d − e_k) / σ‖² + ‖z − μ − ε_k‖²,   e_k ~ N(0, σ²),  ε_k ~ N(0, I),

from an accepted candidate. For a linear forward and a Gaussian prior its
minimisers are exact posterior samples; for a nonlinear forward, started inside
a basin, they are approximate samples of that basin. They replace the
candidates that were not accepted, so the ensemble's maps spread over the
basin instead of mixing in wrong structures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._typing import TensorLike
from .._validation import require_count
from ..errors import ConfigError
from ..problem import InverseProblem
from .base import Solutions, Solver
from .gauss_newton_step import GaussNewtonStep

__all__ = ["Refill", "RefillConfig", "rml_samples"]


@dataclass(frozen=True)
class RefillConfig:
    """Settings of :class:`Refill` and :func:`rml_samples`.

    Parameters
    ----------
    iterations : int
        Gauss-Newton iterations per RML candidate at most.
    min_decrease : float
        An RML candidate stops when a step lowers its objective by less than this many percent.
    damping : float
        Initial Levenberg damping (relative to the mean diagonal of ``JᵀJ``).
    rounds : int
        Searches per data set at most: a data set with no accepted candidate after a search is
        searched again with fresh draws (the candidates of all its rounds pooled, the best kept),
        so the extra cost falls on the data sets whose basin is hard to find. 1: one search.
    min_round_gain : float or None
        Stop searching a data set again once a round (the second or later) lowered its best
        normalised misfit by less than this fraction (0.05: 5 %): repeated searches that
        reach the same fit point to the prior's limit, not to a missed basin. None: search
        until a candidate is accepted or the rounds are spent.
    seed : int
        Seeds the data and prior perturbations (when ``solve`` is given no generator).
    progress : bool
        Show a progress bar over the iterations.
    """

    iterations: int = 8
    min_decrease: float = 0.1
    damping: float = 1e-3
    rounds: int = 1
    min_round_gain: float | None = None
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "iterations", require_count(
            self.iterations, "iterations", meaning="Gauss-Newton iterations per RML candidate", error=ConfigError))
        object.__setattr__(self, "rounds", require_count(self.rounds, "rounds", error=ConfigError,
                                                         meaning="searches per data set at most"))
        if self.min_round_gain is not None and not 0 <= self.min_round_gain < 1:
            raise ConfigError(f"min_round_gain must be a fraction in [0, 1) (the least relative improvement of a "
                              f"round's best misfit that earns another round) or None, got {self.min_round_gain!r}")
        if not self.min_decrease >= 0 or not self.damping > 0:
            raise ConfigError(f"min_decrease must be >= 0 (percent) and damping > 0, got {self.min_decrease!r} "
                              f"and {self.damping!r}")


def rml_samples(problem: InverseProblem, target: torch.Tensor, starts: torch.Tensor,
                generator: torch.Generator | None = None, config: RefillConfig | None = None) -> torch.Tensor:
    """Randomized-maximum-likelihood candidates, one per start.

    Parameters
    ----------
    problem : InverseProblem
        With a noise level (σ of the data perturbations) and a Jacobian.
    target : torch.Tensor, shape (B, n_data) or (n_data,)
        The observed data of each start (one row for all).
    starts : torch.Tensor, shape (B, n_parameters)
        Where each candidate's Gauss-Newton iterations start (accepted candidates).
    generator : torch.Generator, optional
        Draws the perturbations: data ``e ~ N(0, σ²)``, then prior ``ε`` as prior draws less the prior mean.
    config : RefillConfig, optional

    Returns
    -------
    torch.Tensor, shape (B, n_parameters)
        The minimisers of each start's perturbed objective (float32, on the problem's device).
    """
    config = config or RefillConfig()
    if problem.noise_std is None:
        raise ConfigError("randomized maximum likelihood perturbs the data by their noise: build the problem with "
                          "noise_std")
    n_starts = starts.shape[0]
    rows = torch.as_tensor(target).reshape(-1, problem.n_data).to(problem.device, torch.float32)
    rows = rows.expand(n_starts, -1) if rows.shape[0] == 1 else rows
    noise = problem.noise_std.to(rows.device, rows.dtype)
    perturbation = torch.randn(n_starts, problem.n_data, generator=generator).to(rows.device)
    perturbed = rows + noise * perturbation
    shift = (problem.sample_prior(n_starts, generator) - problem.prior_mean.to(problem.device)).float()
    latent = starts.detach().to(problem.device, torch.float32).clone()
    step = GaussNewtonStep(problem, perturbed, "origin", 1.0, config.damping, min_decrease=config.min_decrease,
                           shift=shift, stop_at_noise=False)
    with tqdm(total=config.iterations, desc="RML candidates", unit="iteration", disable=not config.progress) as bar:
        for _ in range(config.iterations):
            step(latent)
            bar.update()
            if step.finished:
                break
    return latent


class Refill(Solver):
    """Replace a search's unaccepted candidates by RML candidates started from its accepted ones.

    Parameters
    ----------
    search : Solver
        Any solver with parameter-vector candidates (e.g. amortized proposals and their finish).
    config : RefillConfig, optional
    **overrides
        Replace single settings of ``config``.

    Notes
    -----
    With ``rounds`` > 1, a data set with no accepted candidate is searched again
    (fresh draws) until one is accepted or the rounds are spent; its best
    candidates over the rounds are kept (``history["search_rounds"]``: rounds per
    data set; ``history["round_best_misfit"]`` ``(S, rounds)``: each round's own
    best normalised misfit, NaN for rounds a data set did not need; the rest of
    the history is the first round's). With ``min_round_gain``, a data set whose
    latest round did not lower its best misfit by that fraction is not searched again.
    Per data set with at least one accepted and one unaccepted candidate, each
    unaccepted candidate is replaced by :func:`rml_samples` from an accepted
    one (the accepted in turn, best first); data sets with none accepted keep
    the search's candidates. Every candidate is then re-simulated and judged by
    the one acceptance rule, so an RML candidate that leaves the noise counts as
    unaccepted. The history is the search's (its ``order`` as ``search_order``)
    and ``refilled`` ``(S, R)``: which candidates, in the returned order, are RML's.
    """

    name = "refill"
    config_class = RefillConfig

    def __init__(self, search: Solver, config: RefillConfig | None = None, callbacks: Sequence[Any] = (),
                 **overrides: Any) -> None:
        super().__init__(config, callbacks, **overrides)
        if not isinstance(search, Solver):
            raise ConfigError(f"refill wraps a geoinv Solver, got {type(search).__name__}")
        if search.model_space:
            raise ConfigError(f"refill starts Gauss-Newton from parameter vectors; {search.name!r} returns models")
        if search.samples:
            raise ConfigError(f"refill replaces a search's unaccepted optima; {search.name!r} returns posterior "
                              "samples")
        self.search_solver = search
        self.takes_starts = search.takes_starts

    @property
    def is_fitted(self) -> bool:
        return self.search_solver.is_fitted

    def fit(self, problem: InverseProblem, **kwargs: Any) -> Refill:
        self.search_solver.fit(problem, **kwargs)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "search": self.search_solver.describe()}

    def solve(self, problem: InverseProblem, observed: TensorLike | None = None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        if problem.noise_std is None:
            raise ConfigError("refill judges and perturbs candidates by the data's noise: build the problem with "
                              "noise_std")
        generator = generator or torch.Generator().manual_seed(self.config.seed)
        target = problem.targets(observed)
        found = self.search_solver.solve(problem, observed, n_candidates, generator=generator, initial=initial)
        pool = _Pool.of(found)
        for _ in range(self.config.rounds - 1 if initial is None else 0):
            missing = torch.nonzero(~pool.accepted.any(dim=1) & pool.improving(self.config.min_round_gain)).flatten()
            if not missing.numel():
                break
            again = self.search_solver.solve(problem, target[missing], n_candidates, generator=generator)
            pool.merge(again, missing)
        started = time.perf_counter()
        slots, starts = _refill_plan(pool.accepted, pool.parameters)
        candidates = pool.parameters.clone()
        if slots:
            surveys = torch.tensor([survey for survey, _ in slots])
            new = rml_samples(problem, target[surveys], starts, generator, self.config).cpu()
            for (survey, position), candidate in zip(slots, new, strict=True):
                candidates[survey, position] = candidate.to(candidates.dtype)
        refilled = np.zeros(pool.accepted.shape, dtype=bool)
        for survey, position in slots:
            refilled[survey, position] = True
        history = dict(found.history)
        history.update(search_order=history.pop("order"), search_rounds=pool.rounds.numpy(),
                       round_best_misfit=pool.round_best.numpy())
        solutions = self.finish(problem, candidates, target, history, pool.wall_time + time.perf_counter() - started)
        order = np.asarray(solutions.history["order"])
        solutions.history["refilled"] = np.take_along_axis(refilled, order, axis=1)
        return replace(solutions, config={**solutions.config, **found.config, **self.describe()})


@dataclass
class _Pool:
    """The candidates of a data set's search rounds: the best ``R`` by normalised misfit (S, R, …)."""

    parameters: torch.Tensor
    accepted: torch.Tensor
    normalised: torch.Tensor
    rounds: torch.Tensor
    wall_time: float
    round_best: torch.Tensor  # (S, rounds so far): each round's own best normalised misfit, NaN where not run

    @classmethod
    def of(cls, found: Solutions) -> _Pool:
        assert found.normalised_misfit is not None  # refill needs a noise level
        return cls(found.parameters.clone(), found.accepted.clone(), found.normalised_misfit.clone(),
                   torch.ones(found.n_surveys, dtype=torch.long), found.wall_time,
                   found.normalised_misfit.min(dim=1).values.double().reshape(-1, 1))

    def improving(self, min_gain: float | None) -> torch.Tensor:
        """(S,) bool: data sets whose last round lowered their best misfit by ≥ ``min_gain`` (relative); a
        data set searched once has no gain yet and counts as improving, as does every one when ``min_gain`` is None."""
        count = self.round_best.shape[1]
        if min_gain is None or count < 2:
            return torch.ones(self.round_best.shape[0], dtype=torch.bool)
        before = self.round_best[:, :-1].nan_to_num(nan=math.inf).min(dim=1).values
        last = self.round_best[:, -1]
        # NaN (not searched last round: already stopped or accepted) compares False
        return last <= (1 - min_gain) * before

    def merge(self, again: Solutions, surveys: torch.Tensor) -> None:
        """Pool a new round's candidates ``again`` of data sets ``surveys`` with theirs; keep the best R."""
        assert again.normalised_misfit is not None
        count = self.parameters.shape[1]
        column = torch.full((self.round_best.shape[0], 1), float("nan"), dtype=torch.float64)
        column[surveys, 0] = again.normalised_misfit.min(dim=1).values.double()
        self.round_best = torch.cat([self.round_best, column], dim=1)
        for row, survey in enumerate(surveys.tolist()):
            normalised = torch.cat([self.normalised[survey], again.normalised_misfit[row]])
            best = torch.argsort(normalised, stable=True)[:count]
            self.parameters[survey] = torch.cat([self.parameters[survey], again.parameters[row]])[best]
            self.accepted[survey] = torch.cat([self.accepted[survey], again.accepted[row]])[best]
            self.normalised[survey] = normalised[best]
            self.rounds[survey] += 1
        self.wall_time += again.wall_time


def _refill_plan(accepted: torch.Tensor, parameters: torch.Tensor) -> tuple[list, torch.Tensor]:
    """``[(survey, position)]`` of the candidates to replace and the accepted candidate each starts from."""
    slots, starts = [], []
    for survey in range(accepted.shape[0]):
        good = torch.nonzero(accepted[survey]).flatten()
        bad = torch.nonzero(~accepted[survey]).flatten()
        if not good.numel() or not bad.numel():
            continue
        for k, position in enumerate(bad.tolist()):
            slots.append((survey, position))
            starts.append(parameters[survey, good[k % good.numel()]])
    return slots, torch.stack(starts) if starts else torch.empty(0, parameters.shape[-1])
