"""Delayed acceptance: a cheap surrogate screens MALA proposals before the exact forward decides.

Christen & Fox (2005) with a fixed approximation π̃ (for latent tomography: the forward linearised once
per chain at its end-of-warm-up state, exact there). The proposal drifts along the
surrogate's gradient, z' = z + (ε²/2) Σ ∇log π̃_β(z) + ε L ξ, so both stages are computable:

1. α₁ = min(1, π̃(z') q(z | z') / π̃(z) q(z' | z)) with the surrogate alone;
2. only for proposals that pass, α₂ = min(1, π(z') π̃(z) / π(z) π̃(z')) with one exact forward call
   (no adjoint: the exact gradient is never needed).

The chain stays exact for π (detailed balance of the composite kernel); the exact forward is spent on
the proposals the surrogate does not already refuse.
"""

from __future__ import annotations

import torch

from .moves import _accept, langevin_proposal
from .target import ChainState, LatentPosterior

__all__ = ["delayed_mala_step"]


def delayed_mala_step(posterior: LatentPosterior, surrogate: LatentPosterior, state: ChainState,
                      screened: ChainState, beta: torch.Tensor, log_step: torch.Tensor, chol: torch.Tensor,
                      generator: torch.Generator) -> tuple[ChainState, ChainState, torch.Tensor, torch.Tensor]:
    """One delayed-acceptance MALA move of every chain.

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

    Returns
    -------
    state, screened : ChainState
        The new states under π and π̃.
    first, accepted : torch.Tensor of bool, shape (S, K, C)
        Which proposals passed stage 1, and which were accepted.
    """
    proposed, first_ratio = langevin_proposal(surrogate.evaluate, screened, beta, log_step, chol, generator)
    first = _accept(first_ratio, generator)
    exact = posterior.likelihood(proposed.latent, first)
    surrogate_ratio = proposed.log_target(beta) - screened.log_target(beta)
    second = _accept(exact.log_target(beta) - state.log_target(beta) - surrogate_ratio, generator)
    accepted = first & second
    return state.where(accepted, exact), screened.where(accepted, proposed), first, accepted
