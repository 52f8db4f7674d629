"""Latent-space (stochastic) gradient descent with decreasing step and regularization.

The headline solver of geoinv (Lopez-Alvis et al., seed 002): descend the data
misfit in the latent space of a generative model, on minibatches of the data,
with a step size and a latent regularization that both decrease, so that early
noisy steps escape the local minima the manifold creates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..errors import ConfigError, SolverError
from ..forward.linearized import KERNELS
from ..prior.base import REGULARIZATIONS, expected_latent_norm
from ..problem import InverseProblem
from .base import Search, Solutions, Solver, check_n_starts
from .gauss_newton_step import GaussNewtonStep
from .searches import Explore, Portfolio

#: keys of a run's Solutions.config that describe the run, not the solver's settings
_RUN_KEYS = ("problem", "data_unit", "ranking", "acceptance", "n_candidates", "noise_std")

__all__ = ["LatentSGD", "LatentSGDConfig", "Stage", "expected_latent_norm"]

_OPTIMIZERS = ("sgd", "adam", "gauss-newton")
_MINIBATCHES = ("random", "source")


_STAGE_DOC = """
    optimizer : {'sgd', 'adam', 'gauss-newton'}
        Plain gradient steps ``z ← z − ℓ∇φ``, Adam with learning rate ℓ, or
        damped Gauss-Newton on the full data with the problem's exact Jacobian
        (:class:`~geoinv.solvers.gauss_newton_step.GaussNewtonStep`; one
        iteration per epoch, ``step_size`` is the initial Levenberg damping,
        the objective is χ² + λR, and a start stops once it fits the noise).
        Build one with :meth:`Stage.gauss_newton`.
    step_size : float
        Initial step size ℓ₀.
    step_decay : float
        ℓ is multiplied by this every ``decay_every`` epochs (1 = fixed step).
    decay_every : int
        Epochs between step-size decays.
    epochs : int
        Passes over the data.
    batch_size : int or None
        Data per step for ``minibatch='random'``; None uses all data every step.
    minibatch : {'random', 'source'}
        Random data without replacement within an epoch, or the data of one
        source per step (one eikonal solve per step), sources in random order.
    regularization : {'ring', 'origin', 'none'}
        ``(‖z‖ − E‖z‖)²``, ``‖z‖²`` or nothing, as the problem's prior defines
        them (:meth:`geoinv.prior.Prior.regularizer`).
    reg_weight : float
        Initial regularization weight λ₀.
    reg_decay : float
        λ is multiplied by this after every step.
    misfit_scale : float
        Factor on the minibatch's summed squared residuals (e.g. 25/625 makes a
        full-batch misfit comparable with the reference's 25-datum minibatches).
    temperature : float
        Decoder temperature T ≥ 1: the search sees ``sigmoid(logits / T)``, a
        smoother map than the prior's own (T = 1), for continuation schedules.
    relinearize : int
        0: every step simulates with the problem's forward. k ≥ 1: the forward is
        linearised at each start's current model every k epochs
        (:meth:`geoinv.InverseProblem.linearized`, one sparse product per
        step; the eikonal's ray kernel) — the bent-ray iteration, for cheap
        many-step search stages on a nonlinear forward; full-data misfits are
        then recorded (exactly) at each linearisation.
    kernel : {'operator', 'straight-ray'}
        Kernel of a linearised stage: the operator's own (the eikonal's rays)
        or the straight-ray matrix with the exact nonlinear times as offset
        (a model-error-corrected straight-ray search).
    max_step : float or None
        Gauss-Newton only: the longest step (latent units) an iteration may
        take per start (a trust radius; the direction is shortened to it).
        None: the full damped step. On a nonlinear forward a full step can
        jump out of a small basin that shorter steps would descend; in
        :meth:`default_nonlinear`'s finish, though, a cap of 0.25 accepted
        fewer starts than full steps (16/50 against 25/50 on eikonal data,
        same draws), so no preset uses it.
"""


@dataclass(frozen=True)
class Stage:
    __doc__ = """One stage of a latent-SGD schedule: optimizer, step and regularization schedules.

    Parameters
    ----------""" + _STAGE_DOC

    optimizer: str = "sgd"
    step_size: float = 1e-2
    step_decay: float = 0.95
    decay_every: int = 1
    epochs: int = 120
    batch_size: int | None = 25
    minibatch: str = "random"
    regularization: str = "ring"
    reg_weight: float = 10.0
    reg_decay: float = 0.999
    misfit_scale: float = 1.0
    temperature: float = 1.0
    relinearize: int = 0
    kernel: str = "operator"
    max_step: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.optimizer in _OPTIMIZERS, f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}"),
            (self.regularization in REGULARIZATIONS,
             f"regularization must be one of {REGULARIZATIONS}, got {self.regularization!r}"),
            (self.minibatch in _MINIBATCHES, f"minibatch must be one of {_MINIBATCHES}, got {self.minibatch!r}"),
            (0 < self.step_size < math.inf, f"step_size must be finite and > 0, got {self.step_size}"),
            (0 < self.step_decay <= 1, f"step_decay must be in (0, 1], got {self.step_decay}"),
            (0 < self.reg_decay <= 1, f"reg_decay must be in (0, 1], got {self.reg_decay}"),
            (0 <= self.reg_weight < math.inf, f"reg_weight must be finite and >= 0, got {self.reg_weight}"),
            (0 < self.misfit_scale < math.inf, f"misfit_scale must be finite and > 0, got {self.misfit_scale}"),
            (self.decay_every >= 1 and self.epochs >= 1, "decay_every and epochs must be >= 1"),
            (self.batch_size is None or self.batch_size >= 1, f"batch_size must be >= 1 or None, got {self.batch_size}"),
            (1 <= self.temperature < math.inf, f"temperature must be finite and >= 1, got {self.temperature}"),
            (isinstance(self.relinearize, int) and self.relinearize >= 0,
             f"relinearize must be an integer >= 0 (epochs between linearisations), got {self.relinearize!r}"),
            (self.kernel in KERNELS, f"kernel must be one of {KERNELS}, got {self.kernel!r}"),
            (self.optimizer != "gauss-newton" or self.relinearize == 0,
             "a gauss-newton stage uses the exact Jacobian at every iteration; set relinearize=0"),
            (self.max_step is None or (self.optimizer == "gauss-newton" and 0 < self.max_step < math.inf),
             (f"max_step (latent units) must be finite and > 0, and applies to gauss-newton stages only; "
              f"got {self.max_step!r} with optimizer {self.optimizer!r}")),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def polish(cls, epochs: int, minibatch: str = "random", step_size: float = 1e-3,
               temperature: float = 1.0) -> Stage:
        """A regularization-free Adam stage at a fixed step: full batches (``minibatch='random'``)
        or one source per step (``'source'``)."""
        batch = {"batch_size": None} if minibatch == "random" else {"minibatch": "source"}
        return cls(optimizer="adam", step_size=step_size, step_decay=1.0, epochs=epochs, regularization="none",
                   reg_weight=0.0, temperature=temperature, **batch)

    @classmethod
    def gauss_newton(cls, iterations: int = 10, reg_weight: float = 1.0, regularization: str = "origin",
                     damping: float = 1e-3, temperature: float = 1.0, max_step: float | None = None) -> Stage:
        """A damped Gauss-Newton stage: ``iterations`` full-data iterations on χ² + λR.

        Converges from near a basin's bottom in a few iterations where gradient
        steps crawl; each iteration costs one Jacobian per start (for the
        eikonal, its adjoint kernel) and a three-point line search. λ = 1 with
        'origin' is the MAP of the standard-normal latent prior. At
        ``temperature`` T > 1 it iterates on the smoother decoder
        ``sigmoid(logits / T)`` (a continuation: wider basins), stopping at the
        noise of that decoder's misfit; the history records the T = 1 misfit.
        ``max_step`` caps each iteration's step length (latent units).
        """
        return cls(optimizer="gauss-newton", epochs=iterations, step_size=damping, step_decay=1.0,
                   batch_size=None, regularization=regularization, reg_weight=reg_weight, reg_decay=1.0,
                   temperature=temperature, max_step=max_step)

    def as_stage(self) -> Stage:
        """This stage's settings alone (drops the settings of a whole run)."""
        return Stage(**{f.name: getattr(self, f.name) for f in fields(Stage)})


@dataclass(frozen=True)
class LatentSGDConfig(Stage):
    __doc__ = """Settings of :class:`LatentSGD` (defaults: the reference linear case).

    The fields of :class:`Stage` define the first stage; ``then`` appends more
    (a staged schedule: each with its own optimizer, step, regularization and
    decoder temperature), run one after the other from where the last stopped.

    Parameters
    ----------""" + _STAGE_DOC + """    n_starts : int
        Random starts (from the prior) per observed data set, optimised as one batch.
    seed : int
        Seeds the starting points and the minibatch order.
    record_every : int or None
        Steps between full-data misfit records (default: once per epoch).
    progress : bool
        Show a tqdm progress bar.
    then : tuple of Stage
        Further stages.
    explore : int
        Keep the best of many: the first ``explore_stages`` stages run from
        ``explore × n_starts`` prior draws, and only the ``n_starts`` with the
        lowest full-data misfit per data set go on to the further stages (cheap
        exploration, costly refinement) or, when every stage explores, are
        returned. 1: no selection.
    explore_stages : int or None
        Stages run on all ``explore × n_starts`` draws (default 1, the first);
        None: all of them (the best ``n_starts`` of the finished draws are kept;
        the history then describes the kept starts, ``explore_kept`` their
        draw indices).
    portfolio : tuple of (float, LatentSGDConfig)
        Other searches run beside this schedule, each ``(share, config)`` from
        ``round(share × n_starts)`` prior draws of its own (its schedule, its
        exploring); the ``n_starts`` candidates with the lowest misfit of all
        are kept. For searches that reach different truths' basins (no
        preset uses one: beside :meth:`default_nonlinear` the Gauss-Newton
        continuation from 0.5 × draws accepted 27/50 eikonal starts against
        25/50, for 46 % more time). The history's plain keys describe this
        schedule's own starts, ``portfolio{i}_*`` member i's, and
        ``portfolio_source`` (S, n_starts) says which search (0: this one)
        each kept candidate came from.
"""

    n_starts: int = 20
    seed: int = 0
    record_every: int | None = None
    progress: bool = True
    then: tuple = ()
    explore: int = 1
    explore_stages: int | None = 1
    portfolio: tuple = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "portfolio", _check_portfolio(self.portfolio))
        stages = tuple(Stage(**stage) if isinstance(stage, dict) else stage for stage in self.then)
        if not all(isinstance(stage, Stage) for stage in stages):
            raise ConfigError("then must hold Stage objects (or dicts of their fields)")
        object.__setattr__(self, "then", tuple(stage.as_stage() for stage in stages))
        check_n_starts(self.n_starts)
        if isinstance(self.explore, bool) or not isinstance(self.explore, int) or self.explore < 1:
            raise ConfigError(f"explore must be an integer >= 1 (prior draws per kept start), got {self.explore!r}")
        stages = 1 + len(self.then)
        if self.explore_stages is not None and (
                isinstance(self.explore_stages, bool) or not isinstance(self.explore_stages, int)
                or not 1 <= self.explore_stages <= stages):
            raise ConfigError(f"explore_stages must be an integer from 1 to the number of stages ({stages}), or "
                              f"None for all of them; got {self.explore_stages!r}")
        if self.explore > 1:
            check_n_starts(self.explore * self.n_starts, "explore × n_starts")
        if self.record_every is not None and self.record_every < 1:
            raise ConfigError("record_every must be >= 1 or None")

    @property
    def stages(self) -> tuple[Stage, ...]:
        """All stages, in order."""
        return (self.as_stage(), *self.then)

    def with_stages(self, stages) -> LatentSGDConfig:
        """These run settings with another schedule: ``stages[0]`` first, the rest as ``then``."""
        if not stages:
            raise ConfigError("with_stages needs at least one Stage")
        first, *later = stages
        return replace(self, **{f.name: getattr(first, f.name) for f in fields(Stage)}, then=tuple(later))

    def with_epochs(self, epochs: int) -> LatentSGDConfig:
        """This schedule with ``epochs`` in every stage, the portfolio's included (for quick checks)."""
        return replace(self, epochs=epochs, then=tuple(replace(stage, epochs=epochs) for stage in self.then),
                       portfolio=tuple((share, member.with_epochs(epochs)) for share, member in self.portfolio))

    @classmethod
    def reference_linear(cls, **overrides) -> LatentSGDConfig:
        """The reference linear (straight-ray) schedule: 120 epochs × 25 steps."""
        return replace(cls(), **overrides)

    @classmethod
    def reference_nonlinear(cls, **overrides) -> LatentSGDConfig:
        """The reference nonlinear (eikonal) schedule: 30 epochs, ℓ 0.1 ×0.8 every 5, λ ×0.99."""
        return replace(cls(step_size=0.1, step_decay=0.8, decay_every=5, epochs=30, reg_decay=0.99), **overrides)

    @classmethod
    def plain_gd(cls, n_data: int = 625, steps: int = 3000, **overrides) -> LatentSGDConfig:
        """Baseline: full-batch GD, fixed step 1e-2, no regularization, misfit scaled to 25 data."""
        base = cls(batch_size=None, step_decay=1.0, epochs=steps, regularization="none", reg_weight=0.0,
                   misfit_scale=25 / n_data)
        return replace(base, **overrides)

    @classmethod
    def adam(cls, n_data: int = 625, steps: int = 3000, **overrides) -> LatentSGDConfig:
        """Baseline: full-batch Adam (lr 1e-2 fixed), no regularization."""
        return cls.plain_gd(n_data, steps, optimizer="adam", **overrides)

    @classmethod
    def default_linear(cls, **overrides) -> LatentSGDConfig:
        """geoinv's default for linear operators: :meth:`gauss_newton_continuation`.

        On straight-ray data (5 decoder-sample truths × 20 starts, σ = 0.25 ns)
        it accepted nearly every start and reached the noise on every truth,
        where :meth:`sgd_linear` (the default before 0.7) left one truth at 3 σ.
        """
        return cls.gauss_newton_continuation(**overrides)

    @classmethod
    def sgd_linear(cls, **overrides) -> LatentSGDConfig:
        """The default for linear operators before 0.7: the reference schedule, then a
        regularization-free full-batch Adam polish (lr 1e-3, 1000 steps)."""
        return cls.reference_linear(**{"then": (Stage.polish(1000),), **overrides})

    @classmethod
    def gauss_newton_continuation(cls, temperatures=(32.0, 16.0, 8.0, 4.0, 2.0), iterations: int = 4,
                                  explore: int = 5, **settings) -> LatentSGDConfig:
        """Gauss-Newton on a cooling decoder from many draws; the best are kept.

        Each draw runs Gauss-Newton iterations (χ² + the latent prior's ‖z‖²,
        :meth:`Stage.gauss_newton`) on the decoder at each temperature T
        (``sigmoid(logits / T)``: at high T a nearly linear map whose misfit
        has one wide basin; its minimiser is followed as T falls, a homotopy),
        then 10 at T = 1, each start stopping at the noise. Reaching the true
        basin from a draw is likely, not certain (20–75 % of draws per truth
        on straight-ray data), so ``explore × n_starts`` draws run the whole
        schedule and the ``n_starts`` with the lowest misfit are kept
        (``explore_stages=None``).

        Parameters
        ----------
        temperatures : sequence of float
            Decoder temperatures (> 1) of the stages before T = 1, hottest first.
        iterations : int
            Gauss-Newton iterations per temperature.
        explore : int
            Draws per kept start.
        **settings
            Run settings (``n_starts``, ``seed``, ``progress``, ...); the
            stages are this schedule's.

        Notes
        -----
        Each iteration costs one Jacobian per start (``latent_dim`` tangents
        through the decoder and a sparse product): about 50 ms per start on
        the reference grid on one CPU core, 1.5 s per draw in all.
        """
        if not temperatures or any(t <= 1 for t in temperatures):
            raise ConfigError(f"temperatures must be a non-empty sequence of values > 1, got {temperatures!r}")
        stages = [Stage.gauss_newton(iterations, temperature=float(t)) for t in temperatures]
        stages.append(Stage.gauss_newton(10))
        return cls(**{"explore": explore, "explore_stages": None, **settings}).with_stages(stages)

    @classmethod
    def default_nonlinear(cls, **overrides) -> LatentSGDConfig:
        """geoinv's default for nonlinear operators: find the basin cheaply, keep the best, converge exactly.

        1. The reference linear schedule on the forward linearised at each start
           every 10 epochs with the straight-ray kernel and the exact times as
           offset (``relinearize=10, kernel='straight-ray'``: a model-error-
           corrected straight-ray search, one sparse product per step);
        2. a regularization-free Adam polish on the exact forward (6 epochs of
           one source per step);
        3. Gauss-Newton on the exact Jacobian (:meth:`Stage.gauss_newton`):
           5 iterations on the decoder at temperature 2 (wider basins), then
           10 at temperature 1, each start stopping at the noise.

        Stages 1–2 run from 2 × ``n_starts`` draws and only the best half goes
        on to Gauss-Newton (``explore=2, explore_stages=2``). On eikonal data
        (5 decoder-sample truths × 10 starts, σ = 0.25 ns) it accepted 25 of
        50 starts (14 without the selection, 22 with 3 × draws) and reached
        the noise on 4 truths where :meth:`source_nonlinear` (the default
        before 0.6) accepted 0 of 25; 35 s per kept start on one core.
        """
        then = (Stage.polish(6, "source"), Stage.gauss_newton(5, temperature=2.0), Stage.gauss_newton(10))
        return cls.reference_linear(**{"relinearize": 10, "kernel": "straight-ray", "then": then, "explore": 2,
                                       "explore_stages": 2, **overrides})

    @classmethod
    def source_nonlinear(cls, **overrides) -> LatentSGDConfig:
        """The default for nonlinear operators before 0.6: the reference nonlinear schedule on one
        source per step, then a regularization-free Adam polish (lr 1e-3, 12 epochs of one source per step)."""
        return cls.reference_nonlinear(**{"minibatch": "source", "then": (Stage.polish(12, "source"),), **overrides})

    @classmethod
    def for_operator(cls, operator, *, n_starts: int = 20, seed: int = 0, progress: bool = False,
                     epochs: int | None = None) -> LatentSGDConfig:
        """geoinv's default schedule for a forward operator, chosen by ``operator.linear``.

        :meth:`default_linear` (Gauss-Newton on a cooling decoder from many
        prior draws, the best kept) or :meth:`default_nonlinear` (the reference
        schedule on the relinearised forward and an exact polish on one source
        per step from 2 × ``n_starts`` draws, then Gauss-Newton on the exact
        Jacobian for the best half); ``epochs`` (if given) in every stage.
        """
        overrides = {"n_starts": n_starts, "seed": seed, "progress": progress}
        config = cls.default_linear(**overrides) if operator.linear else cls.default_nonlinear(**overrides)
        return config if epochs is None else config.with_epochs(epochs)

    @classmethod
    def _presets(cls) -> dict:
        return {"reference-linear": cls.reference_linear, "reference-nonlinear": cls.reference_nonlinear,
                "default-linear": cls.default_linear, "default-nonlinear": cls.default_nonlinear,
                "source-nonlinear": cls.source_nonlinear, "sgd-linear": cls.sgd_linear,
                "gauss-newton-continuation": cls.gauss_newton_continuation,
                "plain-gd": cls.plain_gd, "adam": cls.adam}

    @classmethod
    def preset_names(cls) -> list[str]:
        """Names accepted by :meth:`named`."""
        return sorted(cls._presets())

    @classmethod
    def named(cls, name: str, **overrides) -> LatentSGDConfig:
        """Build one of 'reference-linear', 'reference-nonlinear', 'plain-gd', 'adam' by name."""
        factories = cls._presets()
        if name not in factories:
            raise ConfigError(f"unknown latent-sgd preset {name!r}; choose from {sorted(factories)}")
        return factories[name](**overrides)


def _check_portfolio(portfolio) -> tuple:
    """``portfolio`` as a tuple of (share, LatentSGDConfig), members given as dicts built; else ConfigError."""
    members = []
    for entry in portfolio:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            raise ConfigError(f"portfolio entries must be (share, LatentSGDConfig) pairs, got {entry!r}")
        share, member = entry
        member = LatentSGDConfig(**member) if isinstance(member, dict) else member
        if not isinstance(member, LatentSGDConfig) or member.portfolio:
            raise ConfigError("a portfolio member must be a LatentSGDConfig without a portfolio of its own")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < math.inf:
            raise ConfigError(f"a portfolio share (draws per kept start) must be finite and > 0, got {share!r}")
        members.append((float(share), member))
    return tuple(members)


class _MinibatchSchedule:
    """Yields the data indices of each step, epoch by epoch, from a seeded generator."""

    def __init__(self, problem: InverseProblem, config: Stage, generator: torch.Generator):
        self.n_data = problem.n_data
        self.generator = generator
        self.config = config
        if config.minibatch == "source":
            if problem.data_groups is None:
                raise ConfigError("minibatch='source' needs a problem with data_groups (tomography has them)")
            self.groups = problem.data_groups
        self.batch_size = None if config.batch_size is None else min(config.batch_size, self.n_data)

    @property
    def steps_per_epoch(self) -> int:
        if self.config.optimizer == "gauss-newton":
            return 1
        if self.config.minibatch == "source":
            return len(self.groups)
        return 1 if self.batch_size is None else math.ceil(self.n_data / self.batch_size)

    def epoch(self):
        if self.config.minibatch == "source":
            for g in torch.randperm(len(self.groups), generator=self.generator).tolist():
                yield self.groups[g]
        elif self.batch_size is None:
            yield None
        else:
            order = torch.randperm(self.n_data, generator=self.generator).numpy()
            for start in range(0, self.n_data, self.batch_size):
                yield order[start:start + self.batch_size]


class LatentSGD(Solver):
    """Gradient descent in a latent space with step-size and regularization schedules.

    Parameters
    ----------
    config : LatentSGDConfig, optional
        Settings; keyword overrides are applied on top (``LatentSGD(epochs=30)``).

    Notes
    -----
    At step k, on a minibatch ``B_k`` of the data, each start minimises

    .. math:: φ_k(z) = c \\sum_{i∈B_k} w_i (F(g_T(z))_i − y_i)^2 + λ_k R(z),
              \\quad w_i = \\frac{σ_i^{-2}}{\\mathrm{mean}_j σ_j^{-2}}

    with ``λ_k = λ₀·reg_decay^k`` and a step size decayed per epoch; ``g_T`` is
    the decoder at the stage's temperature. The weights make the objective χ²
    (residuals over each datum's error) rescaled so that they average 1: with
    equal errors it is the reference objective and its step sizes apply
    unchanged, and a few noisy data do not inflate the others' weights. Stages run one after the other, each with a fresh optimizer,
    from where the previous one stopped; the step counter (and λ's decay)
    restarts per stage. All starts (and all observed data sets) form one batch
    tensor; the objective is summed over them, which leaves each start's
    gradient its own.

    Examples
    --------
    >>> solver = LatentSGD(LatentSGDConfig.reference_nonlinear(n_starts=10))  # doctest: +SKIP
    >>> solutions = solver.solve(problem)  # doctest: +SKIP
    """

    name = "latent-sgd"
    config_class = LatentSGDConfig

    def solve(self, problem: InverseProblem, observed=None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        """Invert observed data from ``n_starts`` random starts per data set (see :meth:`Solver.solve`).

        With ``explore > 1`` or a ``portfolio`` the run is the matching wrapper
        of :mod:`geoinv.solvers.searches` around plain latent-SGD runs.

        Returns
        -------
        Solutions
            Sorted by normalised misfit; ``history`` holds per-step step sizes,
            regularization weights and minibatch RMSEs, and per-record full-data
            RMSEs of every start.
        """
        wrapper = self.composed_search()
        if wrapper is None:
            return super().solve(problem, observed, n_candidates, generator, initial)
        solutions = wrapper.solve(problem, observed, n_candidates, generator, initial)
        run = {key: solutions.config[key] for key in _RUN_KEYS if key in solutions.config}
        return replace(solutions, config={**self.describe(), **run})

    @classmethod
    def for_operator(cls, operator, *, n_starts: int = 20, seed: int = 0, progress: bool = False,
                     epochs: int | None = None, preset: str | None = None) -> LatentSGD:
        """Latent SGD with :meth:`LatentSGDConfig.for_operator`'s schedule, or the named ``preset``."""
        if preset is None:
            return cls(LatentSGDConfig.for_operator(operator, n_starts=n_starts, seed=seed, progress=progress,
                                                    epochs=epochs))
        config = LatentSGDConfig.named(preset, n_starts=n_starts, seed=seed, progress=progress)
        return cls(config if epochs is None else config.with_epochs(epochs))

    def composed_search(self) -> Solver | None:
        """The wrapper this config's ``portfolio`` or ``explore`` stands for (None for a plain run)."""
        config = self.config
        if config.portfolio:
            members = [(1.0, LatentSGD(replace(config, portfolio=()), self.callbacks))]
            members += [(share, LatentSGD(replace(member, progress=config.progress), self.callbacks))
                        for share, member in config.portfolio]
            return Portfolio(members, n_starts=config.n_starts, seed=config.seed)
        if config.explore == 1:
            return None
        count = len(config.stages) if config.explore_stages is None else config.explore_stages

        def part(stages) -> LatentSGD:  # a plain run of some of the stages
            return LatentSGD(replace(config, explore=1, explore_stages=1).with_stages(stages), self.callbacks)

        later = config.stages[count:]
        return Explore(part(config.stages[:count]), part(later) if later else None,
                       draws_per_start=config.explore, n_starts=config.n_starts, seed=config.seed)

    def search(self, problem: InverseProblem, target: torch.Tensor, starts: torch.Tensor,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """All stages of the schedule, every start and data set as one batch."""
        config = self.config
        n_surveys, n_starts = starts.shape[:2]
        latent = starts.reshape(-1, problem.n_parameters).clone().to(problem.device)
        rows = target.to(latent.device).repeat_interleave(n_starts, dim=0)  # (S·R, n_data)
        weights = self._datum_weights(problem, latent.device)
        schedules = [_MinibatchSchedule(problem, stage, generator) for stage in config.stages]
        total_steps = sum(stage.epochs * schedule.steps_per_epoch for stage, schedule in zip(config.stages, schedules))
        history = {"step": [], "data_rmse": [], "step_size": [], "reg_weight": [], "batch_rmse": [],
                   "stage": [], "temperature": []}
        shape = (n_surveys, n_starts)
        self._record(problem, latent, rows, history, 0, shape)
        with self.monitor("latent SGD", total_steps) as monitor:
            for index, (stage, schedule) in enumerate(zip(config.stages, schedules)):
                if self._run_stage(index, stage, schedule, problem.tempered(stage.temperature), problem, latent,
                                   rows, weights, history, monitor, shape):
                    break
        if history["step"][-1] != len(history["step_size"]):  # stopped early between records
            self._record(problem, latent, rows, history, len(history["step_size"]), shape)
        history = {key: np.asarray(value) for key, value in history.items()}
        return Search(latent.detach().reshape(n_surveys, n_starts, -1), history)

    def _run_stage(self, index, stage, schedule, stage_problem, problem, latent, rows, weights, history,
                   monitor, shape) -> bool:
        """Run one stage; returns True if a callback asked to stop."""
        if stage.optimizer == "gauss-newton":
            return self._run_gauss_newton(index, stage, stage_problem, problem, latent, rows, history, monitor,
                                          shape)
        latent.requires_grad_(True)
        optimizer = (torch.optim.Adam([latent], lr=stage.step_size) if stage.optimizer == "adam"
                     else torch.optim.SGD([latent], lr=stage.step_size))
        record_every = self.config.record_every or schedule.steps_per_epoch * max(stage.relinearize, 1)
        steps = stage.epochs * schedule.steps_per_epoch
        step = 0
        active = stage_problem
        for epoch in range(stage.epochs):
            if stage.relinearize and epoch % stage.relinearize == 0:
                active = stage_problem.linearized(latent.detach(), stage.kernel)
            step_size = stage.step_size * stage.step_decay ** (epoch // stage.decay_every)
            for group in optimizer.param_groups:
                group["lr"] = step_size
            for data_index in schedule.epoch():
                reg_weight = stage.reg_weight * stage.reg_decay ** step
                batch_rmse = self._step(stage, active, optimizer, latent, rows, weights, data_index,
                                        reg_weight)
                step += 1
                self._check_finite(latent, batch_rmse, len(history["step_size"]) + 1, index, step_size)
                for key, value in (("batch_rmse", batch_rmse.reshape(shape).cpu().numpy()),
                                   ("step_size", step_size), ("reg_weight", reg_weight), ("stage", index),
                                   ("temperature", stage.temperature)):
                    history[key].append(value)
                metrics = {"batch_rmse": float(batch_rmse.min())}
                if step % record_every == 0 or step == steps:
                    metrics["best_rmse"] = self._record(problem, latent, rows, history, len(history["step_size"]),
                                                        shape)
                if monitor.step(**metrics):
                    return True
        return False

    def _run_gauss_newton(self, index, stage, stage_problem, problem, latent, rows, history, monitor,
                          shape) -> bool:
        """Run a Gauss-Newton stage (one iteration per epoch); returns True if a callback asked to stop."""
        iterate = GaussNewtonStep(stage_problem, rows, stage.regularization, stage.reg_weight, stage.step_size,
                                  stage.max_step)
        for iteration in range(stage.epochs):
            rmse = iterate(latent)
            self._check_finite(latent, rmse, len(history["step_size"]) + 1, index, iterate.damping)
            for key, value in (("batch_rmse", rmse.reshape(shape).cpu().numpy()), ("step_size", iterate.damping),
                               ("reg_weight", stage.reg_weight), ("stage", index),
                               ("temperature", stage.temperature)):
                history[key].append(value)
            if stage.temperature == 1:  # the iteration's RMSE is the full-data record
                history["step"].append(len(history["step_size"]))
                history["data_rmse"].append(rmse.reshape(shape).cpu().numpy())
                best = float(rmse.min())
            else:
                best = self._record(problem, latent, rows, history, len(history["step_size"]), shape)
            if monitor.step(batch_rmse=float(rmse.min()), best_rmse=best):
                return True
            if iterate.finished:  # every start fits the noise or stalled: the bar ends here
                monitor.shorten(stage.epochs - iteration - 1)
                break
        return False

    @staticmethod
    def _datum_weights(problem: InverseProblem, device) -> torch.Tensor | None:
        """``√w_i`` per datum, ``w_i = σ_i⁻² / mean(σ⁻²)`` (None when errors are equal or unknown)."""
        if problem.noise_std is None:
            return None
        noise = problem.noise_std.to(device)
        if torch.all(noise == noise[0]):
            return None
        precision = noise.pow(-2)
        return (precision / precision.mean()).sqrt()

    def _step(self, stage, problem, optimizer, latent, rows, weights, data_index, reg_weight) -> torch.Tensor:
        """One descent step on one minibatch; returns the minibatch RMSE of every start."""
        predicted = problem.forward(latent, data_index)
        index = None if data_index is None else torch.as_tensor(data_index, device=rows.device)
        observed = rows if index is None else rows[:, index]
        residual = predicted - observed
        weighted = residual if weights is None else residual * (weights if index is None else weights[index])
        objective = (stage.misfit_scale * weighted.pow(2).sum(dim=1)
                     + reg_weight * problem.regularization(latent, stage.regularization))
        optimizer.zero_grad(set_to_none=True)
        objective.sum().backward()
        optimizer.step()
        return residual.detach().pow(2).mean(1).sqrt()

    @staticmethod
    def _check_finite(latent: torch.Tensor, batch_rmse: torch.Tensor, step: int, stage: int,
                      step_size: float) -> None:
        """Stop at the first step that yields NaN/inf: every later step would only spread it."""
        if not torch.isfinite(latent).all():
            raise SolverError(f"latent SGD diverged at step {step} (stage {stage}): latent vectors became NaN/inf "
                              f"with step_size {step_size:g}; lower step_size (or misfit_scale)")
        bad = ~torch.isfinite(batch_rmse)
        if bad.any():
            raise SolverError(f"latent SGD at step {step} (stage {stage}): the misfit of {int(bad.sum())} of "
                              f"{bad.numel()} starts is NaN/inf, so the forward model or the decoder returned "
                              f"NaN/inf where the search went (step_size {step_size:g}); lower step_size, or "
                              "check the problem's forward on these parameters")

    @staticmethod
    @torch.no_grad()
    def _record(problem, latent, rows, history, step, shape) -> float:
        """Full-data RMSE of every start into ``history``; returns the best."""
        rmse = (problem.forward(latent) - rows).pow(2).mean(dim=1).sqrt()
        history["step"].append(step)
        history["data_rmse"].append(rmse.reshape(shape).cpu().numpy())
        return float(rmse.min())
