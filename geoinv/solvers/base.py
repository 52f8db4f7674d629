"""The Solver interface and the Solutions container every solver returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._float_traps import switch_off_float_traps
from .._typing import PathType, TensorLike
from ..errors import ConfigError
from ..problem import InverseProblem
from .callbacks import Monitor, ProgressBar

if TYPE_CHECKING:
    from ..forward.base import ForwardOperator

__all__ = ["ACCEPTANCE", "CANDIDATE_KINDS", "MAX_STARTS", "Search", "Solutions", "Solver", "check_initial",
           "check_n_starts", "resorted_order"]

#: the most starts (candidates) per data set a solve may ask for: each is decoded as a full model
MAX_STARTS = 100_000


def check_n_starts(value: object, name: str = "n_starts") -> int:
    """Return ``value`` as an int in 1..MAX_STARTS, else raise :class:`ConfigError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_STARTS:
        raise ConfigError(f"{name} must be an integer from 1 to {MAX_STARTS} (geoinv.solvers.base.MAX_STARTS), "
                          f"got {value!r}")
    return int(value)


def check_initial(initial: torch.Tensor | None, n_surveys: int, n_parameters: int) -> torch.Tensor:
    """Explicit starts as ``(S, R, n)`` float32 (a shared ``(R, n)`` is repeated per data set); else ConfigError."""
    starts = torch.as_tensor(initial, dtype=torch.float32)
    if starts.ndim == 2:
        starts = starts.expand(n_surveys, *starts.shape)
    if starts.ndim != 3 or starts.shape[0] != n_surveys or starts.shape[2] != n_parameters:
        raise ConfigError(f"initial must have shape (R, {n_parameters}) or ({n_surveys}, R, {n_parameters}) "
                          f"(starts per data set, parameters), got {tuple(torch.as_tensor(initial).shape)}")
    check_n_starts(starts.shape[1], "the number of initial starts R")
    return starts.clone()


#: what a solver's candidates can be: ends of searches, or draws of a sampler
CANDIDATE_KINDS = ("optima", "posterior samples")

#: The one acceptance rule of every solver: normalised RMSE (χ²/N)^½ ≤ ACCEPTANCE,
#: residuals divided by each datum's standard error.
ACCEPTANCE = 1.1


@dataclass
class Solutions:
    """Candidates of one solver run, sorted by misfit (best first) per survey.

    Attributes
    ----------
    parameters : torch.Tensor, shape (S, R, n_parameters)
        Candidate parameter vectors for each of S observed data sets.
    data : torch.Tensor, shape (S, R, n_data)
        Their re-simulated data (problem's data unit).
    misfit : torch.Tensor, shape (S, R)
        Full-data RMSE against the observed data (data unit).
    accepted : torch.Tensor of bool, shape (S, R)
        Candidates with normalised RMSE ≤ :data:`ACCEPTANCE` (all False when the
        problem has no noise level).
    models : torch.Tensor, optional, shape (S, R, ...)
        The models the candidates stand for (decoded facies for latent tomography).
    history : dict of numpy arrays
        Per-iteration records; arrays with a trailing ``(S, R)`` are per start,
        in the original (unsorted) start order, with ``order`` giving the sort.
    config : dict
        Solver name, settings and seed that produced the run.
    wall_time : float
        Seconds spent in ``solve``.
    normalised_misfit : torch.Tensor, optional, shape (S, R)
        RMSE of the residuals divided by each datum's noise standard deviation,
        ``(χ²/N)^½`` (None without a noise level). 1 means "fits to the noise".
    refined : dict, optional
        Models refined beyond the prior's manifold from the best candidates
        (see :func:`geoinv.solvers.refine.refine_models`): ``models``, ``misfit``,
        ``normalised_misfit``, ``steps``, ``accepted``.
    unknowns : dict, optional
        Field unknowns estimated with the latent vector (see :class:`geoinv.FieldUnknowns`),
        per candidate ``(S, R)``: ``channel_velocity``, ``matrix_velocity`` (m/s),
        ``time_zero`` (s).

    Notes
    -----
    :meth:`posterior` summarises the models cell by cell (mean, standard
    deviation, channel probability, quantiles): of a sampler's draws, or of
    an optimiser's accepted candidates; stored under ``posterior/`` by
    :meth:`to_hdf5`. A sampler's chains and their diagnostics are in
    ``history`` (see :mod:`geoinv.sampling`).
    """

    parameters: torch.Tensor
    data: torch.Tensor
    misfit: torch.Tensor
    accepted: torch.Tensor
    models: torch.Tensor | None = None
    history: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    wall_time: float = 0.0
    normalised_misfit: torch.Tensor | None = None
    refined: dict | None = None
    unknowns: dict | None = None

    @property
    def from_sampler(self) -> bool:
        """Whether the candidates are a sampler's posterior draws (else the ends of searches)."""
        return self.config.get("candidates") == "posterior samples"

    def posterior(self, threshold: float = 0.5,
                  quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> dict[str, torch.Tensor]:
        """Per-cell statistics of the candidates' models, per observed data set.

        From a sampler (:attr:`from_sampler`) these are Monte Carlo estimates of
        the posterior from all its draws. From an optimiser they use the
        accepted candidates (all candidates for a data set with none accepted;
        ``from_accepted`` says which): statistics of an ensemble of optimised
        starts, an approximation of the posterior, not samples of it.

        Parameters
        ----------
        threshold : float
            Facies value above which a cell counts as channel.
        quantiles : tuple of float
            Levels in (0, 1) of the per-cell quantiles.

        Returns
        -------
        dict
            ``mean``, ``std``, ``channel_probability``: tensors ``(S, *model_shape)``;
            ``quantiles``: ``(S, Q, *model_shape)`` at ``quantile_levels`` ``(Q,)``;
            ``n_used``: ``(S,)`` candidates used; ``from_accepted``: ``(S,)`` bool;
            ``from_sampler``: ``(S,)`` bool.
        """
        if self.models is None:
            raise ConfigError("these solutions hold no models (the problem has no model map)")
        levels = torch.as_tensor(quantiles, dtype=torch.float32).reshape(-1)
        if levels.numel() == 0 or not ((levels > 0) & (levels < 1)).all():
            raise ConfigError(f"quantiles must be levels in (0, 1), got {quantiles!r}")
        sampled = self.from_sampler
        from_accepted = self.accepted.any(dim=1) & (not sampled)
        use = torch.where(from_accepted[:, None], self.accepted, torch.ones_like(self.accepted))
        weight = use.float().reshape(*use.shape, *([1] * (self.models.ndim - 2)))
        count = weight.sum(dim=1)
        models = self.models.float()
        mean = (weight * models).sum(dim=1) / count
        variance = (weight * (models - mean[:, None]).pow(2)).sum(dim=1) / count
        probability = (weight * (models > threshold).float()).sum(dim=1) / count
        # unused candidates become NaN so that nanquantile skips them
        masked = torch.where(weight.bool(), models, torch.full_like(models, torch.nan))
        return {"mean": mean, "std": variance.sqrt(), "channel_probability": probability,
                "quantiles": _cell_quantiles(masked, levels).reshape(mean.shape[0], -1, *mean.shape[1:]),
                "quantile_levels": levels, "n_used": use.sum(dim=1), "from_accepted": from_accepted,
                "from_sampler": torch.full(from_accepted.shape, sampled)}

    @property
    def n_surveys(self) -> int:
        return int(self.parameters.shape[0])

    @property
    def n_candidates(self) -> int:
        return int(self.parameters.shape[1])

    @property
    def best(self) -> torch.Tensor:
        """Best candidate per survey, shape ``(S, n_parameters)``."""
        return self.parameters[:, 0]

    @property
    def acceptance_rate(self) -> torch.Tensor:
        """Fraction of accepted candidates per survey, shape ``(S,)``."""
        return self.accepted.float().mean(dim=1)

    def refilled_accepted(self) -> torch.Tensor | None:
        """Accepted candidates per survey that an RML refill made (``history["refilled"]``), ``(S,)``;
        None when no refill ran."""
        if "refilled" not in self.history:
            return None
        return (torch.as_tensor(np.asarray(self.history["refilled"])) & self.accepted).sum(dim=1)

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = []
        unit = self.config.get("data_unit") or ""
        for s in range(self.n_surveys):
            misfit = self.misfit[s]
            text = f"survey {s}: RMSE best {misfit[0]:.4g} {unit}, median {misfit.median():.4g} {unit}"
            if self.normalised_misfit is not None:
                normalised = self.normalised_misfit[s]
                text += (f" = {normalised[0]:.3g} σ / {normalised.median():.3g} σ, accepted (≤ "
                         f"{self.config.get('acceptance', ACCEPTANCE)} σ) {int(self.accepted[s].sum())}"
                         f"/{self.n_candidates}")
                refilled = self.refilled_accepted()
                if refilled is not None:
                    text += f" ({int(refilled[s])} by RML refill)"
            else:
                text += " (no noise level given: acceptance undefined)"
            lines.append(text)
            lines.extend(self._unknowns_lines(s))
        lines.append(f"wall time {self.wall_time:.1f} s ({self.config.get('solver', '?')})")
        return "\n".join(lines)

    def unknowns_summary(self, survey: int = 0) -> dict[str, tuple[float, float, float]]:
        """Each field unknown's best-candidate value, and the mean and standard deviation over the
        candidates the maps use (a sampler's draws; else the accepted, or all when none is)."""
        if not self.unknowns:
            return {}
        use = self.accepted[survey] if (self.accepted[survey].any() and not self.from_sampler) else \
            torch.ones_like(self.accepted[survey])
        out = {}
        for name, value in self.unknowns.items():
            values = torch.as_tensor(value)[survey].double()
            used = values[use]
            spread = float(used.std()) if used.numel() > 1 else 0.0
            out[name] = (float(values[0]), float(used.mean()), spread)
        return out

    def _unknowns_lines(self, survey: int) -> list[str]:
        from ..nuisance import display_unit

        lines = []
        for name, (best, mean, spread) in self.unknowns_summary(survey).items():
            factor, unit = display_unit(name)
            lines.append(f"  {name.replace('_', ' ')}: best {best * factor:.4g} {unit}, mean {mean * factor:.4g} "
                         f"± {spread * factor:.2g} {unit}")
        return lines

    def to_hdf5(self, path: PathType, group: str = "solutions", mode: str = "a") -> None:
        """Write to ``path`` under ``group``, atomically (layout: :mod:`geoinv.io.solutions`).

        ``mode='a'`` keeps the file's other groups (a copy of it gets the new
        group and replaces it); ``'w'`` starts a new file.
        """
        from ..io.solutions import write_solutions

        write_solutions(self, path, group, mode)

    def write_group(self, handle: Any, group: str = "solutions") -> None:
        """Write into an open ``h5py.File`` (or group) under ``group``, replacing it."""
        from ..io.solutions import write_solutions_group

        write_solutions_group(self, handle, group)

    @classmethod
    def from_hdf5(cls, path: PathType, group: str = "solutions") -> Solutions:
        """Read what :meth:`to_hdf5` wrote."""
        from ..io.solutions import read_solutions

        return read_solutions(path, group)


@dataclass
class Search:
    """What a solver's :meth:`Solver.search` found, before the shared finish.

    Attributes
    ----------
    candidates : torch.Tensor, shape (S, R, n)
        Candidates per observed data set (parameters, or models for model-space solvers).
    history : dict
        Per-step records.
    ranking : {'misfit', 'solver'}
        Sort by the true misfit, or keep the solver's own order (see :meth:`Solver.finish`).
    resorted : int
        With ``ranking='solver'``: the first ``resorted`` candidates of the solver's order are
        sorted again by their true misfit (they are re-simulated by the finish anyway).
    simulate, to_model : callable, optional
        Data and model of flat candidates, where they are not the problem's ``forward`` and ``model``.
    data : torch.Tensor, shape (S, R, n_data), optional
        The candidates' simulated data, where the search has them (the finish then simulates nothing).
    kind : {'optima', 'posterior samples'}
        What the candidates are: the ends of a search, or draws of a sampler.
    """

    candidates: torch.Tensor
    history: dict = field(default_factory=dict)
    ranking: str = "misfit"
    resorted: int = 0
    simulate: Callable | None = None
    to_model: Callable | None = None
    data: torch.Tensor | None = None
    kind: str = "optima"


class Solver:
    """Common interface of the inversion methods.

    ``fit(problem)`` trains what a learned solver needs (a no-op for
    optimisation-based ones); ``solve(problem, observed)`` returns
    :class:`Solutions`. Settings live in a dataclass ``self.config``.

    Parameters
    ----------
    config : dataclass, optional
        The solver's settings (default: its config class's defaults).
    callbacks : sequence of Callback, optional
        Called at every step of the solver's loops (a progress bar is added
        when ``config.progress`` is true).
    **overrides
        Replace single settings of ``config``.

    Notes
    -----
    :meth:`solve` is the same for every solver: the prologue (timer, targets,
    seeded generator, starting points from the prior or ``initial=``), the
    solver's one search method :meth:`search`, and the shared finish
    (:meth:`finish`: re-simulate, misfit, the acceptance rule, sort). A new
    solver is one module with a subclass that implements :meth:`search` (and
    ``fit`` if it learns) and one entry point in the group ``geoinv.solvers``.
    Searches around a solver (many draws keep the best, portfolios) are
    wrappers in :mod:`geoinv.solvers.searches`.
    """

    #: registry name
    name: str = ""
    config_class: type = object
    #: candidates are models (cell values), not parameters of the problem (no refinement applies)
    model_space: bool = False
    #: the search starts from points (prior draws, or ``initial=``); False for solvers that map data to
    #: candidates directly (trained inverse networks, a smoothness inversion)
    takes_starts: bool = True
    #: the candidates are posterior draws (their number is the sample count, not a number of starts)
    samples: bool = False

    def __init__(self, config: Any = None, callbacks: Sequence[Any] = (), **overrides: Any) -> None:
        if config is None:
            config = self.config_class()
        if not is_dataclass(config):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config)}")
        if overrides:
            try:
                config = replace(config, **overrides)  # type: ignore[type-var]
            except TypeError as exc:
                raise ConfigError(f"{type(self).__name__}: {exc}") from exc
        self.config = config
        self.callbacks = list(callbacks)

    @classmethod
    def for_operator(cls, operator: ForwardOperator, *, n_starts: int = 20, seed: int = 0, progress: bool = False,
                     epochs: int | None = None, preset: str | None = None) -> Solver:
        """This solver with the settings that suit a forward operator (what ``geoinv invert`` builds).

        The default: the solver's own defaults with ``seed`` and ``progress``;
        ``preset`` and ``epochs`` belong to solvers with schedules (latent SGD
        overrides this method).
        """
        if preset is not None or epochs is not None:
            raise ConfigError(f"preset and epochs apply to latent-sgd only, not to {cls.name!r}")
        return cls(seed=seed, progress=progress)

    def candidates_for(self, n_starts: int) -> int | None:
        """``n_candidates`` for a caller that was given a number of starts (``--starts``).

        The starts themselves for optimisers; None for samplers, which return
        their configured sample count and spend the starts on their starter.
        """
        return None if self.samples else n_starts

    def fit(self, problem: InverseProblem, **kwargs: Any) -> Solver:
        """Prepare the solver for ``problem`` (nothing to do by default)."""
        return self

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`solve` can run (always, for solvers that learn nothing)."""
        return True

    def solve(self, problem: InverseProblem, observed: TensorLike | None = None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        """Invert ``observed`` (default: ``problem.observed``).

        Parameters
        ----------
        problem : InverseProblem
            The problem (its ``observed`` and ``noise_std`` are used by default).
        observed : array_like, shape (n_data,) or (S, n_data), optional
            Data to invert, in the problem's data unit.
        n_candidates : int, optional
            Starts (candidates) per data set; default the solver's ``config.n_starts``.
        generator : torch.Generator, optional
            Random source of the starts and the search; default seeded with ``config.seed``.
        initial : torch.Tensor, shape (R, n) or (S, R, n), optional
            Explicit starting points instead of prior draws (solvers with
            :attr:`takes_starts`), e.g. another solver's candidates to polish.

        Returns
        -------
        Solutions
            Sorted by normalised misfit (or the solver's ranking), per data set.
        """
        started = time.perf_counter()
        switch_off_float_traps()
        self.check_problem(problem)
        target = problem.targets(observed)
        generator = generator or torch.Generator().manual_seed(getattr(self.config, "seed", 0))
        starts = self.starting_points(problem, target.shape[0], n_candidates, generator, initial)
        found = self.search(problem, target, starts, generator, n_candidates)
        return self.finish(problem, found.candidates, target, found.history, time.perf_counter() - started,
                           ranking=found.ranking, simulate=found.simulate, to_model=found.to_model,
                           data=found.data, kind=found.kind, resorted=found.resorted)

    def search(self, problem: InverseProblem, target: torch.Tensor, starts: Any,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """The solver's one search method (every solver implements it; wrappers override :meth:`solve`).

        Parameters
        ----------
        problem : InverseProblem
        target : torch.Tensor, shape (S, n_data)
            The observed data sets.
        starts : torch.Tensor, shape (S, R, n), or None
            Starting points (None for solvers without :attr:`takes_starts`).
        generator : torch.Generator
            Seeded random source, already used for the prior draws.
        n_candidates : int or None
            What the caller asked for (solvers that keep fewer candidates than
            they start from read it).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement search()")

    def check_problem(self, problem: InverseProblem) -> None:
        """Raise :class:`ConfigError` if this solver cannot invert ``problem`` (default: any problem)."""

    def default_starts(self, n_candidates: int | None) -> int:
        """Prior draws per data set when no ``initial`` is given (default ``n_candidates`` or ``config.n_starts``)."""
        return check_n_starts(n_candidates or getattr(self.config, "n_starts", 1))

    def starting_points(self, problem: InverseProblem, n_surveys: int, n_candidates: int | None,
                        generator: torch.Generator, initial: torch.Tensor | None = None) -> torch.Tensor | None:
        """Starts ``(S, R, n)``: ``initial`` checked, or prior draws; None for solvers without starts."""
        if not self.takes_starts:
            if initial is not None:
                raise ConfigError(f"{self.name} computes its candidates from the data and takes no initial "
                                  "starting points; leave initial out")
            return None
        if initial is None:
            return self.draw_starts(problem, n_surveys, self.default_starts(n_candidates), generator)
        return check_initial(initial, n_surveys, problem.n_parameters)

    @staticmethod
    def draw_starts(problem: InverseProblem, n_surveys: int, n_starts: int,
                    generator: torch.Generator) -> torch.Tensor:
        """``n_starts`` prior draws per data set, ``(S, n_starts, n)`` float32, drawn survey after survey."""
        draws = problem.sample_prior(n_surveys * n_starts, generator).detach().float()
        return draws.reshape(n_surveys, n_starts, problem.n_parameters)

    def describe(self) -> dict:
        return {"solver": self.name, **asdict(self.config)}

    def monitor(self, description: str, total_steps: int) -> Monitor:
        """A :class:`Monitor` with this solver's callbacks (and a progress bar if configured)."""
        callbacks = list(self.callbacks)
        if getattr(self.config, "progress", False):
            callbacks.append(ProgressBar())
        return Monitor(description, total_steps, callbacks)

    def finish(self, problem: InverseProblem, candidates: torch.Tensor, target: torch.Tensor, history: dict,
               wall_time: float, ranking: str = "misfit", chunk: int = 4096, *,
               simulate: Callable[..., torch.Tensor] | None = None, to_model: Callable[..., torch.Tensor] | None = None,
               data: torch.Tensor | None = None, kind: str = "optima", resorted: int = 0) -> Solutions:
        """The shared end of every solve: re-simulate, misfit, accept, sort, models, :class:`Solutions`.

        Parameters
        ----------
        problem : InverseProblem
        candidates : torch.Tensor, shape (S, R, n_parameters)
            Candidates per observed data set.
        target : torch.Tensor, shape (S, n_data)
            The observed data.
        history : dict
            Per-step records; an ``order`` entry (the sort applied) is added.
        wall_time : float
            Seconds the solve took.
        ranking : {'misfit', 'solver'}
            Sort candidates by their true normalised misfit (RMSE without a noise
            level), or keep the solver's own ranking (e.g. Neural Adjoint's
            surrogate loss, which r_T evaluates).
        chunk : int
            Candidates re-simulated per forward call.
        simulate, to_model : callable, optional
            Data and model of flat candidates ``(B, n)``; default the problem's
            ``forward`` and ``model`` (model-space solvers pass their own).
        data : torch.Tensor, shape (S, R, n_data), optional
            The candidates' data, if the search simulated them already.
        kind : {'optima', 'posterior samples'}
            What the candidates are (recorded as ``config['candidates']``; see
            :meth:`Solutions.posterior`).
        resorted : int
            With ``ranking='solver'``, the first ``resorted`` candidates of the solver's order
            are sorted by their true misfit (recorded as ``config['resorted']``).
        """
        if ranking not in ("misfit", "solver"):
            raise ConfigError(f"ranking must be 'misfit' or 'solver', got {ranking!r}")
        if kind not in CANDIDATE_KINDS:
            raise ConfigError(f"kind must be one of {CANDIDATE_KINDS}, got {kind!r}")
        n_surveys, n_candidates, n_parameters = candidates.shape
        with torch.no_grad():
            flat = candidates.reshape(-1, n_parameters).to(problem.device)
            if data is None:
                simulate = simulate or problem.forward
                data = torch.cat([simulate(part) for part in flat.split(chunk)])
            data = data.to(problem.device).reshape(n_surveys, n_candidates, -1)
            misfit, normalised = problem.misfits(data, target[:, None, :])
            key = misfit if normalised is None else normalised
            order = (torch.argsort(key, dim=1) if ranking == "misfit"
                     else resorted_order(key, resorted))
            candidates, data, misfit = (_gather(t, order) for t in (candidates.to(order.device), data, misfit))
            normalised = None if normalised is None else _gather(normalised, order)
            models = None
            to_model = to_model or (problem.model if problem.has_model else None)
            if to_model is not None:
                flat = candidates.reshape(-1, n_parameters)
                models = torch.cat([to_model(part).cpu() for part in flat.split(chunk)])
                models = models.reshape(n_surveys, n_candidates, *models.shape[1:])
        accepted = (normalised <= ACCEPTANCE if normalised is not None
                    else torch.zeros(misfit.shape, dtype=torch.bool))
        history = {**history, "order": order.cpu().numpy()}
        resort = {"resorted": min(resorted, n_candidates)} if ranking == "solver" and resorted > 1 else {}
        config = {**self.describe(), "problem": problem.name, "data_unit": problem.data_unit,
                  "ranking": ranking, "acceptance": ACCEPTANCE, "n_candidates": n_candidates, "candidates": kind,
                  "noise_std": None if problem.noise_std is None else float(problem.noise_std.mean()), **resort}
        return Solutions(candidates.detach().cpu(), data.float().cpu(), misfit.float().cpu(), accepted.cpu(),
                         models, history, config, wall_time,
                         None if normalised is None else normalised.float().cpu())


def resorted_order(key: torch.Tensor, count: int) -> torch.Tensor:
    """An order ``(S, R)`` that keeps a solver's ranking but sorts its first ``count`` by ``key``.

    ``key`` holds the true misfits ``(S, R)`` in the solver's order; the first
    candidate becomes the best of ``count`` re-simulations.
    """
    n_surveys, n_candidates = key.shape
    order = torch.arange(n_candidates, device=key.device).expand(n_surveys, -1).clone()
    count = min(max(int(count), 0), n_candidates)
    if count > 1:
        order[:, :count] = torch.argsort(key[:, :count], dim=1, stable=True)
    return order


def _cell_quantiles(models: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Quantiles over dimension 1 of ``models`` (S, R, ...) ignoring NaN, as ``(S, Q, cells)``."""
    flat = models.flatten(2)
    # torch's quantile refuses inputs above 2**24 elements: take the cells in blocks
    block = max(1, 2**24 // max(flat.shape[1], 1))
    return torch.stack([torch.cat([torch.nanquantile(survey[:, start:start + block], levels, dim=0)
                                   for start in range(0, flat.shape[2], block)], dim=1)
                        for survey in flat])


def _gather(tensor: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Reorder dimension 1 of ``tensor`` (S, R, ...) by ``order`` (S, R)."""
    index = order.to(tensor.device).reshape(*order.shape, *([1] * (tensor.ndim - 2)))
    return torch.gather(tensor, 1, index.expand(*order.shape, *tensor.shape[2:]))
