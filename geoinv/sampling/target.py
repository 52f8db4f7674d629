"""The tempered latent posterior a sampler targets, evaluated for every chain in one forward call.

log π_β(z) = log p(z) + β ℓ(z), with ℓ(z) = −½ Σᵢ ((F(z)ᵢ − dᵢ)/σᵢ)² (minus half the χ² misfit) and
β ∈ (0, 1] the inverse temperature of a replica (β = 1: the posterior).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from ..errors import ConfigError
from ..problem import InverseProblem

__all__ = ["ChainState", "LatentPosterior"]


@dataclass
class ChainState:
    """Where every chain is, with what its moves reuse (no second forward call for a swap).

    All tensors have leading dimensions ``(S, K, C)``: data sets, temperatures, chains.

    Attributes
    ----------
    latent : torch.Tensor, shape (S, K, C, n)
    log_likelihood : torch.Tensor, shape (S, K, C)
        ℓ(z) = −χ²/2 (non-finite where the forward failed).
    grad_log_likelihood : torch.Tensor, shape (S, K, C, n)
    log_prior, grad_log_prior : torch.Tensor
        ``log p(z)`` (up to a constant) and its gradient.
    data : torch.Tensor, shape (S, K, C, n_data)
        Simulated data at ``latent`` (problem's data unit).
    gram : torch.Tensor, shape (S, K, C, n, n), optional
        JᵀΣ_d⁻¹J at ``latent`` (the Gauss-Newton curvature of −ℓ, independent of the
        temperature), for moves with a position-dependent metric; None otherwise.
    """

    latent: torch.Tensor
    log_likelihood: torch.Tensor
    grad_log_likelihood: torch.Tensor
    log_prior: torch.Tensor
    grad_log_prior: torch.Tensor
    data: torch.Tensor
    gram: torch.Tensor | None = None

    def log_target(self, beta: torch.Tensor) -> torch.Tensor:
        """log π_β per chain, ``beta`` of shape ``(K,)``."""
        return self.log_prior + beta[:, None] * self.log_likelihood

    def grad_log_target(self, beta: torch.Tensor) -> torch.Tensor:
        return self.grad_log_prior + beta[:, None, None] * self.grad_log_likelihood

    def where(self, mask: torch.Tensor, other: ChainState) -> ChainState:
        """``other`` where ``mask`` (S, K, C) is true, else this state."""
        merged: dict[str, Any] = {}
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if mine is None or theirs is None:
                if (mine is None) != (theirs is None):
                    raise ValueError(f"cannot merge states with and without {item.name!r}")
                merged[item.name] = None
                continue
            shaped = mask.reshape(*mask.shape, *([1] * (mine.ndim - mask.ndim)))
            merged[item.name] = torch.where(shaped, theirs, mine)
        return ChainState(**merged)

    def gather(self, index: torch.Tensor, dim: int = 1) -> ChainState:
        """Reorder the temperatures (``dim=1``) or the chains (``dim=2``) by ``index`` (S, K, C).

        With ``dim=1`` replica k of chain c takes the state ``index[s, k, c]`` of that chain's
        replicas; with ``dim=2`` chain c of rung k takes the state of chain ``index[s, k, c]``.
        """
        moved: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                moved[item.name] = None
                continue
            shaped = index.reshape(*index.shape, *([1] * (value.ndim - index.ndim)))
            moved[item.name] = torch.gather(value, dim, shaped.expand_as(value).to(value.device))
        return ChainState(**moved)


class LatentPosterior:
    """The posterior of a problem's parameters given each observed data set, batched over chains.

    Parameters
    ----------
    problem : InverseProblem
        Needs a noise level (the likelihood is Gaussian with ``noise_std``) and a
        prior log-density (:meth:`InverseProblem.log_prior`: given, or the latent
        prior's, e.g. a VAE's N(0, I)).
    target : torch.Tensor, shape (S, n_data)
        The observed data sets.
    chunk : int
        Chains evaluated per forward call (bounds memory; all at once when larger).
    """

    def __init__(self, problem: InverseProblem, target: torch.Tensor, chunk: int = 256) -> None:
        if problem.noise_std is None:
            raise ConfigError("sampling needs each datum's noise level: build the problem with noise_std "
                              "(or a survey with errors)")
        if not problem.has_log_prior:
            raise ConfigError(f"sampling needs the prior's log-density: the problem {problem.name!r} has none; "
                              "build it with log_prior= (or from a latent prior: build_problem, LatentTomography)")
        self.problem = problem
        self.target = target.to(problem.device, torch.float32)
        self.noise_std = problem.noise_std.to(problem.device, torch.float32)
        self.chunk = int(chunk)
        #: forward evaluations so far (one per chain and call)
        self.evaluations = 0

    def evaluate(self, latent: torch.Tensor, metric: bool = False) -> ChainState:
        """Log-likelihood, log-prior, their gradients and the data at ``latent`` ``(S, K, C, n)``;
        with ``metric``, also each point's JᵀΣ_d⁻¹J, the likelihood's gradient then Jᵀ of the weighted
        residuals (one Jacobian and a forward without adjoint per chain instead of forward and adjoint)."""
        n_parameters = latent.shape[-1]
        per_survey = latent[0].numel() // n_parameters
        flat = latent.detach().reshape(-1, n_parameters).to(self.problem.device, torch.float32)
        targets = self.target.repeat_interleave(per_survey, dim=0)
        evaluate = self._evaluate_with_metric if metric else self._evaluate
        parts = [evaluate(part, goal) for part, goal in zip(flat.split(self.chunk), targets.split(self.chunk))]
        self.evaluations += flat.shape[0]
        values = [torch.cat(column) for column in zip(*parts)]
        shape = latent.shape[:-1]
        gram = values[5].to(latent).reshape(*latent.shape, n_parameters) if metric else None
        return ChainState(latent.detach().clone(), values[0].reshape(shape), values[1].reshape(latent.shape),
                          values[2].reshape(shape), values[3].reshape(latent.shape),
                          values[4].reshape(*shape, -1), gram)

    def _evaluate_with_metric(self, latent: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            data = self.problem.forward(latent)
        log_likelihood = self._log_likelihood(data, target)
        noise = self.noise_std.double().cpu().reshape(-1)
        weighted = self.problem.jacobian(latent) / noise[None, :, None]  # (B, n_data, n), float64
        residual = ((target - data).double().cpu() / noise).nan_to_num(nan=0.0)
        grad_likelihood = torch.einsum("bdn,bd->bn", weighted, residual).to(latent)
        gram = weighted.transpose(1, 2) @ weighted
        with torch.enable_grad():
            point = latent.clone().requires_grad_(True)
            log_prior = self.problem.log_prior(point)
            (grad_prior,) = torch.autograd.grad(log_prior.sum(), point)
        failed = ~(torch.isfinite(log_likelihood) & torch.isfinite(grad_likelihood).all(dim=1))
        return (log_likelihood.masked_fill(failed, -torch.inf), grad_likelihood.masked_fill(failed[:, None], 0.0),
                log_prior.detach(), grad_prior, data, 0.5 * (gram + gram.transpose(1, 2)))

    def _log_likelihood(self, data: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ℓ = −½ Σᵢ ((dataᵢ − targetᵢ)/σᵢ)² per row."""
        return -0.5 * ((data - target) / self.noise_std).pow(2).sum(dim=1)

    def _evaluate(self, latent: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.enable_grad():
            point = latent.clone().requires_grad_(True)
            data = self.problem.forward(point)
            log_likelihood = self._log_likelihood(data, target)
            (grad_likelihood,) = torch.autograd.grad(log_likelihood.sum(), point)
            point = latent.clone().requires_grad_(True)
            log_prior = self.problem.log_prior(point)
            (grad_prior,) = torch.autograd.grad(log_prior.sum(), point)
        failed = ~(torch.isfinite(log_likelihood) & torch.isfinite(grad_likelihood).all(dim=1))
        log_likelihood = log_likelihood.detach().masked_fill(failed, -torch.inf)
        grad_likelihood = grad_likelihood.masked_fill(failed[:, None], 0.0)
        return log_likelihood, grad_likelihood, log_prior.detach(), grad_prior, data.detach()

    def likelihood(self, latent: torch.Tensor, mask: torch.Tensor) -> ChainState:
        """ℓ, log p and the data at ``latent`` ``(S, K, C, n)`` where ``mask`` ``(S, K, C)``, without gradients.

        Elsewhere ℓ is −inf and the data NaN; the gradient fields are zero (delayed acceptance never
        needs the exact gradient).
        """
        n_parameters = latent.shape[-1]
        per_survey = latent[0].numel() // n_parameters
        flat = latent.detach().reshape(-1, n_parameters).to(self.problem.device, torch.float32)
        chosen = mask.reshape(-1).to(flat.device)
        targets = self.target.repeat_interleave(per_survey, dim=0)[chosen]
        log_likelihood = torch.full((flat.shape[0],), -torch.inf, device=flat.device)
        data = torch.full((flat.shape[0], self.problem.n_data), torch.nan, device=flat.device)
        with torch.no_grad():
            log_prior = self.problem.log_prior(flat)
            if chosen.any():
                simulated = torch.cat([self.problem.forward(part) for part in flat[chosen].split(self.chunk)])
                log_likelihood[chosen] = torch.nan_to_num(self._log_likelihood(simulated, targets), nan=-torch.inf)
                data[chosen] = simulated
        self.evaluations += int(chosen.sum())
        shape = latent.shape[:-1]
        zeros = torch.zeros_like(latent)
        return ChainState(latent.detach().clone(), log_likelihood.reshape(shape), zeros,
                          log_prior.reshape(shape), zeros.clone(), data.reshape(*shape, -1))
