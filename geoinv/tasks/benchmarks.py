"""Benchmark inverse problems of the deep-inversion papers, as InverseProblems.

Definitions follow the public reference code of Ren, Padilla & Malof,
"Benchmarking deep inverse models over time, and the neural-adjoint method"
(seed 001) and the x² problem of Rivera, Pardo & Alberdi (seed 000).
"""

from __future__ import annotations

import copy
import math

import torch

from ..problem import InverseProblem

__all__ = ["ballistics", "quadratic", "quadratic_reduced", "robotic_arm", "sine_wave"]


def _uniform(low: torch.Tensor, high: torch.Tensor):
    def sample(n: int, generator=None) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, low.numel(), generator=generator)

    return sample


def _box_log_density(low: torch.Tensor, high: torch.Tensor):
    """0 inside the box, −inf outside (a uniform prior's log-density up to a constant)."""
    def log_density(x: torch.Tensor) -> torch.Tensor:
        inside = ((x >= low.to(x)) & (x <= high.to(x))).all(dim=1)
        return torch.where(inside, 0.0, -torch.inf).to(x) + 0.0 * x.sum(dim=1)

    return log_density


def quadratic(n_train: int = 1000) -> InverseProblem:
    """y = x², x ∈ [−33, 33] (seed 000): non-injective, two branches ±√y.

    The training set is ``n_train`` equidistant x in [−33, 33].
    """
    low, high = torch.tensor([-33.0]), torch.tensor([33.0])

    def simulate(x: torch.Tensor) -> torch.Tensor:
        return x.pow(2)

    x = torch.linspace(-33.0, 33.0, n_train)[:, None]
    return InverseProblem(simulate, 1, 1, _uniform(low, high), torch.zeros(1), torch.tensor([66.0]),
                          name="quadratic", training_data=(x, x.pow(2)), log_prior=_box_log_density(low, high),
                          # y values on which the inverse terms are trained
                          inverse_targets=torch.linspace(0.0, 1089.0, 1000)[:, None])


def quadratic_reduced() -> InverseProblem:
    """The x² problem with only three forward samples {(−33, 1089), (1, 1), (33, 1089)} (seed 000)."""
    problem = copy.copy(quadratic())
    x = torch.tensor([[-33.0], [1.0], [33.0]])
    problem.training_data = (x, x.pow(2))
    problem.name = "quadratic-reduced"
    return problem


# Ballistics constants of the reference code: drag k, gravity g, mass m.
_K, _G, _M = 0.25, 9.81, 0.2


def _ballistic_height(t, x2, v2):
    decay = torch.exp(-_K * t / _M) - 1.0
    return x2 - (_M / _K**2) * ((_G * _M + v2 * _K) * decay + _G * t * _K)


def _landing_time(x2: torch.Tensor, v2: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """Root t > 0 of height(t) = 0 by vectorized bisection (no gradient)."""
    with torch.no_grad():
        low = torch.zeros_like(x2)
        high = torch.ones_like(x2)
        for _ in range(40):  # grow the bracket until the ball is below ground
            above = _ballistic_height(high, x2, v2) > 0
            if not above.any():
                break
            high = torch.where(above, 2 * high, high)
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            above = _ballistic_height(mid, x2, v2) > 0
            low, high = torch.where(above, mid, low), torch.where(above, high, mid)
        return 0.5 * (low + high)


def ballistics() -> InverseProblem:
    """Ballistics (D1): x = (x1, x2, angle, speed) ∈ R⁴ → landing position y ∈ R.

    A ball thrown from (x1, x2) at angle x3 (rad) with speed x4 under gravity
    with linear drag (k = 0.25, g = 9.81, m = 0.2); y is the horizontal position
    where its height returns to 0. Priors: x1 ~ N(0, 0.25²), x2 ~ N(1.5, 0.25²),
    x3 ~ U(9°, 72°), x4 ~ Poisson(15), as in the reference code of seed 001.

    Notes
    -----
    The landing time is found by bisection without gradient, then one Newton
    step with gradient makes ``∂t/∂x`` the implicit-function derivative, so the
    forward is differentiable.
    """
    def simulate(x: torch.Tensor) -> torch.Tensor:
        x1, x2, angle, speed = x.unbind(dim=1)
        v1, v2 = speed * torch.cos(angle), speed * torch.sin(angle)
        landing = _landing_time(x2, v2)
        height = _ballistic_height(landing, x2, v2)
        slope = -(_M / _K**2) * ((_G * _M + v2 * _K) * (-_K / _M) * torch.exp(-_K * landing / _M) + _G * _K)
        landing = landing - height / slope.detach()
        decay = torch.exp(-_K * landing / _M) - 1.0
        return (x1 - v1 * (_M / _K) * decay)[:, None]

    def sample(n: int, generator=None) -> torch.Tensor:
        normal = torch.randn(n, 2, generator=generator) * 0.25 + torch.tensor([0.0, 1.5])
        angle = math.radians(9) + (math.radians(72) - math.radians(9)) * torch.rand(n, 1, generator=generator)
        speed = torch.poisson(torch.full((n, 1), 15.0), generator=generator)
        return torch.cat([normal, angle, speed], dim=1)

    return InverseProblem(simulate, 4, 1, sample, name="ballistics")


def sine_wave(grid_points: int = 100) -> InverseProblem:
    """Sine wave (D2): y = sin(3π x1) + cos(3π x2), x ∈ [−1, 1]².

    Training set: a ``grid_points × grid_points`` uniform grid, as in seed 001.
    """
    low, high = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 1.0])

    def simulate(x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(3 * math.pi * x[:, 0]) + torch.cos(3 * math.pi * x[:, 1]))[:, None]

    axis = torch.linspace(-1, 1, grid_points)
    x = torch.cartesian_prod(axis, axis)
    return InverseProblem(simulate, 2, 1, _uniform(low, high), torch.zeros(2), torch.full((2,), 2.0),
                          name="sine-wave", training_data=(x, simulate(x)), log_prior=_box_log_density(low, high))


_ARM_LENGTHS = (0.5, 0.5, 1.0)


def robotic_arm() -> InverseProblem:
    """Robotic arm (D3): x ∈ R⁴ → end point y ∈ R².

    Start at (0, x1); segments of lengths 0.5, 0.5, 1.0 with cumulative joint
    angles a1 = x2, a2 = x2 + x3, a3 = x2 + x3 + x4 (the INN benchmark of
    Ardizzone et al. 2019); prior x ~ N(0, diag(1/16, 1/4, 1/4, 1/4)).

    Notes
    -----
    Seed 001's script composes the angles differently (a2 = x3 − x2,
    a3 = x4 − x3 − x2); the cumulative form here is the original benchmark's.
    """
    std = torch.tensor([0.25, 0.5, 0.5, 0.5])

    def simulate(x: torch.Tensor) -> torch.Tensor:
        angles = torch.cumsum(x[:, 1:], dim=1)
        lengths = torch.tensor(_ARM_LENGTHS, dtype=x.dtype, device=x.device)
        horizontal = (lengths * torch.cos(angles)).sum(dim=1)
        vertical = x[:, 0] + (lengths * torch.sin(angles)).sum(dim=1)
        return torch.stack([horizontal, vertical], dim=1)

    def sample(n: int, generator=None) -> torch.Tensor:
        return torch.randn(n, 4, generator=generator) * std

    def log_density(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * (x / std.to(x)).pow(2).sum(dim=1)

    return InverseProblem(simulate, 4, 2, sample, torch.zeros(4), 2 * 1.96 * std, name="robotic-arm",
                          log_prior=log_density)
