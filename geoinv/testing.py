"""Contract checks a forward operator must pass (as pylops ships ``dottest`` and deepinv ``adjointness_test``).

Run :func:`check_forward` on a new operator before registering it; geoinv's
own contract tests run it over every registered forward.
"""

from __future__ import annotations

import numpy as np
import torch

from ._typing import DataIndex
from .forward.base import ForwardOperator

__all__ = ["check_forward", "smooth_slowness"]


def smooth_slowness(operator: ForwardOperator, batch: int = 2, velocity: float = 0.07e9,
                    contrast: float = 0.15, generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth positive slowness models (s/m) on an operator's grid, ``(batch, nz, nx)`` float64.

    ``velocity`` (m/s) times ``1 ± contrast`` in random smooth patterns, so that
    derivative checks do not sit on a homogeneous medium's symmetries.
    """
    if not 0 <= contrast < 1:
        raise ValueError(f"contrast must lie in [0, 1), got {contrast!r}")
    return 1 / (velocity * (1 + contrast * _smooth_pattern(operator, batch, generator)))


def _smooth_pattern(operator: ForwardOperator, batch: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random smooth fields in [−1, 1] on the operator's grid, one or two periods across it."""
    grid = operator.grid
    phases = torch.rand(batch, 4, generator=generator, dtype=torch.float64).numpy()
    zz, xx = np.meshgrid(grid.z_centers, grid.x_centers, indexing="ij")
    extent = max(grid.shape[0] * grid.spacing[0], grid.shape[1] * grid.spacing[1])
    fields = [np.sin(2 * np.pi * (zz / extent * (1 + p[0]) + p[1])) * np.cos(2 * np.pi * (xx / extent * (1 + p[2])
              + p[3])) for p in phases]
    return torch.as_tensor(np.stack(fields), dtype=torch.float64)


def _relative(value, reference) -> float:
    value, reference = (torch.as_tensor(np.asarray(v)).double() for v in (value, reference))
    if value.shape != reference.shape:
        return float("inf")  # a wrong shape fails the check that compares them
    return float((value - reference).norm() / reference.norm().clamp_min(1e-300))


class _Checker:
    def __init__(self, operator: ForwardOperator, results: dict) -> None:
        self.name = type(operator).__name__
        self.results = results

    def __call__(self, check: str, error: float, tolerance: float, hint: str) -> None:
        self.results[check] = error
        if not error <= tolerance:  # also catches NaN
            raise AssertionError(f"check_forward({self.name}): {check} failed: relative error {error:.3g} > "
                                 f"{tolerance:.3g}. {hint}")


def check_forward(operator: ForwardOperator, slowness: torch.Tensor | None = None, *,
                  data_index: DataIndex = None, generator: torch.Generator | None = None, rtol: float = 1e-8,
                  fd_step: float = 2e-2, fd_rtol: float = 0.1, kinks: float = 0.1) -> dict[str, float]:
    """Check that an operator honours the forward contract; raise ``AssertionError`` naming what failed.

    Parameters
    ----------
    operator : ForwardOperator
        The operator to check.
    slowness : torch.Tensor, shape (B, nz, nx), optional
        Models (s/m) at which to check, ``B ≥ 2``; default two smooth random
        models at radar velocities (:func:`smooth_slowness`).
    data_index : array_like of int, optional
        Data subset for the subset checks; default an unordered subset with a
        repeat that spans several sources.
    generator : torch.Generator, optional
        Random source of the test vectors (default seed 0).
    rtol : float
        Tolerance of the identities that hold to round-off.
    fd_step : float
        Relative size of the finite-difference step (times the model's scale).
    fd_rtol : float
        Tolerance of the finite-difference comparison, per datum relative to
        the largest change of a model's data. Loose on purpose: scikit-fmm's
        second-order stencil switches order with small jumps in the times
        (~1e-4 of them), so on small grids the eikonal's exact derivative
        meets central differences to 2–9 %; a wrong derivative (a factor, a
        sign, a permutation) misses by 50 % or more.
    kinks : float
        Fraction of the data of a nonlinear operator allowed to miss ``fd_rtol``:
        first arrivals are only piecewise smooth (the eikonal's upwind stencil
        and the source cell switch, Dijkstra's paths jump), so a datum may sit
        on a kink. Linear operators get none.

    Returns
    -------
    dict
        Relative error of every check, by name.

    Notes
    -----
    Checks, in order: shapes, dtype and batching (a batch equals its models
    one by one); ``data_index`` equals slicing for the forward, :meth:`vjp`,
    :meth:`jvp` and :meth:`jacobian`; the derivative dot test
    ``⟨w, J v⟩ = ⟨Jᵀ w, v⟩``; backward equals :meth:`vjp`; :meth:`jacobian`
    equals :meth:`jvp` and :meth:`vjp`; :meth:`jvp` against central finite
    differences; and for linear operators the dot test of
    :meth:`matvec`/:meth:`adjoint` on signed vectors and ``F(s) = J s``.

    Examples
    --------
    >>> from geoinv import Grid2D, Survey, StraightRay
    >>> from geoinv.testing import check_forward
    >>> errors = check_forward(StraightRay(Grid2D((12, 8), 0.5), Survey.crosshole(0.0, 4.0, [1.0, 2.5, 4.0])))
    >>> errors["derivative dot test"] < 1e-8
    True
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    slowness = smooth_slowness(operator, 2, generator=generator) if slowness is None else torch.as_tensor(slowness)
    if slowness.ndim != 3 or slowness.shape[0] < 2:
        raise ValueError("check_forward needs a batch of at least two models, shape (B, nz, nx)")
    results: dict[str, float] = {}
    check = _Checker(operator, results)
    n_data = operator.n_data
    index = _default_index(operator) if data_index is None else np.asarray(data_index)

    with torch.no_grad():
        times = operator(slowness)
    if tuple(times.shape) != (slowness.shape[0], n_data) or times.dtype != slowness.dtype:
        raise AssertionError(f"check_forward({check.name}): forward returned {tuple(times.shape)} {times.dtype}, "
                             f"expected {(slowness.shape[0], n_data)} {slowness.dtype}")
    with torch.no_grad():
        one_by_one = torch.stack([operator(model) for model in slowness])
    check("batching", _relative(times, one_by_one), rtol, "A batch must equal its models simulated one by one.")

    cotangent = torch.randn(slowness.shape[0], n_data, generator=generator, dtype=torch.float64)
    tangent = torch.randn(slowness.shape, generator=generator, dtype=torch.float64) * slowness
    _check_subsets(operator, check, slowness, times, cotangent, tangent, index, rtol)
    _check_derivatives(operator, check, slowness, cotangent, tangent, rtol)
    _check_finite_differences(operator, check, slowness, fd_step, fd_rtol, kinks, generator)
    if operator.linear:
        _check_linear(operator, check, slowness, generator, rtol)
    return results


def _default_index(operator: ForwardOperator) -> np.ndarray:
    n = operator.n_data
    picks = [n - 1, 0, n // 2, n // 3, n // 3]  # unordered, repeated, spread over sources
    return np.asarray(picks if n > 2 else [n - 1, 0, 0])


def _check_subsets(operator, check, slowness, times, cotangent, tangent, index, rtol) -> None:
    hint = "The data in data_index, in that order, must equal the full data sliced."
    with torch.no_grad():
        check("forward data_index", _relative(operator(slowness, index), times[:, index]), rtol, hint)
        full_jvp = operator.jvp(slowness, tangent)
        check("jvp data_index", _relative(operator.jvp(slowness, tangent, index), full_jvp[:, index]), rtol, hint)
        picked = cotangent[:, : len(index)]
        scattered = torch.zeros_like(cotangent).index_add_(1, torch.as_tensor(index), picked)
        check("vjp data_index", _relative(operator.vjp(slowness, picked, index), operator.vjp(slowness, scattered)),
              rtol, "vjp on a subset must equal vjp of the cotangent scattered into the full data.")
    jacobian = operator.jacobian(slowness[0])
    check("jacobian data_index", _relative(operator.jacobian(slowness[0], index).toarray(),
                                           jacobian.toarray()[index]), rtol, hint)


def _check_derivatives(operator, check, slowness, cotangent, tangent, rtol) -> None:
    with torch.no_grad():
        forward_mode = operator.jvp(slowness, tangent)
        reverse_mode = operator.vjp(slowness, cotangent)
    lhs = (cotangent * forward_mode).sum(dim=1)
    rhs = (reverse_mode * tangent).sum(dim=(1, 2))
    check("derivative dot test", _relative(lhs, rhs), rtol,
          "<w, J v> must equal <Jᵀ w, v>: _jvp and _vjp are not transposes of each other.")
    model = slowness.clone().requires_grad_(True)
    (operator(model) * cotangent).sum().backward()
    check("backward == vjp", _relative(model.grad, reverse_mode), rtol,
          "loss.backward() must apply vjp (the one autograd bridge).")
    jacobian = operator.jacobian(slowness[0])
    flat_tangent = tangent[0].reshape(-1).numpy()
    check("jacobian == jvp", _relative(jacobian @ flat_tangent, forward_mode[0]), rtol,
          "jacobian() must be the matrix of jvp.")
    check("jacobian == vjp", _relative(jacobian.T @ cotangent[0].numpy(), reverse_mode[0].reshape(-1)), rtol,
          "jacobian() transposed must be the matrix of vjp.")
    directions = torch.stack([tangent.double(), slowness.double()], dim=-1).reshape(slowness.shape[0], -1, 2).numpy()
    kernels = operator.jacobians(slowness)
    check("jacobians == jacobian", _relative(kernels[0].toarray(), jacobian.toarray()), rtol,
          "jacobians(batch) must hold each model's jacobian().")
    expected = np.stack([kernel @ model_directions for kernel, model_directions in zip(kernels, directions)])
    check("jacobian_products == jacobians @ tangents",
          _relative(operator.jacobian_products(slowness, directions), expected), rtol,
          "jacobian_products(batch, tangents) must be each model's jacobian times its tangents.")


def _check_finite_differences(operator, check, slowness, step, tolerance, kinks, generator) -> None:
    direction = _smooth_pattern(operator, slowness.shape[0], generator) * slowness * step  # relative, ±step
    with torch.no_grad():
        finite = (operator(slowness + direction) - operator(slowness - direction)) / 2
        analytic = operator.jvp(slowness, direction)
    scale = analytic.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    errors = ((analytic - finite).abs() / scale).reshape(-1).numpy()
    allowed = 0.0 if operator.linear else kinks
    check("jvp vs finite differences", float(np.quantile(errors, 1 - allowed)), tolerance,
          f"jvp must be the derivative of the forward (all but {allowed:.0%} of the data may sit on a kink).")


def _check_linear(operator, check, slowness, generator, rtol) -> None:
    model = torch.randn(slowness.shape, generator=generator, dtype=torch.float64)
    data = torch.randn(slowness.shape[0], operator.n_data, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        lhs = (operator.matvec(model) * data).sum()
        rhs = (model * operator.adjoint(data)).sum()
    check("linear dot test", _relative(lhs, rhs), rtol, "<A x, y> must equal <x, Aᵀ y> (matvec vs adjoint).")
    matrix = operator.jacobian(slowness[0])
    with torch.no_grad():
        times = operator(slowness[1])
    check("linear F(s) == J s", _relative(matrix @ slowness[1].reshape(-1).numpy(), times), rtol,
          "a linear operator's traveltimes must be its Jacobian times the slowness, at any model.")
