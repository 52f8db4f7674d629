"""Delayed acceptance: a cheap surrogate screens MALA proposals before the exact forward decides.

Christen & Fox (2005) with a fixed approximation π̃ (for latent tomography: the forward linearised once
per chain at its end-of-warm-up state, exact there). The proposal drifts along the
surrogate's gradient, z' = z + (ε²/2) Σ ∇log π̃_β(z) + ε L ξ, so both stages are computable:

1. α₁ = min(1, π̃(z') q(z | z') / π̃(z) q(z' | z)) with the surrogate alone;
2. only for proposals that pass, α₂ = min(1, π(z') π̃(z) / π(z) π̃(z')) with one exact forward call
   (no adjoint: the exact gradient is never needed).

The chain stays exact for π (detailed balance of the composite kernel); the exact forward is spent on
the proposals the surrogate does not already refuse.

With ``n_steps`` > 1 stage 1 is a *surrogate transition* (Liu 2001, ch. 9; the two-level case of
Lykkegaard et al.'s MLDA, 2022): ``n_steps`` MALA moves on π̃, a π̃-reversible kernel whatever their
number, carry the proposal further than one step, and stage 2's ratio is unchanged. Surrogate steps
cost a decoder pass and a sparse product; the exact forward runs once per ``n_steps`` of them, for
the chains that moved.
"""

from __future__ import annotations

import torch

from .moves import _accept, mala_step
from .target import ChainState, LatentPosterior

__all__ = ["delayed_mala_step"]


def delayed_mala_step(posterior: LatentPosterior, surrogate: LatentPosterior, state: ChainState,
                      screened: ChainState, beta: torch.Tensor, log_step: torch.Tensor, chol: torch.Tensor,
                      generator: torch.Generator, n_steps: int = 1
                      ) -> tuple[ChainState, ChainState, torch.Tensor, torch.Tensor]:
    """One delayed-acceptance move of every chain: ``n_steps`` MALA moves on the surrogate, one exact accept.

    Parameters
    ----------
    posterior : LatentPosterior
        The exact target (only its log-likelihood is evaluated, for the proposals that pass stage 1).
    surrogate : LatentPosterior
        The fixed approximation π̃ (evaluated with gradients for every chain, in one call).
    state, screened : ChainState
        The chains under π (its gradients are not used) and under π̃, at the same points.
    beta, log_step, chol, generator
        As for :func:`geoinv.sampling.mala_step`.
    n_steps : int
        MALA moves on the surrogate before the exact accept (1: Christen & Fox's delayed acceptance).

    Returns
    -------
    state, screened : ChainState
        The new states under π and π̃.
    first, accepted : torch.Tensor of bool, shape (S, K, C)
        Which proposals passed stage 1 (moved on the surrogate), and which were accepted.
    """
    proposed = screened
    for _ in range(n_steps):
        proposed, _ = mala_step(surrogate, proposed, beta, log_step, chol, generator)
    first = (proposed.latent != screened.latent).any(dim=-1)
    exact = posterior.likelihood(proposed.latent, first)
    surrogate_ratio = proposed.log_target(beta) - screened.log_target(beta)
    second = _accept(exact.log_target(beta) - state.log_target(beta) - surrogate_ratio, generator)
    accepted = first & second
    return state.where(accepted, exact), screened.where(accepted, proposed), first, accepted
