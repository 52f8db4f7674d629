"""Randomize-then-optimize: independent posterior draws from repeated solves, corrected exactly.

For a latent posterior with a standard-normal prior, ``p(z) ∝ exp(−½‖r(z)‖²)`` with the stacked
residual ``r(z) = [(F(z) − d)/σ ; z]``. Fix ``Q̄``, orthonormal columns spanning the residual's
Jacobian ``J_r(z̄)`` at a point ``z̄`` near the mode (a thin QR). For ``ξ ~ N(0, I_n)`` the solution
``z`` of the ``n`` equations ``Q̄ᵀ r(z) = ξ`` has the density
``q(z) ∝ |det(Q̄ᵀ J_r(z))| exp(−½‖Q̄ᵀ r(z)‖²)``, so the weight::

    w(z) = p(z) / q(z) ∝ |det(Q̄ᵀ J_r(z))|⁻¹ exp(−½‖r(z)‖² + ½‖Q̄ᵀ r(z)‖²)

makes the draws exact in an independence Metropolis-Hastings chain (Bardsley, Solonen, Haario and
Laine 2014, SIAM J. Sci. Comput. 36(4), A1895–A1910). On a linear forward the weight is constant
and every draw is accepted; the more the forward bends within the posterior, the more the
weights spread. Draws are independent of each other, so they parallelise and need no warm-up:
what a gradient chain mixing in a curved basin lacks. It assumes one solution per ``ξ`` (one
basin around ``z̄``): start ``z̄`` in the basin the search found.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import require_count
from ..errors import ConfigError
from ..problem import InverseProblem

__all__ = ["RTOConfig", "RTODraws", "independence_chains", "rto_draws"]

#: step lengths tried along each Newton direction (all at once, as one batch)
_STEP_LENGTHS = (1.0, 0.5, 0.25, 0.125)


@dataclass(frozen=True)
class RTOConfig:
    """Settings of :func:`rto_draws`.

    Parameters
    ----------
    iterations : int
        Newton iterations per draw at most.
    tolerance : float
        A solve has converged when ``‖Q̄ᵀ r(z) − ξ‖ ≤ tolerance`` (whitened units, against ``ξ`` of
        norm about ``√n``; the weights assume the equations hold). A float32 decoder stalls the
        gap near 1e-4 on the reference survey.
    """

    iterations: int = 30
    tolerance: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "iterations", require_count(self.iterations, "iterations", error=ConfigError,
                                                             meaning="Newton iterations per draw"))
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance must be in (0, 1) (whitened units), got {self.tolerance!r}")


@dataclass
class RTODraws:
    """Draws of :func:`rto_draws` and their importance weights.

    Attributes
    ----------
    latent : torch.Tensor, shape (N, n)
    log_weight : torch.Tensor, shape (N,)
        ``log w`` up to a constant, float64; ``-inf`` where a solve did not converge.
    converged : torch.Tensor, shape (N,), bool
    iterations : int
        Newton iterations the batch took.
    """

    latent: torch.Tensor
    log_weight: torch.Tensor
    converged: torch.Tensor
    iterations: int


def _check_standard_normal(problem: InverseProblem) -> None:
    if problem.noise_std is None:
        raise ConfigError("randomize-then-optimize whitens the data by their noise: build the problem with noise_std")
    if not problem.has_log_prior:
        raise ConfigError("randomize-then-optimize needs the prior's log-density: a latent problem (N(0, I)) has it")
    points = torch.randn(3, problem.n_parameters, generator=torch.Generator().manual_seed(0)).to(problem.device)
    zero = torch.zeros(1, problem.n_parameters, device=problem.device)
    difference = (problem.log_prior(points) - problem.log_prior(zero)).double().cpu()
    expected = -0.5 * points.double().cpu().pow(2).sum(dim=1)
    if not torch.allclose(difference, expected, rtol=1e-4, atol=1e-4):
        raise ConfigError("randomize-then-optimize here assumes a standard-normal latent prior N(0, I) (a VAE's); this "
                          "problem's log_prior differs: use latent-mcmc's MALA moves instead")


class _Residual:
    """``r(z) = [(F(z) − d)/σ ; z]``, its projection on ``Q̄`` and the projected Jacobian, for batches."""

    def __init__(self, problem: InverseProblem, target: torch.Tensor, center: torch.Tensor) -> None:
        assert problem.noise_std is not None
        self.problem = problem
        self.target = target.double().cpu().reshape(-1)
        self.sigma = problem.noise_std.double().cpu().expand(problem.n_data)
        n = problem.n_parameters
        jacobian = problem.jacobian(center[None].to(problem.device, torch.float32))[0].double().cpu()
        stacked = torch.cat([jacobian / self.sigma[:, None], torch.eye(n, dtype=torch.float64)])
        self.basis = torch.linalg.qr(stacked).Q  # (n_data + n, n), orthonormal columns
        self.data_basis, self.prior_basis = self.basis[:-n], self.basis[-n:]

    def residual(self, latent: torch.Tensor) -> torch.Tensor:
        """``r(z)``, shape (B, n_data + n), float64."""
        data = self.problem.forward(latent.to(self.problem.device, torch.float32)).double().cpu()
        return torch.cat([(data - self.target) / self.sigma, latent.double()], dim=1)

    def projected_jacobian(self, latent: torch.Tensor) -> torch.Tensor:
        """``Q̄ᵀ J_r(z)``, shape (B, n, n)."""
        jacobian = self.problem.jacobian(latent.to(self.problem.device, torch.float32)).double().cpu()
        return torch.einsum("dk,bdj->bkj", self.data_basis / self.sigma[:, None], jacobian) + self.prior_basis.T


def rto_draws(problem: InverseProblem, center: torch.Tensor, n_draws: int, generator: torch.Generator | None = None,
              config: RTOConfig | None = None, observed: torch.Tensor | None = None) -> RTODraws:
    """Randomize-then-optimize draws of a latent posterior and their weights.

    Parameters
    ----------
    problem : InverseProblem
        A latent problem with a standard-normal prior, a noise level and a Jacobian.
    center : torch.Tensor, shape (n,)
        ``z̄``: a point at (or near) the posterior mode, e.g. the best candidate of a search.
    n_draws : int
        Draws, solved as one batch.
    generator : torch.Generator, optional
        Draws ``ξ``.
    config : RTOConfig, optional
    observed : torch.Tensor, shape (n_data,), optional
        The data (default: the problem's own, one data set).

    Returns
    -------
    RTODraws
    """
    config = config or RTOConfig()
    if n_draws < 1:
        raise ConfigError(f"n_draws must be >= 1, got {n_draws!r}")
    _check_standard_normal(problem)
    target = problem.targets(observed)
    if target.shape[0] != 1:
        raise ConfigError(f"rto_draws samples one data set at a time; got {target.shape[0]}")
    center = torch.as_tensor(center).reshape(-1).double().cpu()
    residual = _Residual(problem, target[0], center)
    xi = torch.randn(n_draws, problem.n_parameters, generator=generator, dtype=torch.float64)
    latent = center.expand(n_draws, -1).clone()
    gap = residual.residual(latent) @ residual.basis - xi
    iterations, stalled = 0, torch.zeros(n_draws, dtype=torch.bool)
    while iterations < config.iterations:
        active = (gap.norm(dim=1) > config.tolerance) & ~stalled
        if not active.any():
            break
        latent[active], gap[active], moved = _newton_step(residual, latent[active], gap[active], xi[active])
        stalled[active] = ~moved  # no step length shortens the gap: no solution near (a fold or a kink)
        iterations += 1
    converged = gap.norm(dim=1) <= config.tolerance
    stacked = residual.residual(latent)
    sign, log_det = torch.linalg.slogdet(residual.projected_jacobian(latent))
    projected = stacked @ residual.basis
    log_weight = -log_det - 0.5 * stacked.pow(2).sum(dim=1) + 0.5 * projected.pow(2).sum(dim=1)
    log_weight = torch.where(converged & (sign != 0) & torch.isfinite(log_weight), log_weight,
                             torch.tensor(-torch.inf, dtype=torch.float64))
    return RTODraws(latent.float(), log_weight, converged, iterations)


def _newton_step(residual: _Residual, latent: torch.Tensor, gap: torch.Tensor, xi: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One damped Newton step on ``Q̄ᵀ r(z) − ξ = 0`` for a batch: the longest of :data:`_STEP_LENGTHS` that
    shortens the gap (the point stays where none does); the new points, gaps, and which moved."""
    direction = torch.linalg.solve(residual.projected_jacobian(latent), gap[..., None])[..., 0]
    lengths = torch.tensor(_STEP_LENGTHS, dtype=torch.float64)
    trials = latent[None] - lengths[:, None, None] * direction[None]  # (L, B, n)
    trial_gaps = (residual.residual(trials.reshape(-1, latent.shape[1])) @ residual.basis).reshape(
        len(_STEP_LENGTHS), *latent.shape) - xi[None]
    norms = trial_gaps.norm(dim=2).nan_to_num(nan=torch.inf)  # (L, B)
    better = norms < gap.norm(dim=1)[None]
    first = torch.where(better.any(dim=0), better.float().argmax(dim=0), torch.full_like(norms[0], -1).long())
    keep = first >= 0
    index = first.clamp(min=0)
    columns = torch.arange(latent.shape[0])
    latent = torch.where(keep[:, None], trials[index, columns], latent)
    gap = torch.where(keep[:, None], trial_gaps[index, columns], gap)
    return latent, gap, keep


def independence_chains(draws: RTODraws, n_chains: int, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Independence Metropolis-Hastings chains over weighted draws: exact posterior samples.

    The draws are dealt to ``n_chains`` chains in order; each chain moves to its next draw with
    probability ``min(1, w_new / w_current)`` and otherwise repeats its state.

    Parameters
    ----------
    draws : RTODraws
        From :func:`rto_draws` (draws that did not converge have weight 0 and are never moved to).
    n_chains : int
        Chains, for split R-hat across them; each gets ``N // n_chains`` draws.
    generator : torch.Generator, optional
        Draws the acceptance uniforms.

    Returns
    -------
    chains : torch.Tensor, shape (n_chains, N // n_chains, n)
    acceptance : torch.Tensor, shape (n_chains,)
        Fraction of moves accepted after each chain's first draw.
    """
    count = draws.latent.shape[0] // n_chains
    if n_chains < 1 or count < 2:
        raise ConfigError(f"n_chains must be >= 1 with at least 2 draws per chain; got {n_chains} chains for "
                          f"{draws.latent.shape[0]} draws")
    latent = draws.latent[:count * n_chains].reshape(n_chains, count, -1)
    log_weight = draws.log_weight[:count * n_chains].reshape(n_chains, count)
    uniform = torch.rand(n_chains, count, generator=generator, dtype=torch.float64)
    chains = latent.clone()
    current, current_weight = latent[:, 0], log_weight[:, 0]
    accepted = torch.zeros(n_chains)
    for step in range(1, count):  # sequential by nature; each step is one vector operation over chains
        ratio = log_weight[:, step] - current_weight
        move = torch.log(uniform[:, step]) < ratio.nan_to_num(nan=-torch.inf)
        current = torch.where(move[:, None], latent[:, step], current)
        current_weight = torch.where(move, log_weight[:, step], current_weight)
        accepted += move.float()
        chains[:, step] = current
    return chains, accepted / (count - 1)
