"""Latent MCMC: posterior samples of the latent vector by replica-exchange, preconditioned MALA."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .._typing import TensorLike
from .._validation import require_count
from ..errors import ConfigError
from ..problem import InverseProblem
from ..sampling.engine import (
    HMC_TARGET_ACCEPTANCE,
    MALA_TARGET_ACCEPTANCE,
    PRECONDITIONERS,
    RANDOM_WALK_TARGET_ACCEPTANCE,
    approach,
    laplace_starts,
    run_replica_exchange,
    temperature_ladder,
)
from ..sampling.target import LatentPosterior
from .base import Search, Solutions, Solver, check_n_starts

if TYPE_CHECKING:
    from ..forward.base import ForwardOperator

__all__ = ["LatentMCMC", "LatentMCMCConfig", "linearized_surrogate"]


@dataclass
class LatentMCMCConfig:
    """Settings of :class:`LatentMCMC`.

    Attributes
    ----------
    n_chains : int
        Chains per data set and temperature (≥ 2: R-hat compares chains).
    n_draws : int
        Recorded steps per chain after warm-up (each is one batched forward and backward pass).
    n_warmup : int
        Adaptive steps before them (step size and preconditioner; not recorded).
    n_temperatures : int
        Replicas per chain on the ladder β_k = T_max^(−k/(K−1)); 1 switches replica exchange off.
    max_temperature : float
        T_max: the hottest replica sees the likelihood to the power 1/T_max.
    approach_steps : int
        Adam steps on −log π_β from the dispersed starts before warm-up (0: none).
    n_samples : int
        Posterior draws returned as candidates per data set (thinned evenly from
        ``n_chains × n_draws``); ``solve(n_candidates=...)`` overrides it.
    target_acceptance : float, optional
        Acceptance the warm-up's step-size adaptation aims at; None: the optimum for smooth targets,
        0.574 for MALA and 0.651 for HMC (``leapfrog_steps`` > 1).
    leapfrog_steps : int
        1: every step is a Langevin (MALA) move. More: a Hamiltonian (HMC) move of that many leapfrog
        steps, each one forward and backward pass: a step costs ``leapfrog_steps`` times as much and
        travels about as many times as far, without a random walk's back-tracking, which pays where
        MALA's draws stay correlated for hundreds of steps (curved, eikonal posteriors).
    random_walk : bool
        Every step a preconditioned random-walk Metropolis move z' = z + ε L ξ: forwards only, no
        gradient, so a step costs less than half a Langevin step on the eikonal and a forward
        without a derivative can be sampled (approach_steps=0 then, since the approach is by
        gradient). Its optimal acceptance is 0.234. Pairs best with ``preconditioner='covariance'``,
        which needs no Jacobian either.
    reset_outliers : bool
        At the end of each warm-up window, move every chain whose mean log-posterior over the window
        lies below Q1 − 2·IQR of its rung's chains to the state of the rung's best chain (DREAM's
        outlier rule, Vrugt et al. 2009). A chain stuck in a region of little mass then no longer holds
        R-hat above its limit; the recorded steps stay an exact chain. How many chains moved is in
        ``history["reset_chains"]``.
    initial_step : float
        Step size ε at β = 1 before adaptation.
    preconditioner : {'gauss-newton', 'pooled-gauss-newton', 'widened-gauss-newton', 'covariance', 'local'}
        Each chain's Gauss-Newton posterior covariance (β JᵀΣ_d⁻¹J + I)⁻¹ at
        the end of each warm-up window (3 Jacobians per chain); ``'pooled-gauss-newton'``,
        the inverse of the mean of the chains' Gauss-Newton Hessians there, one Σ for
        every chain of a temperature (for posteriors whose curvature changes from
        point to point, as the eikonal's); ``'widened-gauss-newton'``, that Σ widened to
        the window's draws' covariance along the directions where the draws spread more
        (:func:`geoinv.sampling.widened_factor`; for posteriors broader than their local
        curvature along a few directions); the pooled
        covariance of a window's draws; or ``'local'``, that covariance at every
        point a chain visits and proposes (simplified manifold MALA: one Jacobian
        per chain and step, for posteriors whose curvature changes within a
        step; see :func:`geoinv.sampling.manifold_mala_step`).
    delayed_acceptance : bool
        After warm-up, screen every proposal with a cheap surrogate fixed per
        chain (default: the forward linearised at the chain's state, exact
        there) and run the exact forward, without its adjoint, only for those
        that pass; the chain stays exact (Christen & Fox 2005). For expensive
        forwards (the eikonal).
    surrogate_kernel : {'operator', 'straight-ray'}
        The default surrogate's kernel (:func:`linearized_surrogate`).
    surrogate_steps : int
        With delayed acceptance: MALA moves on the surrogate per exact accept (a surrogate
        transition, still exact; :func:`geoinv.sampling.delayed.delayed_mala_step`). More steps carry
        a proposal further for one exact forward, as far as the surrogate stays close to the target.
    chunk : int
        Chains simulated per forward call.
    starts : {'candidates', 'laplace'}
        With a ``starter`` (what ``for_operator`` and the CLI use): one of its best
        candidates per chain, or every chain around its best candidate, dispersed by
        ``laplace_spread`` × that mode's Laplace covariance
        (:func:`geoinv.sampling.laplace_starts`). ``'laplace'`` samples the best basin
        (R-hat then checks mixing within it, not other basins): on nonlinear data chains
        started in different basins do not cross within a CPU budget. Ignored when
        ``solve`` is given ``initial``.
    laplace_spread : float
        Over-dispersion of ``'laplace'`` starts (1: the Laplace approximation itself).
    independence : float
        > 0: after every recorded MALA step, an independence move from a fixed Gaussian, the
        Laplace approximation at the mean of the last warm-up window's draws with its standard
        deviations times ``independence``. Exact, one more forward and backward pass per step;
        on a basin close to Gaussian it decorrelates the draws in a few accepted moves where
        Langevin steps random-walk (:func:`geoinv.sampling.moves.independence_step`). In 20 latent
        dimensions a wide proposal is rarely accepted (1.5 on eikonal data: 0.1–1.5 %, s36);
        keep it near 1. 0: off.
    differential_evolution : int
        k > 0: after every k-th step, a differential-evolution move (DREAM(ZS)'s proposal, ter
        Braak & Vrugt 2008): each chain moves along the difference of two states that the
        chains visited in warm-up, a fifth of the moves by the whole difference, which can carry a
        chain to where another chain went. One more forward and backward pass per move; exact
        (the archive is fixed after warm-up). With MALA or HMC moves. 0: off.
    line_directions : int
        m > 0: after every step, a random-walk move along one of the m directions in which the
        warm-up's draws spread most beyond the Laplace approximation, in turn, each scaled to its
        width (:func:`geoinv.sampling.broad_directions`, :func:`geoinv.sampling.line_step`). For
        posteriors far wider along a few directions than their local curvature (eikonal data: 5 ×
        in standard deviation, s48), where Langevin steps cross the basin in thousands of steps.
        One more forward and backward pass per step; exact (directions and scales are fixed after
        warm-up). With MALA or HMC moves and the 'gauss-newton' or 'covariance' preconditioner. 0: off.
    seed : int
        Seed of the starts, proposals and accept draws.
    progress : bool
        Progress bar with acceptance and swap rates.
    """

    n_chains: int = 4
    n_draws: int = 1000
    n_warmup: int = 1000
    n_temperatures: int = 4
    max_temperature: float = 3.0
    approach_steps: int = 100
    n_samples: int = 1000
    target_acceptance: float | None = None
    leapfrog_steps: int = 1
    random_walk: bool = False
    reset_outliers: bool = False
    initial_step: float = 0.1
    preconditioner: str = "gauss-newton"
    delayed_acceptance: bool = False
    surrogate_kernel: str = "operator"
    surrogate_steps: int = 1
    chunk: int = 256
    starts: str = "candidates"
    laplace_spread: float = 1.5
    independence: float = 0.0
    differential_evolution: int = 0
    line_directions: int = 0
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for name, low in (("n_chains", 2), ("n_draws", 1), ("n_warmup", 0), ("n_temperatures", 1),
                          ("approach_steps", 0), ("n_samples", 1), ("chunk", 1), ("surrogate_steps", 1),
                          ("leapfrog_steps", 1), ("differential_evolution", 0), ("line_directions", 0)):
            object.__setattr__(self, name, require_count(getattr(self, name), name, low, error=ConfigError))
        check_n_starts(self.n_samples, "n_samples")
        if not (math.isfinite(self.max_temperature) and self.max_temperature >= 1):
            raise ConfigError(f"max_temperature must be finite and >= 1, got {self.max_temperature!r}")
        if self.target_acceptance is not None and not 0 < self.target_acceptance < 1:
            raise ConfigError(f"target_acceptance must lie in (0, 1) (or None: the optimum of the move), "
                              f"got {self.target_acceptance!r}")
        if self.leapfrog_steps > 1 and self.delayed_acceptance:
            raise ConfigError("delayed_acceptance screens Langevin proposals; it does not combine with "
                              f"leapfrog_steps={self.leapfrog_steps}: use one or the other")
        if self.surrogate_steps > 1 and not self.delayed_acceptance:
            raise ConfigError(f"surrogate_steps={self.surrogate_steps} are moves on delayed acceptance's surrogate; "
                              "set delayed_acceptance=True as well (or surrogate_steps=1)")
        if self.surrogate_kernel not in ("operator", "straight-ray"):
            raise ConfigError(f"surrogate_kernel must be 'operator' or 'straight-ray', got {self.surrogate_kernel!r}")
        if self.preconditioner not in PRECONDITIONERS:
            raise ConfigError(f"preconditioner must be one of {PRECONDITIONERS}, got {self.preconditioner!r}")
        if not (math.isfinite(self.initial_step) and self.initial_step > 0):
            raise ConfigError(f"initial_step must be finite and > 0, got {self.initial_step!r}")
        if self.starts not in ("candidates", "laplace"):
            raise ConfigError(f"starts must be 'candidates' or 'laplace', got {self.starts!r}")
        if not (math.isfinite(self.laplace_spread) and self.laplace_spread >= 0):
            raise ConfigError(f"laplace_spread must be finite and >= 0, got {self.laplace_spread!r}")
        if isinstance(self.independence, bool) or not (math.isfinite(self.independence) and self.independence >= 0):
            raise ConfigError(f"independence must be finite and >= 0 (a factor on the Laplace standard deviations; "
                              f"0 switches the move off), got {self.independence!r}")
        for name in ("random_walk", "reset_outliers"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.random_walk and (self.delayed_acceptance or self.leapfrog_steps > 1 or self.independence > 0
                                 or self.preconditioner == "local"):
            raise ConfigError("random_walk moves take no gradient: they do not combine with delayed_acceptance, "
                              "leapfrog_steps > 1, independence or preconditioner='local'")
        if self.differential_evolution and (self.delayed_acceptance or self.random_walk
                                            or self.preconditioner == "local"):
            raise ConfigError("differential_evolution moves join MALA or HMC moves: they do not combine with "
                              "delayed_acceptance, random_walk or preconditioner='local'")
        if self.line_directions and (self.random_walk or self.preconditioner == "local"):
            raise ConfigError("line_directions moves join MALA or HMC moves: they do not combine with random_walk "
                              "or preconditioner='local'")
        if self.preconditioner == "local" and (self.delayed_acceptance or self.leapfrog_steps > 1
                                               or self.independence > 0):
            raise ConfigError("preconditioner='local' moves by manifold MALA alone: it does not combine with "
                              "delayed_acceptance, leapfrog_steps > 1 or independence")

    @property
    def acceptance_goal(self) -> float:
        """``target_acceptance``, or the optimum of the move when it is None."""
        if self.target_acceptance is not None:
            return self.target_acceptance
        if self.random_walk:
            return RANDOM_WALK_TARGET_ACCEPTANCE
        return HMC_TARGET_ACCEPTANCE if self.leapfrog_steps > 1 else MALA_TARGET_ACCEPTANCE


class LatentMCMC(Solver):
    """Posterior sampling in a prior's latent space: replica-exchange, preconditioned MALA or HMC.

    Targets log π(z | d) = log p(z) − ½ Σᵢ ((F(z)ᵢ − dᵢ)/σᵢ)² for every data set, with
    ``n_chains`` chains on each of ``n_temperatures`` rungs of a likelihood-tempering
    ladder; all chains of all rungs and data sets move in one batched forward and
    backward call per step. Each step is a Metropolis-adjusted Langevin move
    (z' = z + (ε²/2) Σ ∇log π + ε L ξ), or with ``leapfrog_steps`` > 1 a Hamiltonian move
    of that many leapfrog steps (mass matrix Σ⁻¹), followed by swaps between neighbouring rungs
    (even and odd pairs in turn), which carry states between basins. Warm-up adapts
    ε per rung towards ``target_acceptance`` and estimates the preconditioner Σ from
    the chains' draws; the recorded steps then run a fixed, exact chain.

    The candidates are ``n_samples`` draws of the β = 1 chains (sorted by misfit,
    like every solver's); ``Solutions.posterior()`` then gives Monte Carlo
    posterior maps from all of them, and :func:`geoinv.sampling.mixing` the
    split R-hat and bulk/tail ESS (the chains are in ``history``).

    Notes
    -----
    Starts are prior draws (dispersed, as R-hat needs), moved by ``approach_steps``
    Adam steps towards their rung's posterior; ``initial=`` gives them instead
    (``n_chains`` of them: one per chain, shared by the rungs; otherwise up to
    ``n_temperatures·n_chains``, taken in turn by the chains, rung after rung).
    Cost: ``n_temperatures × n_chains × (approach_steps + leapfrog_steps × (n_warmup + n_draws))``
    forward and backward evaluations per data set. Needs a noise level and a
    prior with a log-density (``problem.prior``).
    """

    name = "latent-mcmc"
    config_class = LatentMCMCConfig
    samples = True

    def __init__(self, config: Any = None, callbacks: Sequence[Any] = (), *,
                 starter: Solver | None = None,
                 surrogate: Callable[[InverseProblem, torch.Tensor], InverseProblem] | None = None,
                 **overrides: Any) -> None:
        super().__init__(config, callbacks, **overrides)
        if starter is not None and not isinstance(starter, Solver):
            raise ConfigError(f"starter must be a geoinv Solver (e.g. LatentSGD), got {type(starter).__name__}")
        #: a solver whose best candidates start the chains when no ``initial`` is given (None: prior draws)
        self.starter = starter
        #: ``surrogate(problem, anchors)``: the cheap problem of delayed acceptance, row b of a batch simulated
        #: for the chain anchored at ``anchors[b]`` (default: :func:`linearized_surrogate`)
        self.surrogate = surrogate

    @classmethod
    def for_operator(cls, operator: ForwardOperator, *, n_starts: int = 20, seed: int = 0, progress: bool = False,
                     epochs: int | None = None, preset: str | None = None) -> Solver:
        """The sampler with chains started from the best of ``n_starts`` runs of the forward's default optimiser.

        ``preset`` and ``epochs`` go to that optimiser (latent SGD).
        """
        from .latent_sgd import LatentSGD

        sampler = cls(seed=seed, progress=progress)
        starts = max(n_starts, sampler.config.n_chains)
        sampler.starter = LatentSGD.for_operator(operator, n_starts=starts, seed=seed, progress=progress,
                                                 epochs=epochs, preset=preset)
        return sampler

    def solve(self, problem: InverseProblem, observed: TensorLike | None = None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        """Sample the posterior of each data set (see :meth:`Solver.solve`).

        With a :attr:`starter` and no ``initial``, the starter runs first and its
        ``n_chains`` best candidates per data set start the chains (every
        temperature from the same point), or, with ``starts='laplace'``, its best
        candidate dispersed by its Laplace covariance; its wall time and acceptance are in
        ``config['starter']`` and included in ``wall_time``.
        """
        if self.starter is None or initial is not None:
            return super().solve(problem, observed, n_candidates, generator, initial)
        generator = generator or torch.Generator().manual_seed(self.config.seed)
        found = self.starter.solve(problem, observed, generator=generator)
        if found.n_candidates < self.config.n_chains:
            raise ConfigError(f"the starter returned {found.n_candidates} candidates per data set, fewer than "
                              f"n_chains = {self.config.n_chains}; ask it for more starts")
        if self.config.starts == "laplace":
            initial = torch.stack([laplace_starts(problem, best, self.config.n_chains, self.config.laplace_spread,
                                                  generator) for best in found.parameters[:, 0]])
        else:
            initial = found.parameters[:, :self.config.n_chains]
        solutions = super().solve(problem, observed, n_candidates, generator, initial)
        solutions.config["starter"] = {"solver": found.config.get("solver"), "wall_time": found.wall_time,
                                       "accepted": found.accepted.sum(dim=1).tolist(),
                                       "n_candidates": found.n_candidates}
        solutions.wall_time += found.wall_time
        return solutions

    def check_problem(self, problem: InverseProblem) -> None:
        LatentPosterior(problem, torch.zeros(1, problem.n_data))  # raises when noise or prior is missing

    def default_starts(self, n_candidates: int | None) -> int:
        return self.config.n_chains * self.config.n_temperatures

    def search(self, problem: InverseProblem, target: torch.Tensor, starts: torch.Tensor,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """Warm up and run the chains from ``starts``; return thinned β = 1 draws."""
        config = self.config
        start = self._replicas(starts).to(problem.device)
        beta = temperature_ladder(config.n_temperatures, config.max_temperature).to(problem.device)
        n_samples = check_n_starts(n_candidates or config.n_samples, "n_candidates")
        total = config.n_chains * config.n_draws
        if n_samples > total:
            raise ConfigError(f"{n_samples} samples asked for, but the chains record only n_chains × n_draws = "
                              f"{total} draws; raise n_draws or ask for fewer samples")
        thin = total // n_samples
        posterior = LatentPosterior(problem, target, config.chunk)
        if config.approach_steps:
            start = approach(posterior, start, beta, config.approach_steps)
        with self.monitor("latent MCMC", config.n_warmup + config.n_draws) as monitor:
            record = run_replica_exchange(posterior, start, beta, config.n_warmup, config.n_draws, thin, generator,
                                          monitor, config.acceptance_goal, config.initial_step,
                                          preconditioner=config.preconditioner,
                                          surrogate=self._screen(problem, target),
                                          surrogate_steps=config.surrogate_steps,
                                          independence=config.independence,
                                          leapfrog_steps=config.leapfrog_steps,
                                          random_walk=config.random_walk,
                                          reset_outliers=config.reset_outliers,
                                          differential_evolution=config.differential_evolution,
                                          line_directions=config.line_directions)
        kept = _evenly(record.kept_latent.shape[1], n_samples)
        history = {"chain_latent": record.latent, "chain_log_likelihood": record.log_likelihood,
                   "chain_log_posterior": record.log_posterior, "chain_acceptance": record.acceptance,
                   "warmup_log_likelihood": record.warmup_log_likelihood, "swap_rate": record.swap_rate,
                   "step_size": record.step_size, "beta": beta.cpu().numpy(), "thin": thin,
                   "evaluations": record.evaluations}
        if record.screen_rate is not None:
            history["screen_rate"] = record.screen_rate
        if record.independence_rate is not None:
            history["independence_rate"] = record.independence_rate
        if record.reset_chains is not None:
            history["reset_chains"] = record.reset_chains
        if record.evolution_rate is not None:
            history["evolution_rate"] = record.evolution_rate
        if record.line_rate is not None:
            history["line_rate"] = record.line_rate
            history["line_scale"] = record.line_scale
        if record.latent.shape[0] < config.n_draws:
            warnings.warn(f"sampling stopped after {record.latent.shape[0]} of {config.n_draws} draws",
                          RuntimeWarning, stacklevel=3)
        return Search(record.kept_latent[:, kept], history, data=record.kept_data[:, kept],
                      kind="posterior samples")

    def _screen(self, problem: InverseProblem, target: torch.Tensor):
        """The surrogate builder of delayed acceptance (None when it is off)."""
        if not self.config.delayed_acceptance:
            return None
        def build(problem: InverseProblem, anchors: torch.Tensor) -> InverseProblem:
            if self.surrogate is not None:
                return self.surrogate(problem, anchors)
            return linearized_surrogate(problem, anchors, self.config.surrogate_kernel)

        def screen(anchors: torch.Tensor) -> LatentPosterior:
            flat = anchors.reshape(-1, anchors.shape[-1])
            return LatentPosterior(build(problem, flat), target, chunk=flat.shape[0])  # rows stay aligned

        return screen

    def _replicas(self, starts: torch.Tensor) -> torch.Tensor:
        """Starts ``(S, R, n)`` as ``(S, K, C, n)``.

        R = C: chain c of every rung starts at start c; otherwise the K·C chains
        (rung after rung) take the starts in turn, cycling when R < K·C.
        """
        n_temperatures, n_chains = self.config.n_temperatures, self.config.n_chains
        n_surveys, count, n_parameters = starts.shape
        if count == n_chains:
            return starts[:, None].expand(-1, n_temperatures, -1, -1).clone()
        if count > n_temperatures * n_chains:
            raise ConfigError(f"initial holds {count} starts per data set, more than the n_temperatures × n_chains "
                              f"= {n_temperatures * n_chains} chains; pass at most that many (the best first)")
        index = torch.arange(n_temperatures * n_chains) % count
        return starts[:, index].reshape(n_surveys, n_temperatures, n_chains, n_parameters)


def linearized_surrogate(problem: InverseProblem, anchors: torch.Tensor, kernel: str = "operator") -> InverseProblem:
    """``problem`` with its forward linearised at each anchor (exact there): delayed acceptance's default.

    Row b of a batch is simulated as F(z_b) + K_b (s(z) − s(z_b)), one sparse product instead of a
    nonlinear solve (:meth:`~geoinv.LatentTomography.linearized`); ``kernel='operator'`` takes the
    forward's own linearisation at the anchor (the eikonal's ray kernel), ``'straight-ray'`` straight rays.
    """
    from ..latent_tomography import LatentTomography

    if not isinstance(problem, LatentTomography):
        raise ConfigError("delayed acceptance needs a surrogate: the default linearises latent tomography, and "
                          f"{problem.name!r} is not; pass LatentMCMC(surrogate=lambda problem, anchors: cheap_problem)")
    return problem.linearized(anchors, kernel=kernel)


def _evenly(available: int, wanted: int) -> torch.Tensor:
    """``wanted`` indices spread evenly over ``range(available)`` (all chains represented)."""
    if available <= wanted:
        return torch.arange(available)
    return torch.linspace(0, available - 1, wanted).round().long()
