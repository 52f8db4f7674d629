"""Replica-exchange MALA, HMC or random-walk Metropolis: approach, adaptive warm-up, then a fixed (exact) Markov chain.

Warm-up (Stan's windowed scheme, simplified): the step size ε of every data set and
temperature is tuned towards a target acceptance by Robbins–Monro on log ε; the
preconditioner Σ is re-estimated from the chains' own draws at the end of three
windows. Sampling then runs with ε and Σ frozen, so the draws come from an exact
Metropolis–Hastings chain for every temperature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from .delayed import delayed_mala_step
from .moves import (
    differential_evolution_step,
    hamiltonian_step,
    independence_step,
    line_step,
    mala_step,
    manifold_mala_step,
    random_walk_step,
    swap_step,
)
from .target import ChainState, LatentPosterior

__all__ = [
    "HMC_TARGET_ACCEPTANCE",
    "LINE_TARGET_ACCEPTANCE",
    "MALA_TARGET_ACCEPTANCE",
    "OUTLIER_IQR",
    "PRECONDITIONERS",
    "RANDOM_WALK_TARGET_ACCEPTANCE",
    "ChainRecord",
    "adaptation_windows",
    "approach",
    "broad_directions",
    "gauss_newton_hessian",
    "independence_proposal",
    "laplace_covariance",
    "laplace_starts",
    "outlier_chains",
    "run_replica_exchange",
    "temperature_ladder",
    "widened_factor",
]

#: the acceptance rate that is optimal for MALA (Roberts & Rosenthal 1998), HMC (Beskos et al. 2013)
#: and random-walk Metropolis (Roberts, Gelman & Gilks 1997)
MALA_TARGET_ACCEPTANCE = 0.574
HMC_TARGET_ACCEPTANCE = 0.651
RANDOM_WALK_TARGET_ACCEPTANCE = 0.234
#: the optimal acceptance of a one-dimensional random-walk move (Gelman, Roberts & Gilks 1996), what
#: the scale of each line move is tuned towards
LINE_TARGET_ACCEPTANCE = 0.44

#: where covariance windows start and end, as fractions of the warm-up
_WINDOWS = ((0.15, 0.35), (0.35, 0.6), (0.6, 0.9))


def temperature_ladder(n_temperatures: int, max_temperature: float) -> torch.Tensor:
    """Inverse temperatures β_k = T_max^(−k/(K−1)), geometric from 1 down to 1/T_max, shape ``(K,)``."""
    if n_temperatures == 1:
        return torch.ones(1)
    exponents = torch.arange(n_temperatures, dtype=torch.float64) / (n_temperatures - 1)
    return torch.as_tensor(max_temperature, dtype=torch.float64).pow(-exponents).float()


def adaptation_windows(n_warmup: int) -> list[tuple[int, int]]:
    """Warm-up steps ``[start, end)`` whose draws estimate the preconditioner (empty windows dropped)."""
    windows = [(int(start * n_warmup), int(end * n_warmup)) for start, end in _WINDOWS]
    return [(start, end) for start, end in windows if end - start >= 2]


@dataclass
class ChainRecord:
    """The β = 1 chains and the sampler's statistics (numpy, ready for ArviZ).

    Attributes
    ----------
    latent : ndarray, shape (D, S, C, n)
        Draws after warm-up, per data set and chain.
    log_likelihood, log_posterior, acceptance : ndarray, shape (D, S, C)
        ℓ = −χ²/2, log p + ℓ (up to a constant), MALA acceptance probability.
    warmup_log_likelihood : ndarray, shape (W, S, C)
        ℓ during warm-up (to see the approach).
    swap_rate : ndarray, shape (S, K − 1)
        Accepted fraction of proposed swaps between neighbours, after warm-up.
    step_size : ndarray, shape (S, K)
        The frozen ε per temperature.
    kept_latent, kept_data : torch.Tensor, shape (S, R, n) and (S, R, n_data)
        Thinned draws (chain after chain) and their simulated data.
    evaluations : int
        Exact forward evaluations, one per chain and call (all temperatures, warm-up included).
    screen_rate : ndarray, shape (S,), optional
        With delayed acceptance: the fraction of β = 1 proposals that passed the surrogate.
    independence_rate : ndarray, shape (S,), optional
        With independence moves: their mean acceptance probability at β = 1 after warm-up.
    reset_chains : ndarray, shape (S,), optional
        With ``reset_outliers``: how many chains (all temperatures, all windows) warm-up moved.
    evolution_rate : ndarray, shape (S,), optional
        With differential-evolution moves: their mean acceptance probability at β = 1 after warm-up.
    line_rate : ndarray, shape (S,), optional
        With line moves: their mean acceptance probability at β = 1 after warm-up.
    line_scale : ndarray, shape (S, K, m), optional
        With line moves: each direction's frozen scale, in the draws' standard deviations along it.
    """

    latent: np.ndarray
    log_likelihood: np.ndarray
    log_posterior: np.ndarray
    acceptance: np.ndarray
    warmup_log_likelihood: np.ndarray
    swap_rate: np.ndarray
    step_size: np.ndarray
    kept_latent: torch.Tensor
    kept_data: torch.Tensor
    evaluations: int = 0
    screen_rate: np.ndarray | None = None
    independence_rate: np.ndarray | None = None
    reset_chains: np.ndarray | None = None
    evolution_rate: np.ndarray | None = None
    line_rate: np.ndarray | None = None
    line_scale: np.ndarray | None = None


def independence_proposal(posterior: LatentPosterior, center: torch.Tensor, beta: torch.Tensor,
                          scale: float) -> torch.Tensor:
    """Cholesky factors ``(S, K, n, n)`` of ``scale² ×`` the Laplace covariance at each ``center`` ``(S, K, n)``.

    The fixed Gaussian of :func:`~geoinv.sampling.moves.independence_step`: the Gauss-Newton posterior
    covariance (β JᵀΣ_d⁻¹J + I)⁻¹ of each temperature at the mean of its chains, widened by ``scale``
    (a little above 1 covers the target's tails; in 20 dimensions 1.5 is already rarely accepted).
    """
    return (_laplace_factor(posterior.problem, center, beta) * scale).to(center)


def _laplace_factor(problem: InverseProblem, center: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Cholesky factors ``(S, K, n, n)``, float64 on the CPU, of each temperature's Laplace covariance at
    ``center`` ``(S, K, n)``."""
    n_surveys, n_temperatures, n_parameters = center.shape
    betas = beta.double().cpu()[None, :].expand(n_surveys, -1).reshape(-1)
    covariance = laplace_covariance(problem, center.reshape(-1, n_parameters), betas)
    return torch.linalg.cholesky(covariance).reshape(n_surveys, n_temperatures, n_parameters, n_parameters)


def _pooled_moments(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(S, K, n)`` and covariance ``(S, K, n, n)`` of draws ``(T, S, K, C, n)`` pooled over steps and chains."""
    _, n_surveys, n_temperatures, _, n_parameters = draws.shape
    pooled = draws.permute(1, 2, 0, 3, 4).reshape(n_surveys, n_temperatures, -1, n_parameters)
    mean = pooled.mean(dim=2)
    centred = pooled - mean[:, :, None]
    return mean, centred.transpose(-1, -2) @ centred / max(pooled.shape[2] - 1, 1)


def broad_directions(problem: InverseProblem, draws: torch.Tensor, beta: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` directions along which the draws spread most beyond the Laplace approximation.

    The draws ``(T, S, K, C, n)`` are pooled over steps and chains per data set and temperature,
    whitened by the Laplace (Gauss-Newton) covariance at their mean, and the eigenvectors of their
    whitened covariance with the largest eigenvalues are mapped back: each direction's length is
    the draws' standard deviation along it. An eigenvalue of 25 means the posterior is 5 × wider
    there than the curvature that scales Langevin steps says.

    Returns
    -------
    torch.Tensor, shape (S, K, count, n)
        On the draws' device and dtype, widest first.
    """
    center, covariance = _pooled_moments(draws.double().cpu())
    factor = _laplace_factor(problem, center.to(draws), beta)
    values, vectors = torch.linalg.eigh(_whitened_covariance(factor, covariance))
    values, vectors = values.flip(-1)[..., :count], vectors.flip(-1)[..., :count]
    directions = factor @ (vectors * values.clamp(min=0).sqrt()[..., None, :])
    return directions.transpose(-1, -2).to(draws)


def approach(posterior: LatentPosterior, start: torch.Tensor, beta: torch.Tensor, steps: int,
             learning_rate: float = 0.05) -> torch.Tensor:
    """Adam on −log π_β from every start: brings dispersed starts near their tempered posteriors.

    Warm-up then forgets these steps (none of them is a draw); dispersed starts
    that end in different basins are what split R-hat needs to see poor mixing.
    """
    latent = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=learning_rate)
    for _ in range(steps):
        state = posterior.evaluate(latent.detach())
        gradient = -state.grad_log_target(beta)
        # a chain whose forward failed stays put rather than moving on a NaN gradient
        latent.grad = torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)
        optimizer.step()
    return latent.detach()


#: how the warm-up estimates each chain's preconditioner Σ
PRECONDITIONERS = ("gauss-newton", "pooled-gauss-newton", "widened-gauss-newton", "covariance", "local")


def _covariance_factor(draws: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of the draws' covariance per (S, K), from draws ``(T, S, K, C, n)`` pooled over chains.

    Shrunk towards 10⁻³ I like Stan's; returned per chain, ``(S, K, C, n, n)``.
    """
    n_draws = draws.shape[0] * draws.shape[3]
    _, covariance = _pooled_moments(draws)
    weight = n_draws / (n_draws + 5.0)
    identity = torch.eye(draws.shape[-1], dtype=draws.dtype, device=draws.device)
    covariance = weight * covariance + (1 - weight) * 1e-3 * identity
    factor = torch.linalg.cholesky(covariance + 1e-9 * identity)
    return factor[:, :, None].expand(-1, -1, draws.shape[3], -1, -1).clone()


def gauss_newton_hessian(problem: InverseProblem, latent: torch.Tensor,
                         beta: torch.Tensor | float = 1.0) -> torch.Tensor:
    """β JᵀΣ_d⁻¹J + I at each latent point: the Gauss-Newton Hessian of −log π_β.

    The prior's curvature is taken as the identity (exact for an N(0, I) latent prior).

    Parameters
    ----------
    problem : InverseProblem
        With a noise level.
    latent : torch.Tensor, shape (B, n)
    beta : torch.Tensor of shape (B,), or float
        Likelihood temperature(s).

    Returns
    -------
    torch.Tensor, shape (B, n, n), float64 on the CPU
    """
    if problem.noise_std is None:
        raise ConfigError(f"the Laplace covariance weighs the data by their noise; problem {problem.name!r} has "
                          "no noise_std: give the survey errors (or noise_std)")
    n_parameters = latent.shape[-1]
    jacobian = problem.jacobian(latent.reshape(-1, n_parameters))  # (B, n_data, n), float64
    weighted = jacobian / problem.noise_std.double().cpu().reshape(-1)[None, :, None]
    scale = torch.as_tensor(beta, dtype=torch.float64).reshape(-1, 1, 1)
    return scale * (weighted.transpose(1, 2) @ weighted) + torch.eye(n_parameters, dtype=torch.float64)


def laplace_covariance(problem: InverseProblem, latent: torch.Tensor, beta: torch.Tensor | float = 1.0) -> torch.Tensor:
    """(β JᵀΣ_d⁻¹J + I)⁻¹ at each latent point: the Gauss-Newton (Laplace) posterior covariance.

    The inverse of :func:`gauss_newton_hessian`, with the same parameters.

    Returns
    -------
    torch.Tensor, shape (B, n, n), float64 on the CPU
    """
    return _symmetric_inverse(gauss_newton_hessian(problem, latent, beta))


def _symmetric_inverse(hessian: torch.Tensor) -> torch.Tensor:
    """H⁻¹ for a batch of symmetric H, symmetrised against round-off (Cholesky needs it exactly)."""
    covariance = torch.linalg.inv(hessian)
    return 0.5 * (covariance + covariance.transpose(-1, -2))


def _whitened_covariance(factor: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """L⁻¹ C L⁻ᵀ for lower Cholesky factors L and covariances C of the same batch shape, symmetrised."""
    whitened = torch.linalg.solve_triangular(factor, covariance, upper=False)
    whitened = torch.linalg.solve_triangular(factor, whitened.transpose(-1, -2), upper=False)
    return 0.5 * (whitened + whitened.transpose(-1, -2))


def laplace_starts(problem: InverseProblem, mode: torch.Tensor, n_chains: int, spread: float = 1.5,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Chain starts around one posterior mode, over-dispersed by its Laplace covariance.

    ``mode + spread · L ξ`` with ``L Lᵀ`` = :func:`laplace_covariance` at ``mode`` and ξ ~ N(0, I);
    the first chain starts at the mode itself. Chains started so can show, by R-hat, whether they
    mix within the basin of ``mode``; they cannot show other basins (that is the optimiser's job).

    Parameters
    ----------
    problem : InverseProblem
        With a noise level.
    mode : torch.Tensor, shape (n,)
        A posterior mode (e.g. an optimiser's best candidate).
    n_chains : int
    spread : float
        Scale of the dispersion relative to the Laplace standard deviations (> 1 over-disperses,
        as R-hat asks).
    generator : torch.Generator, optional

    Returns
    -------
    torch.Tensor, shape (n_chains, n), on ``mode``'s device and dtype
    """
    if not (math.isfinite(spread) and spread >= 0):
        raise ConfigError(f"spread must be finite and >= 0, got {spread!r}")
    factor = torch.linalg.cholesky(laplace_covariance(problem, mode.detach()[None])[0])
    noise = torch.randn(n_chains, mode.numel(), dtype=torch.float64, generator=generator)
    starts = mode.detach().double().cpu()[None] + spread * noise @ factor.T
    starts[0] = mode.detach().double().cpu()
    return starts.to(mode)


def _gauss_newton_factor(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor,
                         pooled: bool = False) -> torch.Tensor:
    """Per chain, the Cholesky factor of (β JᵀΣ_d⁻¹J + I)⁻¹ at its current point, ``(S, K, C, n, n)``.

    The Gauss-Newton Hessian of −log π_β with the prior's curvature taken as the
    identity (exact for an N(0, I) latent prior): it scales the proposal to the
    local width of each chain's basin, which a pooled covariance cannot when
    chains sit in different basins. With ``pooled``, every chain of a data set and
    temperature gets the inverse of their Hessians' mean instead: where the curvature
    changes from point to point, one chain's is a poor guide for where it goes next.
    """
    latent = state.latent
    n_parameters = latent.shape[-1]
    scale = beta.double().cpu()[None, :, None].expand(latent.shape[:3]).reshape(-1)
    if not pooled:
        covariance = laplace_covariance(posterior.problem, latent.reshape(-1, n_parameters), scale)
        return torch.linalg.cholesky(covariance.reshape(*latent.shape, n_parameters)).to(latent)
    hessian = gauss_newton_hessian(posterior.problem, latent.reshape(-1, n_parameters), scale)
    covariance = _symmetric_inverse(hessian.reshape(*latent.shape, n_parameters).mean(dim=2, keepdim=True))
    return torch.linalg.cholesky(covariance.expand(*latent.shape, n_parameters)).to(latent)


def widened_factor(factor: torch.Tensor, covariance: torch.Tensor) -> torch.Tensor:
    """The Cholesky factor of Σ = L U max(R, 1) Uᵀ Lᵀ: ``factor``'s covariance widened to ``covariance``.

    With L = ``factor`` and U R Uᵀ the eigendecomposition of L⁻¹ C L⁻ᵀ (C = ``covariance``), Σ
    equals L Lᵀ along the directions where C is narrower and C where it is wider: the smallest
    covariance that contains both ellipsoids' axes in L's frame. For a Gauss-Newton Σ whose local
    curvature underestimates how far the posterior reaches along a few directions (the eikonal's
    broad basins), Langevin steps along those directions grow to the draws' width while the stiff
    directions keep the local curvature's scale.

    Parameters
    ----------
    factor : torch.Tensor, shape (..., n, n)
        Lower Cholesky factor L.
    covariance : torch.Tensor, shape (n, n) or one that broadcasts to ``factor``'s
        C.

    Returns
    -------
    torch.Tensor, ``factor``'s shape, dtype and device
    """
    lower = factor.double().cpu()
    ratio, vectors = torch.linalg.eigh(_whitened_covariance(lower, covariance.double().cpu().expand_as(lower)))
    inner = vectors @ torch.diag_embed(ratio.clamp(min=1.0)) @ vectors.transpose(-1, -2)
    widened = lower @ inner @ lower.transpose(-1, -2)
    return torch.linalg.cholesky(0.5 * (widened + widened.transpose(-1, -2))).to(factor)


def _rescaled_step(log_step: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Keep the proposal's size when Σ changes: ε ← ε·(tr Σ_old / tr Σ_new)^½ (traces averaged over chains)."""
    old_trace = old.pow(2).sum(dim=(-1, -2)).mean(dim=2)
    new_trace = new.pow(2).sum(dim=(-1, -2)).mean(dim=2)
    return log_step + 0.5 * (old_trace.log() - new_trace.log())


#: DREAM's outlier rule (Vrugt et al. 2009): a chain whose mean log-target over a warm-up window lies
#: below Q1 − OUTLIER_IQR · IQR of its rung's chains is stuck in a region of little mass
OUTLIER_IQR = 2.0


def outlier_chains(window_log_target: torch.Tensor) -> torch.Tensor:
    """Chains stuck far below the others, from their log π_β over a warm-up window ``(T, S, K, C)``.

    Returns a mask ``(S, K, C)``: the chain's mean log-target lies below Q1 − 2·IQR of the means of its
    data set's and temperature's chains (the quartiles over chains). A non-finite mean is an outlier.
    """
    mean = window_log_target.mean(dim=0)
    finite = torch.nan_to_num(mean.double(), nan=-torch.inf, neginf=-torch.inf)
    quartiles = torch.quantile(finite.clamp(min=torch.finfo(torch.float64).min), torch.tensor(
        [0.25, 0.75], dtype=torch.float64, device=mean.device), dim=-1, keepdim=True)
    threshold = quartiles[0] - OUTLIER_IQR * (quartiles[1] - quartiles[0])
    return ~(finite >= threshold)


def _reset_outliers(state: ChainState, window_log_target: torch.Tensor) -> tuple[ChainState, torch.Tensor]:
    """Move every outlier chain (:func:`outlier_chains`) to the current state of its rung's best chain
    (the highest mean log-target over the window); returns the states and the outliers' count per data set."""
    outliers = outlier_chains(window_log_target).to(state.latent.device)
    best = window_log_target.mean(dim=0).nan_to_num(nan=-torch.inf).argmax(dim=-1, keepdim=True)
    own = torch.arange(outliers.shape[-1], device=outliers.device).expand_as(outliers)
    index = torch.where(outliers, best.expand_as(outliers).to(outliers.device), own)
    return state.gather(index, dim=2), outliers.sum(dim=(1, 2)).cpu()


def run_replica_exchange(posterior: LatentPosterior, start: torch.Tensor, beta: torch.Tensor, n_warmup: int,
                         n_draws: int, thin: int, generator: torch.Generator, monitor: Any = None,
                         target_acceptance: float = MALA_TARGET_ACCEPTANCE, initial_step: float = 0.1,
                         adaptation_rate: float = 0.1, preconditioner: str = "gauss-newton",
                         surrogate: Callable[[torch.Tensor], LatentPosterior] | None = None,
                         independence: float = 0.0, surrogate_steps: int = 1,
                         leapfrog_steps: int = 1, random_walk: bool = False,
                         reset_outliers: bool = False, differential_evolution: int = 0,
                         line_directions: int = 0) -> ChainRecord:
    """Run the chains: warm-up with adaptation, then ``n_draws`` exact steps.

    Parameters
    ----------
    posterior : LatentPosterior
    start : torch.Tensor, shape (S, K, C, n)
        Starting points per data set, temperature and chain.
    beta : torch.Tensor, shape (K,)
        Inverse temperatures, ``beta[0] == 1``.
    n_warmup, n_draws : int
        Adaptive steps, then recorded steps.
    thin : int
        Keep every ``thin``-th recorded draw of every β = 1 chain as a candidate.
    generator : torch.Generator
    monitor : Monitor, optional
        Told of every step (acceptance and swap rates, ℓ of the best chain).
    target_acceptance : float
        MALA's optimal acceptance is 0.574 (Roberts & Rosenthal 1998), HMC's 0.651 (Beskos et al.
        2013; :data:`HMC_TARGET_ACCEPTANCE`).
    initial_step : float
        ε at β = 1 before adaptation (hotter replicas start at ε/√β, at most 1).
    adaptation_rate : float
        Robbins–Monro gain on log ε per step.
    preconditioner : {'gauss-newton', 'pooled-gauss-newton', 'widened-gauss-newton', 'covariance', 'local'}
        At the end of each warm-up window: each chain's Gauss-Newton posterior
        covariance at its current point, the inverse of the mean of the chains'
        Gauss-Newton Hessians (one Σ per data set and temperature), that Σ widened to the window's
        draws' covariance along the directions where the draws spread more (:func:`widened_factor`),
        or the window's draws' covariance
        pooled over the chains of a temperature (no Jacobians; suits one basin);
        or ``'local'``: at every step each point's own Gauss-Newton covariance
        (:func:`~geoinv.sampling.moves.manifold_mala_step`, one Jacobian per chain and step).
    surrogate : callable, optional
        ``surrogate(anchors)`` with the chains' states ``(S, K, C, n)`` at the end of
        warm-up returns a cheap, fixed approximation of the target (a
        :class:`LatentPosterior` whose problem simulates row b of a batch for chain
        b); the recorded steps then use delayed acceptance
        (:func:`~geoinv.sampling.delayed.delayed_mala_step`).
    surrogate_steps : int
        MALA moves on the surrogate per exact accept (with ``surrogate``).
    independence : float
        > 0: after every recorded MALA step, an independence move
        (:func:`~geoinv.sampling.moves.independence_step`) from the Laplace approximation at
        the mean of the last warm-up window's draws, its standard deviations times
        ``independence``; fixed for the recorded steps, so the chain stays exact. 0: off.
    leapfrog_steps : int
        1: each step is a MALA move; more: a Hamiltonian move of that many leapfrog steps
        (:func:`~geoinv.sampling.moves.hamiltonian_step`), each a forward and backward pass. Not
        with ``surrogate``.
    random_walk : bool
        Each step a random-walk Metropolis move (:func:`~geoinv.sampling.moves.random_walk_step`):
        forwards only, no gradient (aim ``target_acceptance`` at
        :data:`RANDOM_WALK_TARGET_ACCEPTANCE`). Not with a surrogate, independence moves,
        ``leapfrog_steps`` > 1 or ``preconditioner='local'``.
    reset_outliers : bool
        At the end of each warm-up window, move the chains stuck far below the others
        (:func:`outlier_chains`, DREAM's rule) to their rung's best chain. Warm-up only: the recorded
        steps stay an exact chain, but R-hat no longer sees a chain stuck in a region of little mass.
    differential_evolution : int
        k > 0: after every k-th step (from the first warm-up window on), a
        differential-evolution move (:func:`~geoinv.sampling.moves.differential_evolution_step`)
        along differences of the archive: every chain's states in the warm-up windows, fixed at
        the end of warm-up, so the recorded chain stays exact. 0: off. With MALA or HMC moves only.
    line_directions : int
        m > 0: after every step, a random-walk move along one of the m directions in which the
        warm-up's draws spread most beyond the Laplace approximation (:func:`broad_directions`,
        re-estimated at the end of each warm-up window), in turn (:func:`~geoinv.sampling.moves.line_step`);
        each direction's scale is tuned towards :data:`LINE_TARGET_ACCEPTANCE` in warm-up. Directions
        and scales are fixed for the recorded steps, so the chain stays exact. 0: off. With MALA or
        HMC moves and the Gauss-Newton or covariance preconditioner.
    """
    if random_walk and (surrogate is not None or leapfrog_steps > 1 or independence > 0
                        or preconditioner == "local"):
        raise ConfigError("random-walk moves take no gradient: not with a surrogate, leapfrog_steps > 1, "
                          "independence moves or preconditioner='local'")
    if surrogate is not None and leapfrog_steps > 1:
        raise ConfigError("delayed acceptance screens Langevin proposals: use leapfrog_steps=1 with a surrogate")
    local = preconditioner == "local"
    if differential_evolution and (surrogate is not None or random_walk or local):
        raise ConfigError("differential-evolution moves join MALA or HMC moves: not with a surrogate, random-walk "
                          "moves or preconditioner='local'")
    if line_directions and (random_walk or local):
        raise ConfigError("line moves join MALA or HMC moves: not with random-walk moves or preconditioner='local'")
    if local and (surrogate is not None or leapfrog_steps > 1 or independence > 0):
        raise ConfigError("preconditioner='local' moves by manifold MALA alone: not with a surrogate, "
                          "leapfrog_steps > 1 or independence moves")
    n_surveys, n_temperatures, n_chains, n_parameters = start.shape
    beta = beta.to(start)
    everywhere = torch.ones(start.shape[:-1], dtype=torch.bool)
    state = posterior.likelihood(start, everywhere) if random_walk else posterior.evaluate(start, metric=local)
    log_step = (math.log(initial_step) - 0.5 * beta.log()).clamp(max=0.0).expand(n_surveys, -1).clone()
    chol = torch.eye(n_parameters).to(start).expand(n_surveys, n_temperatures, n_chains, -1, -1).clone()
    windows = adaptation_windows(n_warmup)
    if line_directions and not 0 < line_directions <= n_parameters:
        raise ConfigError(f"line_directions={line_directions}: the latent space has {n_parameters} directions; give "
                          f"1 to {n_parameters} (or 0: off)")
    if line_directions and not windows:
        raise ConfigError(f"line moves follow the warm-up's draws: n_warmup={n_warmup} keeps none; give at least "
                          "10 warm-up steps")
    if differential_evolution and not windows:
        raise ConfigError(f"differential-evolution moves draw on the warm-up's states: n_warmup={n_warmup} keeps "
                          "none; give at least 10 warm-up steps")
    archive: list[torch.Tensor] = []  # warm-up window states (S, K, C, n), the differences' source
    pooled: torch.Tensor | None = None
    evolved = torch.zeros(n_surveys)
    evolution_moves = 0
    window_draws: list[torch.Tensor] = []
    warmup_likelihood = np.empty((n_warmup, n_surveys, n_chains))
    shape = (n_draws, n_surveys, n_chains)
    record = {"latent": np.empty((*shape, n_parameters)), "log_likelihood": np.empty(shape),
              "log_posterior": np.empty(shape), "acceptance": np.empty(shape)}
    swaps = torch.zeros(n_surveys, max(n_temperatures - 1, 0))
    proposed_swaps = torch.zeros_like(swaps)
    kept_latent, kept_data = [], []
    draws_done = 0
    screen, screened = None, None
    passed = torch.zeros(n_surveys)
    fixed: tuple[torch.Tensor, torch.Tensor] | None = None
    center = state.latent.mean(dim=2)  # the last warm-up window's mean replaces it
    independent = torch.zeros(n_surveys)
    window_log_target: list[torch.Tensor] = []
    reset = torch.zeros(n_surveys, dtype=torch.long)
    directions: torch.Tensor | None = None  # (S, K, m, n) from the first warm-up window on
    line_log_scale = torch.zeros(n_surveys, n_temperatures, max(line_directions, 1)).to(start)
    lined = torch.zeros(n_surveys)
    line_moves = 0
    for step in range(n_warmup + n_draws):
        if surrogate is not None and step == n_warmup:
            screen = surrogate(state.latent)
            screened = screen.evaluate(state.latent)
        if independence > 0 and step == n_warmup:
            fixed = center, independence_proposal(posterior, center, beta, independence)
        if screen is not None and screened is not None:
            state, screened, first, accepted = delayed_mala_step(posterior, screen, state, screened, beta, log_step,
                                                                 chol, generator, surrogate_steps)
            acceptance = accepted.float()
            passed += first[:, 0].float().mean(dim=1).cpu()
        elif local:
            state, acceptance = manifold_mala_step(posterior, state, beta, log_step, generator)
        elif random_walk:
            state, acceptance = random_walk_step(posterior, state, beta, log_step, chol, generator)
        elif leapfrog_steps > 1:
            state, acceptance = hamiltonian_step(posterior, state, beta, log_step, chol, generator, leapfrog_steps)
        else:
            state, acceptance = mala_step(posterior, state, beta, log_step, chol, generator)
        if fixed is not None:
            state, jumped = independence_step(posterior, state, beta, *fixed, generator)
            independent += jumped[:, 0].mean(dim=1).cpu()
            if screen is not None:
                screened = screen.evaluate(state.latent)
        if differential_evolution and step == n_warmup:
            pooled = torch.cat(archive, dim=2)  # fixed from here on: the recorded chain stays exact
        if differential_evolution and archive and step % differential_evolution == differential_evolution - 1:
            source = pooled if pooled is not None else torch.cat(archive, dim=2)  # growing in warm-up
            state, evolution = differential_evolution_step(posterior, state, beta, source, generator)
            if step >= n_warmup:
                evolved += evolution[:, 0].mean(dim=1).cpu()
                evolution_moves += 1
        if directions is not None:
            along = step % line_directions
            state, accepted = line_step(posterior, state, beta, directions[:, :, along], line_log_scale[..., along],
                                        generator)
            if step < n_warmup:
                line_log_scale[..., along] += adaptation_rate * (accepted.mean(dim=2) - LINE_TARGET_ACCEPTANCE)
            else:
                lined += accepted[:, 0].mean(dim=1).cpu()
                line_moves += 1
            if screen is not None:
                screened = screen.evaluate(state.latent)
        state, swapped = swap_step(state, beta, step % 2, generator)
        if screen is not None and bool((swapped == 1).any()):
            screened = screen.evaluate(state.latent)  # each chain slot has its own surrogate
        if step < n_warmup:
            log_step += adaptation_rate * (acceptance.mean(dim=2) - target_acceptance)
            warmup_likelihood[step] = state.log_likelihood[:, 0].cpu().numpy()
            for start_step, end_step in windows:
                if start_step <= step < end_step:
                    window_draws.append(state.latent.clone())
                    if differential_evolution:
                        archive.append(window_draws[-1])
                    if reset_outliers:
                        window_log_target.append(state.log_target(beta))
                if step == end_step - 1 and reset_outliers:
                    state, count = _reset_outliers(state, torch.stack(window_log_target))
                    reset, window_log_target = reset + count, []
                if step == end_step - 1 and not local:
                    window = torch.stack(window_draws)
                    if line_directions:
                        directions = broad_directions(posterior.problem, window, beta, line_directions)
                    center = window.mean(dim=(0, 3))
                    new_chol = (_covariance_factor(window) if preconditioner == "covariance" else
                                _gauss_newton_factor(posterior, state, beta, preconditioner != "gauss-newton"))
                    if preconditioner == "widened-gauss-newton":
                        new_chol = widened_factor(new_chol, _pooled_moments(window)[1][:, :, None])
                    log_step = _rescaled_step(log_step, chol, new_chol)
                    chol, window_draws = new_chol, []
        else:
            draw = step - n_warmup
            draws_done = draw + 1
            record["latent"][draw] = state.latent[:, 0].cpu().numpy()
            record["log_likelihood"][draw] = state.log_likelihood[:, 0].cpu().numpy()
            record["log_posterior"][draw] = state.log_target(beta)[:, 0].cpu().numpy()
            record["acceptance"][draw] = acceptance[:, 0].cpu().numpy()
            seen = ~torch.isnan(swapped)
            swaps += torch.nan_to_num(swapped).sum(dim=2).cpu()
            proposed_swaps += seen.sum(dim=2).cpu()
            if draw % thin == thin - 1:
                kept_latent.append(state.latent[:, 0].cpu())
                kept_data.append(state.data[:, 0].cpu())
        if monitor is not None and _report(monitor, step, n_warmup, acceptance, swapped, state):
            break
    # a stop requested by a callback keeps what was drawn
    record = {name: values[:draws_done] for name, values in record.items()}
    return ChainRecord(**record, warmup_log_likelihood=warmup_likelihood[:min(step + 1, n_warmup)],
                       swap_rate=(swaps / proposed_swaps.clamp(min=1)).numpy(),
                       step_size=log_step.exp().cpu().numpy(),
                       kept_latent=_chain_major(kept_latent, n_surveys, n_parameters),
                       kept_data=_chain_major(kept_data, n_surveys, -1), evaluations=posterior.evaluations,
                       screen_rate=(passed / max(draws_done, 1)).numpy() if screen is not None else None,
                       independence_rate=(independent / max(draws_done, 1)).numpy() if fixed is not None else None,
                       reset_chains=reset.numpy() if reset_outliers else None,
                       evolution_rate=(evolved / max(evolution_moves, 1)).numpy() if differential_evolution else None,
                       line_rate=(lined / max(line_moves, 1)).numpy() if line_directions else None,
                       line_scale=line_log_scale.exp().cpu().numpy() if line_directions else None)


def _chain_major(kept: list[torch.Tensor], n_surveys: int, width: int) -> torch.Tensor:
    """Kept draws ``[(S, C, w)] * D`` as ``(S, C·D, w)``, all of chain 0 first."""
    if not kept:
        return torch.empty(n_surveys, 0, max(width, 0))
    stacked = torch.stack(kept, dim=2)  # (S, C, D, w)
    return stacked.reshape(n_surveys, -1, stacked.shape[-1])


def _report(monitor, step: int, n_warmup: int, acceptance: torch.Tensor, swapped: torch.Tensor,
            state: ChainState) -> bool:
    metrics = {"phase": 0.0 if step < n_warmup else 1.0, "acceptance": float(acceptance[:, 0].mean()),
               "best_chi2": float(-2 * state.log_likelihood[:, 0].max())}
    if swapped.numel() and not torch.isnan(swapped).all():
        metrics["swap"] = float(torch.nanmean(swapped))
    return bool(monitor.step(**metrics))
