"""Settings of latent-space searches: :class:`Stage` (one stage of a schedule) and
:class:`LatentSGDConfig` (a whole run), with geoinv's named presets.

The engine that runs them is :mod:`geoinv.solvers.latent_sgd`; searches that
wrap runs (exploring, portfolios) are :mod:`geoinv.solvers.searches`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from .._validation import require_count
from ..errors import ConfigError
from ..forward.linearized import KERNELS
from ..prior.base import REGULARIZATIONS
from .base import check_n_starts

if TYPE_CHECKING:
    from ..forward.base import ForwardOperator

__all__ = ["LatentSGDConfig", "Stage"]

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
            (self.batch_size is None or self.batch_size >= 1,
             f"batch_size must be >= 1 or None, got {self.batch_size}"),
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
        object.__setattr__(self, "explore", require_count(self.explore, "explore", error=ConfigError,
                                                          meaning="prior draws per kept start"))
        n_stages = 1 + len(self.then)
        if self.explore_stages is not None and (
                isinstance(self.explore_stages, bool) or not isinstance(self.explore_stages, int)
                or not 1 <= self.explore_stages <= n_stages):
            raise ConfigError(f"explore_stages must be an integer from 1 to the number of stages ({n_stages}), or "
                              f"None for all of them; got {self.explore_stages!r}")
        if self.explore > 1:
            check_n_starts(self.explore * self.n_starts, "explore × n_starts")
        if self.record_every is not None and self.record_every < 1:
            raise ConfigError("record_every must be >= 1 or None")

    @property
    def stages(self) -> tuple[Stage, ...]:
        """All stages, in order."""
        return (self.as_stage(), *self.then)

    def with_stages(self, stages: Sequence[Stage]) -> LatentSGDConfig:
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
    def reference_linear(cls, **overrides: Any) -> LatentSGDConfig:
        """The reference linear (straight-ray) schedule: 120 epochs × 25 steps."""
        return replace(cls(), **overrides)

    @classmethod
    def reference_nonlinear(cls, **overrides: Any) -> LatentSGDConfig:
        """The reference nonlinear (eikonal) schedule: 30 epochs, ℓ 0.1 ×0.8 every 5, λ ×0.99."""
        return replace(cls(step_size=0.1, step_decay=0.8, decay_every=5, epochs=30, reg_decay=0.99), **overrides)

    @classmethod
    def plain_gd(cls, n_data: int = 625, steps: int = 3000, **overrides: Any) -> LatentSGDConfig:
        """Baseline: full-batch GD, fixed step 1e-2, no regularization, misfit scaled to 25 data."""
        base = cls(batch_size=None, step_decay=1.0, epochs=steps, regularization="none", reg_weight=0.0,
                   misfit_scale=25 / n_data)
        return replace(base, **overrides)

    @classmethod
    def adam(cls, n_data: int = 625, steps: int = 3000, **overrides: Any) -> LatentSGDConfig:
        """Baseline: full-batch Adam (lr 1e-2 fixed), no regularization."""
        return cls.plain_gd(n_data, steps, optimizer="adam", **overrides)

    @classmethod
    def default_linear(cls, **overrides: Any) -> LatentSGDConfig:
        """geoinv's default for linear operators: :meth:`gauss_newton_continuation`.

        On straight-ray data (5 decoder-sample truths × 20 starts, σ = 0.25 ns)
        it accepted nearly every start and reached the noise on every truth,
        where :meth:`sgd_linear` (the default before 0.7) left one truth at 3 σ.
        """
        return cls.gauss_newton_continuation(**overrides)

    @classmethod
    def sgd_linear(cls, **overrides: Any) -> LatentSGDConfig:
        """The default for linear operators before 0.7: the reference schedule, then a
        regularization-free full-batch Adam polish (lr 1e-3, 1000 steps)."""
        return cls.reference_linear(**{"then": (Stage.polish(1000),), **overrides})

    @classmethod
    def gauss_newton_continuation(cls, temperatures: Sequence[float] = (32.0, 16.0, 8.0, 4.0, 2.0), iterations: int = 4,
                                  explore: int = 5, **settings: Any) -> LatentSGDConfig:
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
    def default_nonlinear(cls, **overrides: Any) -> LatentSGDConfig:
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
    def proposal_finish(cls, **overrides: Any) -> LatentSGDConfig:
        """The finish that amortized proposals seed: Gauss-Newton, 5 iterations on the decoder at
        temperature 2, then 10 at temperature 1, each start stopping at the noise
        (:class:`~geoinv.solvers.proposals.Proposals`; the default for nonlinear forwards since 0.9)."""
        return cls(**overrides).with_stages([Stage.gauss_newton(5, temperature=2.0), Stage.gauss_newton(10)])

    @classmethod
    def source_nonlinear(cls, **overrides: Any) -> LatentSGDConfig:
        """The default for nonlinear operators before 0.6: the reference nonlinear schedule on one
        source per step, then a regularization-free Adam polish (lr 1e-3, 12 epochs of one source per step)."""
        return cls.reference_nonlinear(**{"minibatch": "source", "then": (Stage.polish(12, "source"),), **overrides})

    @classmethod
    def for_operator(cls, operator: ForwardOperator, *, n_starts: int = 20, seed: int = 0, progress: bool = False,
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
                "gauss-newton-continuation": cls.gauss_newton_continuation, "proposal-finish": cls.proposal_finish,
                "plain-gd": cls.plain_gd, "adam": cls.adam}

    @classmethod
    def preset_names(cls) -> list[str]:
        """Names accepted by :meth:`named`."""
        return sorted(cls._presets())

    @classmethod
    def named(cls, name: str, **overrides: Any) -> LatentSGDConfig:
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
