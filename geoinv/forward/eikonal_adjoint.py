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
    """Nodes scikit-fmm freezes first: on the zero contour or with a neighbour across it."""
    frozen = phi == 0.0
    for axis in (0, 1):
        for shift in (1, -1):
            neighbour = np.roll(phi, shift, axis=axis)
            valid = np.ones_like(phi, dtype=bool)
            edge: list = [slice(None)] * 2
            edge[axis] = 0 if shift == 1 else -1
            valid[tuple(edge)] = False
            frozen |= valid & (phi * neighbour < 0)
    return frozen


def _axis_stencil(raw: np.ndarray, phi: np.ndarray, axis: int, spacing: float):
    """Per node, along one axis: the upwind neighbour, the second neighbour and the coefficients.

    Returns ``(active, first, second, factor2, coefficient, target)``: whether the
    axis enters node i's equation, flat indices of ``v1`` and ``v2`` (−1 if
    first order), the sign applied to ``v2`` (−1 across the contour), ``c_a``
    and ``p_a``.
    """
    index = np.arange(raw.size).reshape(raw.shape)
    big = np.inf
    candidates = []
    for direction in (-1, 1):
        neighbour = np.full(raw.shape, -1)
        beyond = np.full(raw.shape, -1)
        if axis == 0:
            if direction == -1:
                neighbour[1:] = index[:-1]
                beyond[2:] = index[:-2]
            else:
                neighbour[:-1] = index[1:]
                beyond[:-2] = index[2:]
        else:
            if direction == -1:
                neighbour[:, 1:] = index[:, :-1]
                beyond[:, 2:] = index[:, :-2]
            else:
                neighbour[:, :-1] = index[:, 1:]
                beyond[:, :-2] = index[:, 2:]
        value = np.where(neighbour >= 0, raw.ravel()[np.maximum(neighbour, 0)], big)
        candidates.append((neighbour, beyond, value))
    (n_left, b_left, v_left), (n_right, b_right, v_right) = candidates
    use_right = v_right < v_left  # scikit-fmm keeps the first strictly smaller one (left on ties)
    first = np.where(use_right, n_right, n_left)
    beyond = np.where(use_right, b_right, b_left)
    value1 = np.minimum(v_left, v_right)
    active = value1 < raw  # frozen before node i
    flat_raw, flat_phi = raw.ravel(), phi.ravel()
    value2 = np.where(beyond >= 0, flat_raw[np.maximum(beyond, 0)], big)
    second_ok = (beyond >= 0) & (value2 < raw) & (value2 <= value1) & active
    crosses = (flat_phi[np.maximum(beyond, 0)] * flat_phi[np.maximum(first, 0)] < 0) | (
        flat_phi[np.maximum(beyond, 0)] * phi < 0)
    factor2 = np.where(crosses, -1.0, 1.0)
    target = np.where(second_ok, (4 * value1 - factor2 * value2) / 3.0, value1)
    coefficient = np.where(second_ok, _SECOND, 1.0) / spacing**2
    second = np.where(second_ok, beyond, -1)
    return active, first, second, factor2, coefficient, target


def _system(raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray, spacing: tuple[float, float]):
    """``A`` (sparse, ∂G/∂T) and the diagonal of ``B`` (∂G/∂s) of the discrete equations."""
    n = raw.size
    initial = _frozen_initial(phi).ravel()
    rows, cols, values = [], [], []
    diagonal = np.zeros(n)
    for axis in (0, 1):
        active, first, second, factor2, coefficient, target = (
            a.ravel() for a in _axis_stencil(raw, phi, axis, spacing[axis]))
        use = active & ~initial
        slope = 2 * coefficient * (raw.ravel() - target)  # ∂G_i/∂p_a = −slope
        diagonal += np.where(use, slope, 0.0)
        order2 = use & (second >= 0)
        node = np.flatnonzero(use)
        rows.append(node)
        cols.append(first[use])
        values.append(-slope[use] * np.where(order2[use], 4.0 / 3.0, 1.0))
        node2 = np.flatnonzero(order2)
        rows.append(node2)
        cols.append(second[order2])
        values.append(slope[order2] * factor2[order2] / 3.0)
    diagonal[initial] = 1.0
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    values.append(diagonal)
    matrix = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    flat_s = node_slowness.ravel()
    b_diagonal = np.where(initial, -raw.ravel() / flat_s, -2 * flat_s)
    return matrix, b_diagonal


def stencil_residual(raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray,
                     spacing: tuple[float, float]) -> np.ndarray:
    """``Σ c_a (T_i − p_a)² / s_i² − 1`` per node (0 where the reconstructed stencil is scikit-fmm's)."""
    total = np.zeros(raw.size)
    for axis in (0, 1):
        active, _, _, _, coefficient, target = (a.ravel() for a in _axis_stencil(raw, phi, axis, spacing[axis]))
        total += np.where(active, coefficient * (raw.ravel() - target) ** 2, 0.0)
    residual = total / node_slowness.ravel() ** 2 - 1.0
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
    solve is one sparse triangular solve.
    """

    def __init__(self, raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray,
                 spacing: tuple[float, float]) -> None:
        matrix, self.b_diagonal = _system(raw, phi, node_slowness, spacing)
        self.order = np.argsort(raw.ravel(), kind="stable")
        # A in time order is lower triangular, Aᵀ upper
        self._lower = matrix[self.order][:, self.order].tocsr()
        self._upper = self._lower.T.tocsr()

    def solve_transpose(self, rhs: np.ndarray) -> np.ndarray:
        """``A⁻ᵀ rhs`` for ``rhs`` of shape (N,) or (N, k)."""
        permuted = spsolve_triangular(self._upper, rhs[self.order], lower=False)
        solution = np.empty_like(permuted)
        solution[self.order] = permuted
        return solution

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``A⁻¹ rhs`` for ``rhs`` of shape (N,) or (N, k)."""
        permuted = spsolve_triangular(self._lower, rhs[self.order], lower=True)
        solution = np.empty_like(permuted)
        solution[self.order] = permuted
        return solution

    def jvp(self, node_tangent: np.ndarray) -> np.ndarray:
        """``dT`` on the nodes (flat, N) for a slowness change ``ds`` on the nodes: ``−A⁻¹ B ds``."""
        return self.solve(-self.b_diagonal * node_tangent)

    def vjp(self, node_weights: np.ndarray) -> np.ndarray:
        """``(∂(w·T)/∂s_nodes)`` for weights ``w`` on the nodes (flat, N): ``−B A⁻ᵀ w``."""
        return -self.b_diagonal * self.solve_transpose(node_weights)

    def sensitivity(self, receiver_weights: sp.csr_matrix) -> sp.csr_matrix:
        """``∂t/∂s_nodes`` of receiver times ``t = W T``: ``−W A⁻¹ B``, shape (n_receivers, N)."""
        adjoint = self.solve_transpose(np.asarray(receiver_weights.T.todense()))
        return sp.csr_matrix(-(adjoint * self.b_diagonal[:, None]).T)


def discrete_sensitivity(raw: np.ndarray, phi: np.ndarray, node_slowness: np.ndarray,
                         spacing: tuple[float, float], receiver_weights: sp.csr_matrix) -> sp.csr_matrix:
    """``∂t/∂s_nodes`` (m) of receiver times ``t = W T`` of one source (see :class:`DiscreteAdjoint`)."""
    return DiscreteAdjoint(raw, phi, node_slowness, spacing).sensitivity(receiver_weights)
