"""Exact gradient of scikit-fmm's discrete travel times: the adjoint state of its upwind equations.

The fast-marching solution ``T`` satisfies, node by node, the discrete eikonal
equation that scikit-fmm solved when it froze the node:

    Σ_axes c_a (T_i − p_a)² = s_i²,   p_a = v1 (first order) or (4 v1 − v2)/3 (second order)

with ``c_a = 1/h_a²`` (first order) or ``9/(4 h_a²)`` (second order), ``v1`` the
smaller frozen neighbour along the axis and ``v2`` the next one beyond it
(scikit-fmm's ``travelTimeMarcher::updatePointOrderTwo``); nodes next to the
initial contour are ``T_i = d_i s_i``. The stencil each node used is read
back from the final field (a neighbour was frozen before node i iff its time
is smaller). Differentiating ``G(T, s) = 0`` gives ``A dT = −B ds`` with ``A``
triangular in time order; the adjoint ``Aᵀ λ = Wᵀ w`` turns data weights ``w``
into the exact gradient of what the forward computed, up to the points where
the upwind choice switches (where the discrete map is not differentiable).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve_triangular

__all__ = ["DiscreteAdjoint", "discrete_sensitivity", "stencil_residual"]

_SECOND = 9.0 / 4.0


def _frozen_initial(phi: np.ndarray) -> np.ndarray:
    """Nodes scikit-fmm freezes first: on the zero contour or with a neighbour across it.

    ``phi`` has shape ``(..., Nz, Nx)``; leading axes are independent solves.
    """
    frozen = phi == 0.0
    for axis in (-2, -1):
        for shift in (1, -1):
            neighbour = np.roll(phi, shift, axis=axis)
            valid = np.ones_like(phi, dtype=bool)
            edge: list = [slice(None)] * phi.ndim
            edge[axis] = 0 if shift == 1 else -1
            valid[tuple(edge)] = False
            frozen |= valid & (phi * neighbour < 0)
    return frozen


def _shifted(values: np.ndarray, axis: int, offset: int, fill: float) -> np.ndarray:
    """``values`` at the node ``offset`` nodes along ``axis`` from each node (``fill`` off the grid)."""
    result = np.full(values.shape, fill, dtype=values.dtype)
    size = values.shape[axis]
    target: list = [slice(None)] * values.ndim
    source: list = [slice(None)] * values.ndim
    if offset < 0:
        target[axis], source[axis] = slice(-offset, None), slice(None, size + offset)
    else:
        target[axis], source[axis] = slice(None, size - offset), slice(offset, None)
    result[tuple(target)] = values[tuple(source)]
    return result


def _axis_stencil(raw: np.ndarray, phi: np.ndarray, axis: int, spacing: float):
    """Per node, along one axis (−2: rows, −1: columns): the upwind neighbour, the second neighbour
    and the coefficients, for fields of shape ``(..., Nz, Nx)``.

    Returns ``(active, step, second_ok, factor2, coefficient, target)``: whether the
    axis enters node i's equation, the flat offset of ``v1`` from node i (``v2``
    lies at twice it), whether ``v2`` enters (second order), the sign applied to
    ``v2`` (−1 across the contour), ``c_a`` and ``p_a``.
    """
    stride = int(np.prod(raw.shape[axis:][1:]))
    left, right = (_shifted(raw, axis, offset, np.inf) for offset in (-1, 1))
    use_right = right < left  # scikit-fmm keeps the first strictly smaller one (left on ties)
    value1 = np.minimum(left, right)
    value2 = np.where(use_right, _shifted(raw, axis, 2, np.inf), _shifted(raw, axis, -2, np.inf))
    phi1 = np.where(use_right, _shifted(phi, axis, 1, 0.0), _shifted(phi, axis, -1, 0.0))
    phi2 = np.where(use_right, _shifted(phi, axis, 2, 0.0), _shifted(phi, axis, -2, 0.0))
    active = value1 < raw  # frozen before node i
    second_ok = np.isfinite(value2) & (value2 < raw) & (value2 <= value1) & active
    factor2 = np.where((phi2 * phi1 < 0) | (phi2 * phi < 0), -1.0, 1.0)
    target = np.where(second_ok, (4 * value1 - factor2 * value2) / 3.0, value1)
    coefficient = np.where(second_ok, _SECOND, 1.0) / spacing**2
    step = np.where(use_right, stride, -stride)
    return active, step, second_ok, factor2, coefficient, target


def _system(raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray, spacing: tuple[float, float]):
    """``A`` (∂G/∂T) as its diagonal and its off-diagonal COO triplets ``(rows, cols, values)`` over the
    flat nodes, and the diagonal of ``B`` (∂G/∂s)."""
    n = raw.size
    initial = _frozen_initial(phi).ravel()
    flat_raw = raw.ravel()
    rows, cols, values = [], [], []
    diagonal = np.zeros(n)
    node = np.arange(n)
    for axis in (-2, -1):
        active, step, second_ok, factor2, coefficient, target = (
            a.ravel() for a in _axis_stencil(raw, phi, axis, spacing[axis]))
        use = active & ~initial
        slope = 2 * coefficient * (flat_raw - target)  # ∂G_i/∂p_a = −slope
        diagonal += np.where(use, slope, 0.0)
        order2 = use & second_ok
        rows.append(node[use])
        cols.append(node[use] + step[use])
        values.append(-slope[use] * np.where(order2[use], 4.0 / 3.0, 1.0))
        rows.append(node[order2])
        cols.append(node[order2] + 2 * step[order2])
        values.append(slope[order2] * factor2[order2] / 3.0)
    diagonal[initial] = 1.0
    flat_s = np.broadcast_to(node_slowness, raw.shape).ravel()
    b_diagonal = np.where(initial, -flat_raw / flat_s, -2 * flat_s)
    return diagonal, (np.concatenate(rows), np.concatenate(cols), np.concatenate(values)), b_diagonal


def _divide_rows(values: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    return values / divisor.reshape(-1, *([1] * (values.ndim - 1)))


def stencil_residual(raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray,
                     spacing: tuple[float, float]) -> np.ndarray:
    """``Σ c_a (T_i − p_a)² / s_i² − 1`` per node (0 where the reconstructed stencil is scikit-fmm's)."""
    total = np.zeros(raw.size)
    for axis in (-2, -1):
        active, _, _, _, coefficient, target = (a.ravel() for a in _axis_stencil(raw, phi, axis, spacing[axis]))
        total += np.where(active, coefficient * (raw.ravel() - target) ** 2, 0.0)
    residual = total / np.broadcast_to(node_slowness, raw.shape).ravel() ** 2 - 1.0
    residual[_frozen_initial(phi).ravel()] = 0.0
    return residual.reshape(raw.shape)


class DiscreteAdjoint:
    """The linearised discrete eikonal system of one scikit-fmm solve, ready for adjoint solves.

    Parameters
    ----------
    raw : numpy.ndarray, shape (Nz, Nx)
        scikit-fmm's travel times (positive on both sides of the contour), s —
        exactly as returned: the stencil is read back from them.
    phi : numpy.ndarray, shape (Nz, Nx)
        The level set given to scikit-fmm.
    node_slowness : numpy.ndarray, shape (Nz, Nx)
        Slowness at the nodes, s/m.
    spacing : tuple of float
        Node spacing (row, column) in m.

    Notes
    -----
    ``A`` is lower triangular once nodes are sorted by time, so each adjoint
    solve is one sparse triangular solve. One solve per source is faster than
    one block-diagonal solve over all sources (measured: 0.10 s against 0.15 s
    for the reference survey's 25 sources; the small arrays stay in cache).
    """

    def __init__(self, raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray,
                 spacing: tuple[float, float]) -> None:
        diagonal, (rows, cols, values), self.b_diagonal = _system(raw, phi, node_slowness, spacing)
        self.order = np.argsort(raw.ravel(), kind="stable")
        rank = np.empty_like(self.order)
        rank[self.order] = np.arange(self.order.size)
        # rows scaled to a unit diagonal (A = D L̃), so SuperLU's triangular solves need no rescaling;
        # in time order L̃ is lower triangular, and its CSR transpose is L̃ᵀ in CSC, which SuperLU takes as is
        self._diagonal = diagonal[self.order]
        unit = np.arange(raw.size)
        self._lower = sp.csr_matrix((np.concatenate([values / diagonal[rows], np.ones(raw.size)]),
                                     (np.concatenate([rank[rows], unit]), np.concatenate([rank[cols], unit]))),
                                    shape=(raw.size, raw.size))
        self._lower.sort_indices()

    def solve_transpose(self, rhs: np.ndarray) -> np.ndarray:
        """``A⁻ᵀ rhs`` for ``rhs`` of shape (N,) or (N, k)."""
        # Aᵀ λ = r  ⇔  L̃ᵀ (D λ) = r
        permuted = spsolve_triangular(self._lower.T, rhs[self.order], lower=False, unit_diagonal=True)
        solution = np.empty_like(permuted)
        solution[self.order] = _divide_rows(permuted, self._diagonal)
        return solution

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``A⁻¹ rhs`` for ``rhs`` of shape (N,) or (N, k)."""
        permuted = spsolve_triangular(self._lower, _divide_rows(rhs[self.order], self._diagonal), lower=True,
                                      unit_diagonal=True)
        solution = np.empty_like(permuted)
        solution[self.order] = permuted
        return solution

    def jvp(self, node_tangent: np.ndarray) -> np.ndarray:
        """``dT`` on the nodes (flat) for a slowness change ``ds`` on the nodes: ``−A⁻¹ B ds``."""
        return self.solve(-self.b_diagonal * node_tangent)

    def vjp(self, node_weights: np.ndarray) -> np.ndarray:
        """``(∂(w·T)/∂s_nodes)`` for weights ``w`` on the nodes (flat): ``−B A⁻ᵀ w``."""
        return -self.b_diagonal * self.solve_transpose(node_weights)

    def sensitivity(self, receiver_weights: sp.csr_matrix) -> sp.csr_matrix:
        """``∂t/∂s_nodes`` of receiver times ``t = W T``: ``−W A⁻¹ B``, shape (n_receivers, N)."""
        adjoint = self.solve_transpose(np.asarray(receiver_weights.T.todense()))
        return sp.csr_matrix(-(adjoint * self.b_diagonal[:, None]).T)


def discrete_sensitivity(raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray,
                         spacing: tuple[float, float], receiver_weights: sp.csr_matrix) -> sp.csr_matrix:
    """``∂t/∂s_nodes`` (m) of receiver times ``t = W T`` of one source (see :class:`DiscreteAdjoint`)."""
    return DiscreteAdjoint(raw, phi, node_slowness, spacing).sensitivity(receiver_weights)
