"""The moves of the sampler: a preconditioned MALA, Hamiltonian (HMC) or random-walk step per
replica, an independence step from a fixed Gaussian, a random-walk step along one fixed
direction, a differential-evolution step along differences of past states, and replica-exchange
swaps.

Each is an exact Metropolis–Hastings move for the tempered targets of :mod:`geoinv.sampling.target`;
all data sets, temperatures and chains move in one batched call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .target import ChainState, LatentPosterior

__all__ = ["differential_evolution_step", "hamiltonian_step", "independence_step", "langevin_proposal", "leapfrog",
           "line_step", "local_metric_factor", "mala_step", "manifold_mala_step", "random_walk_step", "swap_step"]

#: fraction of differential-evolution moves that take a whole archive difference (γ = 1): the jumps
#: that carry a chain to the region of another (ter Braak & Vrugt 2008)
DE_JUMP_RATE = 0.2
#: crossover probabilities of differential-evolution moves (DREAM's three, drawn uniformly)
DE_CROSSOVER = (1 / 3, 2 / 3, 1.0)

#: relative spread of HMC's step size from move to move (uniform in log ε ± this), against periodic orbits
STEP_JITTER = 0.2


def _times(chol: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """L v per chain, ``chol`` (S, K, C, n, n) and ``vectors`` (S, K, C, n)."""
    return (chol @ vectors[..., None])[..., 0]


def _preconditioned(chol: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Σ v with Σ = L Lᵀ."""
    return _times(chol, (chol.transpose(-1, -2) @ vectors[..., None])[..., 0])


def _whitened(chol: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """L⁻¹ v."""
    return torch.linalg.solve_triangular(chol, vectors[..., None], upper=False)[..., 0]


def _drift(state: ChainState, beta: torch.Tensor, step: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """z + (ε²/2) Σ ∇log π_β(z): the mean of the Langevin proposal from ``state``."""
    half_h = 0.5 * step.pow(2)[..., None, None]
    return state.latent + half_h * _preconditioned(chol, state.grad_log_target(beta))


def _accept(log_ratio: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Metropolis–Hastings: True where log u < ``log_ratio`` (a NaN ratio refuses)."""
    uniform = torch.rand(log_ratio.shape, generator=generator).to(log_ratio)
    return uniform.log() < torch.nan_to_num(log_ratio, nan=-torch.inf)


def _metropolis(state: ChainState, proposed: ChainState, log_ratio: torch.Tensor,
                generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """Accept ``proposed`` by Metropolis–Hastings; the new states and min(1, α) per chain."""
    accept = _accept(log_ratio, generator)
    return state.where(accept, proposed), torch.nan_to_num(log_ratio, nan=-torch.inf).clamp(max=0.0).exp()


def langevin_proposal(evaluate: Callable[[torch.Tensor], ChainState], guide: ChainState, beta: torch.Tensor,
                      log_step: torch.Tensor, chol: torch.Tensor,
                      generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """Propose z' = z + (ε²/2) Σ ∇log π_β(z) + ε L ξ from ``guide`` and evaluate it.

    Returns the proposal (by ``evaluate``) and the Metropolis–Hastings log ratio under the guide's target,
    log π(z') − log π(z) + log q(z | z') − log q(z' | z) (NaN where the forward failed).
    """
    step = log_step.exp()
    noise = torch.randn(guide.latent.shape, generator=generator).to(guide.latent)
    proposed = evaluate(_drift(guide, beta, step, chol) + step[..., None, None] * _times(chol, noise))
    reverse = _whitened(chol, guide.latent - _drift(proposed, beta, step, chol)) / step[..., None, None]
    log_ratio = (proposed.log_target(beta) - guide.log_target(beta)
                 - 0.5 * reverse.pow(2).sum(dim=-1) + 0.5 * noise.pow(2).sum(dim=-1))
    return proposed, log_ratio


def mala_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor, log_step: torch.Tensor,
              chol: torch.Tensor, generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """One Metropolis-adjusted Langevin move of every chain.

    Parameters
    ----------
    posterior : LatentPosterior
    state : ChainState
        Current states ``(S, K, C, ...)``.
    beta : torch.Tensor, shape (K,)
        Inverse temperatures.
    log_step : torch.Tensor, shape (S, K)
        log ε per data set and temperature.
    chol : torch.Tensor, shape (S, K, C, n, n)
        Lower Cholesky factor L of each chain's preconditioner Σ = L Lᵀ (the
        proposal is z' = z + (ε²/2) Σ ∇log π(z) + ε L ξ).
    generator : torch.Generator
        Source of ξ and of the accept draws (CPU).

    Returns
    -------
    state : ChainState
        The new states.
    acceptance : torch.Tensor, shape (S, K, C)
        The acceptance probabilities min(1, α) (what step-size adaptation averages).
    """
    proposed, log_ratio = langevin_proposal(posterior.evaluate, state, beta, log_step, chol, generator)
    return _metropolis(state, proposed, log_ratio, generator)


def random_walk_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor, log_step: torch.Tensor,
                     chol: torch.Tensor, generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """One preconditioned random-walk Metropolis move of every chain: z' = z + ε L ξ, forwards only.

    The proposal is symmetric, so it is accepted with min(1, π_β(z') / π_β(z)). No gradient is
    taken (:meth:`LatentPosterior.likelihood`): a step costs a forward, not a forward and its
    adjoint, and it works with forwards that have no derivative. Its optimal acceptance is 0.234
    (Roberts, Gelman & Gilks 1997), its travel per step about ε ≈ 2.38/√n in Σ's units: less than
    a Langevin step's, at less than half the price on the eikonal. The states it returns carry
    zero gradients.

    Parameters
    ----------
    posterior, state, beta, log_step, chol, generator
        As for :func:`mala_step`.

    Returns
    -------
    state : ChainState
    acceptance : torch.Tensor, shape (S, K, C)
        The acceptance probabilities min(1, α).
    """
    step = log_step.exp()[..., None, None]
    noise = torch.randn(state.latent.shape, generator=generator).to(state.latent)
    everywhere = torch.ones(state.log_likelihood.shape, dtype=torch.bool)
    proposed = posterior.likelihood(state.latent + step * _times(chol, noise), everywhere)
    return _metropolis(state, proposed, proposed.log_target(beta) - state.log_target(beta), generator)


def local_metric_factor(state: ChainState, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chain, the Cholesky factor L of Σ(z) = (β JᵀΣ_d⁻¹J + I)⁻¹ at its own point, and log det L.

    The identity is the curvature of an N(0, I) latent prior. Needs ``state.gram``.
    """
    if state.gram is None:
        raise ValueError("a position-dependent metric needs states evaluated with metric=True")
    n_parameters = state.latent.shape[-1]
    identity = torch.eye(n_parameters, dtype=torch.float64, device=state.gram.device)
    hessian = beta.double()[:, None, None, None] * state.gram.double() + identity
    # L = chol(H)⁻ᵀ satisfies L Lᵀ = H⁻¹; from the flipped Cholesky factor, lower triangular as _times needs
    flip = torch.linalg.cholesky(hessian.flip(-1, -2)).flip(-1, -2)  # upper U with U Uᵀ = H
    factor = torch.linalg.solve_triangular(flip, identity.expand_as(hessian), upper=True).transpose(-1, -2)
    log_det = factor.diagonal(dim1=-2, dim2=-1).log().sum(dim=-1)
    return factor.to(state.latent), log_det.to(state.latent)


def manifold_mala_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor, log_step: torch.Tensor,
                       generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """One simplified manifold MALA move of every chain: the preconditioner is each point's own metric.

    z' = z + (ε²/2) Σ(z) ∇log π_β(z) + ε L(z) ξ with Σ(z) = L(z) L(z)ᵀ = (β JᵀΣ_d⁻¹J + I)⁻¹ at z
    (Girolami & Calderhead 2011, without the metric's derivative terms), accepted with the ratio of
    the two proposal densities, whose normalising constants differ by det L(z') / det L(z). A fixed
    preconditioner fits a basin where it was measured; this one follows the curvature as it changes
    within a step's reach, for one Jacobian per chain and step more. ``state`` needs ``gram``.
    """
    step = log_step.exp()
    chol, log_det = local_metric_factor(state, beta)
    noise = torch.randn(state.latent.shape, generator=generator).to(state.latent)
    proposed = posterior.evaluate(_drift(state, beta, step, chol) + step[..., None, None] * _times(chol, noise),
                                  metric=True)
    proposed_chol, proposed_log_det = local_metric_factor(proposed, beta)
    reverse = _whitened(proposed_chol, state.latent - _drift(proposed, beta, step, proposed_chol))
    log_ratio = (proposed.log_target(beta) - state.log_target(beta)
                 - 0.5 * (reverse / step[..., None, None]).pow(2).sum(dim=-1) + 0.5 * noise.pow(2).sum(dim=-1)
                 - proposed_log_det + log_det)
    return _metropolis(state, proposed, log_ratio, generator)


def hamiltonian_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor, log_step: torch.Tensor,
                     chol: torch.Tensor, generator: torch.Generator,
                     n_leapfrog: int, step_jitter: float = STEP_JITTER) -> tuple[ChainState, torch.Tensor]:
    """One Hamiltonian Monte Carlo move of every chain: ``n_leapfrog`` leapfrog steps, one accept.

    The mass matrix is Σ⁻¹ (momenta r in Σ's whitened coordinates, r ~ N(0, I)): each leapfrog step
    is r ← r + (ε/2) Lᵀ∇log π_β(z), z ← z + ε L r, r ← r + (ε/2) Lᵀ∇log π_β(z), and the end point is
    accepted with min(1, exp(−ΔH)), H = −log π_β(z) + ‖r‖²/2. A trajectory of ``n_leapfrog`` steps
    travels about ``n_leapfrog`` times as far as a Langevin step for as many forward and backward
    passes, without the random walk's back-tracking. With one leapfrog step and no jitter it is MALA
    (:func:`mala_step`). ε is jittered per chain and move (log ε ± ``step_jitter``, independent of
    the state, so the move stays exact) against trajectories that return where they started.

    Parameters
    ----------
    posterior, state, beta, log_step, chol, generator
        As for :func:`mala_step`.
    n_leapfrog : int
        Leapfrog steps per move (each one forward and backward pass of every chain).
    step_jitter : float
        Half-width of the uniform jitter of log ε (0: none).

    Returns
    -------
    state : ChainState
    acceptance : torch.Tensor, shape (S, K, C)
        min(1, exp(−ΔH)), what step-size adaptation averages.

    Notes
    -----
    A forward that fails on the way gives a zero gradient there (:class:`LatentPosterior`); the
    leapfrog map stays reversible and volume-preserving, and an end point that failed is refused.
    """
    log_steps = log_step[..., None].expand(state.log_likelihood.shape)
    if step_jitter > 0:
        jitter = (2 * torch.rand(state.log_likelihood.shape, generator=generator) - 1) * step_jitter
        log_steps = log_steps + jitter.to(log_steps)
    step = log_steps.exp()[..., None]  # (S, K, C, 1)
    momentum = torch.randn(state.latent.shape, generator=generator).to(state.latent)
    proposed, moved = leapfrog(posterior, state, momentum, beta, step, chol, n_leapfrog)
    log_ratio = (proposed.log_target(beta) - state.log_target(beta)
                 - 0.5 * moved.pow(2).sum(dim=-1) + 0.5 * momentum.pow(2).sum(dim=-1))
    return _metropolis(state, proposed, log_ratio, generator)


def leapfrog(posterior: LatentPosterior, state: ChainState, momentum: torch.Tensor, beta: torch.Tensor,
             step: torch.Tensor, chol: torch.Tensor, n_steps: int) -> tuple[ChainState, torch.Tensor]:
    """``n_steps`` leapfrog steps of Hamilton's equations for H = −log π_β(z) + ‖r‖²/2, z = L·(whitened).

    Reversible (from the end with −r it returns to the start) and volume-preserving, for any
    gradient that depends on z alone: what makes :func:`hamiltonian_step` exact.

    Parameters
    ----------
    posterior, state, beta, chol
        As for :func:`mala_step`.
    momentum : torch.Tensor, shape (S, K, C, n)
        Whitened momenta r at ``state``.
    step : torch.Tensor, shape (S, K, C, 1)
        ε per chain.
    n_steps : int

    Returns
    -------
    (ChainState, torch.Tensor)
        The end point and its momenta.
    """
    lift = chol.transpose(-1, -2)
    moving = momentum + 0.5 * step * _times(lift, state.grad_log_target(beta))
    for leap in range(n_steps):
        state = posterior.evaluate(state.latent + step * _times(chol, moving))
        kick = step if leap < n_steps - 1 else 0.5 * step
        moving = moving + kick * _times(lift, state.grad_log_target(beta))
    return state, moving


def independence_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor, center: torch.Tensor,
                      chol: torch.Tensor, generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """One independence Metropolis–Hastings move of every chain: propose z' = m + L ξ whatever z is.

    A fixed Gaussian q = N(m, L Lᵀ) close to the target (a basin's Laplace approximation, somewhat
    widened) proposes nearly independent states, so a chain crosses its basin in a few accepted
    moves instead of a random walk of small Langevin steps. Accepted with
    min(1, π(z') q(z) / (π(z) q(z'))): exact for any fixed q.

    Parameters
    ----------
    posterior : LatentPosterior
    state : ChainState
        Current states ``(S, K, C, ...)``.
    beta : torch.Tensor, shape (K,)
    center : torch.Tensor, shape (S, K, n)
        m per data set and temperature.
    chol : torch.Tensor, shape (S, K, n, n)
        Lower Cholesky factor L of the proposal's covariance per data set and temperature.
    generator : torch.Generator

    Returns
    -------
    state : ChainState
    acceptance : torch.Tensor, shape (S, K, C)
        The acceptance probabilities min(1, α).
    """
    expanded = chol[:, :, None].expand(*state.latent.shape, state.latent.shape[-1])
    noise = torch.randn(state.latent.shape, generator=generator).to(state.latent)
    proposed = posterior.evaluate(center[:, :, None] + _times(expanded, noise))
    current = _whitened(expanded, state.latent - center[:, :, None])
    log_ratio = (proposed.log_target(beta) - state.log_target(beta)
                 - 0.5 * current.pow(2).sum(dim=-1) + 0.5 * noise.pow(2).sum(dim=-1))
    return _metropolis(state, proposed, log_ratio, generator)


def line_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor, direction: torch.Tensor,
              log_scale: torch.Tensor, generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """One random-walk Metropolis move of every chain along a fixed direction: z' = z + s η d, η ~ N(0, 1).

    Where the posterior is much wider along a few directions than the local curvature that scales
    Langevin steps (the eikonal's broad basins, s48: 5 × in standard deviation along one direction),
    a one-dimensional move scaled to that width crosses the basin in tens of steps where Langevin
    steps random-walk for thousands. The proposal is symmetric, so it is accepted with
    min(1, π_β(z') / π_β(z)): exact for a fixed ``direction`` and scale. The proposal is evaluated
    with its gradient, so Langevin moves can follow.

    Parameters
    ----------
    posterior : LatentPosterior
    state : ChainState
        Current states ``(S, K, C, ...)``.
    beta : torch.Tensor, shape (K,)
    direction : torch.Tensor, shape (S, K, n)
        d per data set and temperature (its length sets the move's unit, e.g. the posterior's
        standard deviation along it).
    log_scale : torch.Tensor, shape (S, K)
        log s per data set and temperature.
    generator : torch.Generator

    Returns
    -------
    state : ChainState
    acceptance : torch.Tensor, shape (S, K, C)
        The acceptance probabilities min(1, α).
    """
    noise = torch.randn(state.log_likelihood.shape, generator=generator).to(state.latent)
    offset = (log_scale.exp()[..., None] * noise)[..., None] * direction[:, :, None]
    proposed = posterior.evaluate(state.latent + offset)
    return _metropolis(state, proposed, proposed.log_target(beta) - state.log_target(beta), generator)


def differential_evolution_step(posterior: LatentPosterior, state: ChainState, beta: torch.Tensor,
                                archive: torch.Tensor, generator: torch.Generator
                                ) -> tuple[ChainState, torch.Tensor]:
    """One differential-evolution Metropolis move of every chain along a difference of archived states.

    DREAM(ZS)'s proposal (ter Braak & Vrugt 2008; the sampler Laloy et al. 2018 ran in a GAN's
    latent space): z' = z + γ m ⊙ (a − b), with a ≠ b two states drawn from the archive of
    past states (all chains of the data set and temperature), m a random crossover mask
    (each coordinate with probability 1/3, 2/3 or 1, at least one) and γ = 2.38/√(2 d′) for
    d′ moved coordinates, or γ = 1 and every coordinate in :data:`DE_JUMP_RATE` of the moves. The
    differences follow the shape of the posterior the archive has seen, and a jump (γ = 1)
    carries a chain from one region the chains visited to another. The mask, γ and the pair are
    drawn independently of z, and (a, b) is as likely as (b, a), so the proposal is symmetric and
    accepted with min(1, π_β(z') / π_β(z)): exact for a fixed archive.

    Parameters
    ----------
    posterior : LatentPosterior
    state : ChainState
        Current states ``(S, K, C, ...)``.
    beta : torch.Tensor, shape (K,)
    archive : torch.Tensor, shape (S, K, M, n)
        Past states per data set and temperature, M >= 2.
    generator : torch.Generator

    Returns
    -------
    state : ChainState
    acceptance : torch.Tensor, shape (S, K, C)
        The acceptance probabilities min(1, α).
    """
    n_surveys, n_temperatures, n_chains, n_parameters = state.latent.shape
    shape = (n_surveys, n_temperatures, n_chains)
    size = archive.shape[2]
    first = torch.randint(size, shape, generator=generator)
    second = (first + torch.randint(1, size, shape, generator=generator)) % size  # a state other than the first

    def archived(index: torch.Tensor) -> torch.Tensor:
        return archive.gather(2, index.to(archive.device)[..., None].expand(*shape, n_parameters))

    crossover = torch.tensor(DE_CROSSOVER)[torch.randint(len(DE_CROSSOVER), shape, generator=generator)]
    mask = torch.rand((*shape, n_parameters), generator=generator) < crossover[..., None]
    mask.scatter_(-1, torch.randint(n_parameters, shape, generator=generator)[..., None], True)
    jump = torch.rand(shape, generator=generator) < DE_JUMP_RATE
    mask |= jump[..., None]
    gamma = torch.where(jump, 1.0, 2.38 / (2 * mask.sum(dim=-1)).sqrt())
    step = (gamma[..., None] * mask).to(state.latent) * (archived(first) - archived(second))
    proposed = posterior.evaluate(state.latent + step)
    return _metropolis(state, proposed, proposed.log_target(beta) - state.log_target(beta), generator)


def swap_step(state: ChainState, beta: torch.Tensor, parity: int,
              generator: torch.Generator) -> tuple[ChainState, torch.Tensor]:
    """Propose exchanges between neighbouring temperatures (k, k+1) with k of one ``parity``.

    Alternating the parity from step to step (the deterministic even–odd
    scheme) lets a state travel the whole ladder. A swap is accepted with
    min(1, exp((β_k − β_{k+1})(ℓ_{k+1} − ℓ_k))).

    Returns
    -------
    state : ChainState
    accepted : torch.Tensor, shape (S, K − 1, C)
        1 where pair (k, k+1) swapped, 0 where it was proposed and refused,
        NaN where it was not proposed this step.
    """
    n_surveys, n_temperatures, n_chains = state.log_likelihood.shape
    outcome = torch.full((n_surveys, max(n_temperatures - 1, 0), n_chains), torch.nan)
    if n_temperatures - 1 <= parity:
        return state, outcome
    lower = torch.arange(parity, n_temperatures - 1, 2)
    upper = lower + 1
    likelihood = state.log_likelihood
    log_ratio = (beta[lower] - beta[upper])[:, None] * (likelihood[:, upper] - likelihood[:, lower])
    swap = _accept(log_ratio, generator).cpu()
    index = torch.arange(n_temperatures).reshape(1, -1, 1).repeat(n_surveys, 1, n_chains)
    index[:, lower] = torch.where(swap, upper[None, :, None], lower[None, :, None])
    index[:, upper] = torch.where(swap, lower[None, :, None], upper[None, :, None])
    outcome[:, lower] = swap.float()
    return state.gather(index.to(state.latent.device)), outcome
