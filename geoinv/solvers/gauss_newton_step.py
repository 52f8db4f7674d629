"""Batched Levenberg-Marquardt steps in a latent space: the Gauss-Newton stage of latent SGD.

Torch linear algebra on the problem's own Jacobian (:meth:`geoinv.InverseProblem.jacobian`,
the chained sparse Fréchet kernel times the decoder's forward-mode Jacobian for
latent tomography), so it needs no pyGIMLi and runs inside a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..problem import InverseProblem

__all__ = ["LINE_SEARCH", "GaussNewtonStep"]

#: step lengths tried along each Gauss-Newton direction (all at once, as one batch)
LINE_SEARCH = (1.0, 0.5, 0.25)
#: factors on the Levenberg damping after a rejected / an accepted step
_DAMPING_UP, _DAMPING_DOWN = 10.0, 3.0
#: damping above which a start counts as stalled (no direction lowers its objective)
_DAMPING_MAX = 1e8


@dataclass
class _State:
    objective: torch.Tensor  # (B,) χ² + λR at the current points
    residual: torch.Tensor  # (B, n_data) F(z) − d at the current points
    damping: torch.Tensor  # (B,) Levenberg damping, relative to mean(diag JᵀJ)
    active: torch.Tensor  # (B,) bool: still iterating


class GaussNewtonStep:
    """Damped Gauss-Newton iterations on ``φ(z) = ‖(F(z) − d)/σ‖² + λ R(z)`` for a batch of starts.

    Parameters
    ----------
    problem : InverseProblem
        Forward, Jacobian and regularization (full data at every iteration).
    rows : torch.Tensor, shape (B, n_data)
        Observed data of each start.
    regularization : {'ring', 'origin', 'none'}
        ``R``; its Hessian is approximated by ``2I`` (exact for 'origin').
    reg_weight : float
        λ (1 with 'origin' is the MAP of a standard-normal latent prior).
    damping : float
        Initial Levenberg damping μ, relative to the mean diagonal of ``JᵀJ``.
    max_step : float, optional
        Trust radius: a direction longer than this (latent units) is shortened
        to it before the line search.
    min_decrease : float
        A start stops when an accepted step lowers its objective by less than
        this many percent (pyGIMLi's ``dPhi``); 0: only at the noise or a stall.
    shift : torch.Tensor, shape (B, n), optional
        Each start's penalty is ``R(z − shift)``: with ``'origin'`` on a standard-normal latent prior,
        ``‖z − μ − shift‖²``, the perturbed prior mean of randomized maximum likelihood
        (:mod:`geoinv.solvers.rml`).
    stop_at_noise : bool
        Stop a start whose normalised RMSE reaches 1 (needs the problem's noise level). Off for
        randomized maximum likelihood, whose perturbed optimum lies beyond it.

    Notes
    -----
    Each iteration solves ``(JᵀJ + λI + μ·mean(diag JᵀJ)·I) Δ = −(Jᵀr + λ∇R/2)``
    per start, tries ``z + αΔ`` for every α in :data:`LINE_SEARCH` in one
    batched forward, keeps the best if it lowers φ (μ ÷ 3) and otherwise stays
    (μ × 10). A start stops when its normalised RMSE reaches 1 (the discrepancy
    principle: further steps would fit the noise) or it stalls; its Jacobian
    is then no longer computed.
    """

    def __init__(self, problem: InverseProblem, rows: torch.Tensor, regularization: str = "origin",
                 reg_weight: float = 1.0, damping: float = 1e-3, max_step: float | None = None,
                 min_decrease: float = 0.0, shift: torch.Tensor | None = None, stop_at_noise: bool = True) -> None:
        self.problem, self.rows = problem, rows
        if shift is not None and tuple(shift.shape) != (rows.shape[0], problem.n_parameters):
            raise ConfigError(f"shift must be (B, n_parameters) = ({rows.shape[0]}, {problem.n_parameters}), "
                             f"got {tuple(shift.shape)}")
        self.shift = shift
        self.regularization, self.reg_weight = regularization, reg_weight
        noise = problem.noise_std
        self.sigma = (torch.ones(problem.n_data) if noise is None else noise).to(rows.device, rows.dtype)
        self.stop_at_noise = noise is not None and stop_at_noise
        self.initial_damping = damping
        self.max_step = max_step
        self.min_decrease = min_decrease
        self.state: _State | None = None

    def _objective(self, latent: torch.Tensor, rows: torch.Tensor, shift: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """φ and the residuals ``F(z) − d`` of each row of ``latent`` (penalty at ``latent − shift``)."""
        residual = self.problem.forward(latent) - rows
        chi2 = (residual / self.sigma).pow(2).sum(dim=1)
        penalised = latent if shift is None else latent - shift.to(latent.device, latent.dtype)
        return chi2 + self.reg_weight * self.problem.regularization(penalised, self.regularization), residual

    def _shift(self, index: torch.Tensor | None = None, repeats: int = 1) -> torch.Tensor | None:
        if self.shift is None:
            return None
        shift = self.shift if index is None else self.shift[index]
        return shift.repeat(repeats, 1)

    @torch.no_grad()
    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        """One iteration in place on ``latent`` (B, n); returns the RMSE (data unit) of every start."""
        self.begin(latent)
        active = torch.nonzero(self.active).flatten()
        if active.numel():
            self._iterate(latent, active)
        self._stop_fitted()
        return self._started().residual.pow(2).mean(dim=1).sqrt()

    @torch.no_grad()
    def begin(self, latent: torch.Tensor) -> None:
        """Evaluate the starts ``latent`` (B, n) without stepping (the first call does it too)."""
        if self.state is None:
            objective, residual = self._objective(latent, self.rows, self._shift())
            self.state = _State(objective, residual, torch.full_like(objective, self.initial_damping),
                                torch.ones_like(objective, dtype=torch.bool))
            self._stop_fitted()

    @property
    def active(self) -> torch.Tensor:
        """(B,) bool: the starts still iterating."""
        return self._started().active

    def normalised_chi2(self) -> torch.Tensor:
        """χ²/N of every start at its current point (the data term only)."""
        return (self._started().residual / self.sigma).pow(2).mean(dim=1)

    @property
    def damping(self) -> float:
        """Median Levenberg damping over the starts."""
        return float(self.state.damping.median()) if self.state is not None else self.initial_damping

    @property
    def finished(self) -> bool:
        """Whether every start has reached the noise or stalled."""
        return self.state is not None and not bool(self.state.active.any())

    def _started(self) -> _State:
        if self.state is None:
            raise RuntimeError("the Gauss-Newton state is set by the first call")
        return self.state

    def _stop_fitted(self) -> None:
        state = self._started()
        if self.stop_at_noise:
            normalised = (state.residual / self.sigma).pow(2).mean(dim=1).sqrt()
            state.active &= normalised > 1.0

    def _iterate(self, latent: torch.Tensor, active: torch.Tensor) -> None:
        state = self._started()
        points, rows = latent[active], self.rows[active]
        direction = self._direction(points, state.residual[active], state.damping[active], self._shift(active))
        steps = torch.tensor(LINE_SEARCH, dtype=points.dtype, device=points.device)
        trials = points[None] + steps[:, None, None] * direction[None]  # (A, B_active, n)
        objective, residual = self._objective(trials.reshape(-1, points.shape[1]), rows.repeat(len(steps), 1),
                                              self._shift(active, len(steps)))
        objective, residual = objective.reshape(len(steps), -1), residual.reshape(len(steps), len(active), -1)
        best = objective.argmin(dim=0)
        columns = torch.arange(len(active), device=best.device)
        improved = objective[best, columns] < state.objective[active]
        decrease = 100 * (1 - objective[best, columns] / state.objective[active])
        state.active[active[improved & (decrease < self.min_decrease)]] = False
        latent[active[improved]] = trials[best, columns][improved].to(latent.dtype)
        state.objective[active[improved]] = objective[best, columns][improved]
        state.residual[active[improved]] = residual[best, columns][improved]
        damping = state.damping[active]
        state.damping[active] = torch.where(improved, damping / _DAMPING_DOWN, damping * _DAMPING_UP)
        state.active[active] &= state.damping[active] < _DAMPING_MAX

    def _direction(self, points: torch.Tensor, residual: torch.Tensor, damping: torch.Tensor,
                   shift: torch.Tensor | None = None) -> torch.Tensor:
        """The damped Gauss-Newton direction of each point, given its residuals ``F(z) − d`` (float64 solve)."""
        sigma = self.sigma.double().cpu()
        jacobian = self.problem.jacobian(points) / sigma[:, None]  # (B, N, n), float64 CPU
        residual = residual.double().cpu() / sigma
        penalised = points if shift is None else points - shift.to(points.device, points.dtype)
        gradient = jacobian.transpose(1, 2) @ residual[..., None] + self.reg_weight / 2 * self._penalty_gradient(
            penalised)[..., None]
        normal = jacobian.transpose(1, 2) @ jacobian
        scale = normal.diagonal(dim1=1, dim2=2).mean(dim=1)
        identity = torch.eye(points.shape[1], dtype=torch.float64)
        shift = self.reg_weight + damping.double().cpu() * scale
        direction = -torch.linalg.solve(normal + shift[:, None, None] * identity, gradient)[..., 0]
        if self.max_step is not None:
            length = direction.norm(dim=1, keepdim=True)
            direction = direction * torch.clamp(self.max_step / length, max=1.0)
        return direction.to(points.device, points.dtype)

    def _penalty_gradient(self, points: torch.Tensor) -> torch.Tensor:
        """∇R at each point (float64 CPU); zero for 'none'."""
        with torch.enable_grad():
            moving = points.detach().clone().requires_grad_(True)
            penalty = self.problem.regularization(moving, self.regularization).sum()
            if not penalty.requires_grad:
                return torch.zeros(points.shape, dtype=torch.float64)
            return torch.autograd.grad(penalty, moving)[0].double().cpu()
