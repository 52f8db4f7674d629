"""Straight-ray traveltime operator with exact ray–cell lengths (Siddon traversal)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .._typing import DataIndex, TensorLike
from ..grid import Grid2D
from ..survey import Survey
from .base import ForwardOperator
from .sparse import TorchSparse

__all__ = ["StraightRay", "ray_length_matrix"]

_EDGE_TOL = 1e-9  # in cell units: a ray closer than this to an edge runs along it


def _crossing_parameters(start: np.ndarray, stop: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Ray parameters t ∈ (0, 1) where each ray crosses the given edge positions (NaN elsewhere)."""
    delta = stop - start
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (edges[None, :] - start[:, None]) / delta[:, None]
    t[~np.isfinite(t) | (t <= 0.0) | (t >= 1.0)] = np.nan
    return t


def _cell_pair(coordinate: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The cell(s) a fractional cell coordinate falls in: two neighbours if it sits on an edge."""
    nearest = np.round(coordinate)
    on_edge = np.abs(coordinate - nearest) < _EDGE_TOL
    low = np.where(on_edge, nearest - 1, np.floor(coordinate))
    high = np.where(on_edge, nearest, np.floor(coordinate))
    return (np.clip(low, 0, n_cells - 1).astype(np.int64),
            np.clip(high, 0, n_cells - 1).astype(np.int64))


def ray_length_matrix(grid: Grid2D, sources: np.ndarray, receivers: np.ndarray) -> sp.csr_matrix:
    """Exact length (m) of each straight ray inside each cell.

    Parameters
    ----------
    grid : Grid2D
        The model grid.
    sources, receivers : numpy.ndarray, shape (n_rays, 2)
        Ray end points ``(x, z)`` in m, inside the grid.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_rays, nz·nx)
        Row ``i`` holds the lengths of ray ``i`` in each cell (row-major cells);
        it sums to the ray's length to round-off.

    Notes
    -----
    All rays are traversed at once (Siddon 1985): the parameters at which a ray
    crosses every x and z edge are sorted, each interval between consecutive
    crossings lies in one cell, found from its midpoint. A segment running
    exactly along a cell edge is split half-and-half between the two cells that
    share the edge (all of it to the inner cell on the grid boundary), so
    results do not depend on round-off in the sensor positions.
    """
    sources = np.asarray(sources, dtype=float)
    receivers = np.asarray(receivers, dtype=float)
    crossings = np.concatenate([_crossing_parameters(sources[:, 0], receivers[:, 0], grid.x_edges),
                                _crossing_parameters(sources[:, 1], receivers[:, 1], grid.z_edges)], axis=1)
    return segment_cell_lengths(grid, sources, receivers, crossings, np.arange(len(sources)), len(sources))


def short_segment_lengths(grid: Grid2D, starts: np.ndarray, ends: np.ndarray,
                          ray_index: np.ndarray, n_rays: int) -> sp.csr_matrix:
    """Like :func:`ray_length_matrix` for segments no longer than one cell, summed per ray.

    A segment shorter than a cell crosses at most one x edge and one z edge, so
    only those two crossings are computed (the ray tracer of the eikonal operator
    produces hundreds of thousands of such segments).
    """
    crossings = []
    for axis, origin, spacing in ((0, grid.origin[1], grid.spacing[1]), (1, grid.origin[0], grid.spacing[0])):
        a = (starts[:, axis] - origin) / spacing
        b = (ends[:, axis] - origin) / spacing
        edge = np.maximum(np.floor(a), np.floor(b))
        crossings.append(_single_crossing(a, b, edge))
    return segment_cell_lengths(grid, starts, ends, np.stack(crossings, axis=1), ray_index, n_rays)


def _single_crossing(a: np.ndarray, b: np.ndarray, edge: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (edge - a) / (b - a)
    t[~np.isfinite(t) | (t <= 0.0) | (t >= 1.0)] = np.nan
    return t


def segment_cell_lengths(grid: Grid2D, starts: np.ndarray, ends: np.ndarray, crossings: np.ndarray,
                         ray_index: np.ndarray, n_rays: int) -> sp.csr_matrix:
    """Split straight segments at the given crossing parameters and sum lengths per (ray, cell).

    Parameters
    ----------
    starts, ends : numpy.ndarray, shape (n_segments, 2)
        Segment end points ``(x, z)`` in m.
    crossings : numpy.ndarray, shape (n_segments, k)
        Parameters in (0, 1) where each segment crosses a cell edge; NaN pads.
    ray_index : numpy.ndarray of int, shape (n_segments,)
        The ray (matrix row) each segment belongs to.
    n_rays : int
        Number of matrix rows.
    """
    n_segments = len(starts)
    bounds = np.tile([0.0, 1.0], (n_segments, 1))
    t = np.sort(np.concatenate([bounds, crossings], axis=1), axis=1)  # NaN sorts last
    lengths = np.linalg.norm(ends - starts, axis=1)
    piece = np.diff(t, axis=1) * lengths[:, None]
    mid_t = 0.5 * (t[:, 1:] + t[:, :-1])
    valid = np.isfinite(piece) & (piece > 0)
    segment_index = np.broadcast_to(np.arange(n_segments)[:, None], piece.shape)[valid]
    piece, mid_t = piece[valid], mid_t[valid]
    start, stop = starts[segment_index], ends[segment_index]
    mid_x = start[:, 0] + mid_t * (stop[:, 0] - start[:, 0])
    mid_z = start[:, 1] + mid_t * (stop[:, 1] - start[:, 1])
    col_low, col_high = _cell_pair((mid_x - grid.origin[1]) / grid.spacing[1], grid.nx)
    row_low, row_high = _cell_pair((mid_z - grid.origin[0]) / grid.spacing[0], grid.nz)
    rows = np.tile(np.asarray(ray_index)[segment_index], 4)
    cells = np.concatenate([row_low * grid.nx + col_low, row_low * grid.nx + col_high,
                            row_high * grid.nx + col_low, row_high * grid.nx + col_high])
    matrix = sp.coo_matrix((np.tile(piece * 0.25, 4), (rows, cells)), shape=(n_rays, grid.n_cells)).tocsr()
    matrix.sum_duplicates()
    return matrix


class StraightRay(ForwardOperator):
    """Linear straight-ray traveltimes ``t = A s`` with exact ray–cell lengths.

    Parameters
    ----------
    grid : Grid2D
        Model grid.
    survey : Survey
        Sensor geometry (sensors inside the grid or on its boundary).

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (n_data, nz·nx)
        Ray lengths in m.

    Examples
    --------
    >>> import torch
    >>> from geoinv import Grid2D, Survey, StraightRay
    >>> op = StraightRay(Grid2D.crosshole(), Survey.crosshole())
    >>> slowness = torch.full((1, 129, 65), 1 / 0.07e9, dtype=torch.float64)
    >>> op(slowness).shape
    torch.Size([1, 625])
    """

    linear = True

    def __init__(self, grid: Grid2D, survey: Survey) -> None:
        super().__init__(grid, survey)
        self.matrix = ray_length_matrix(grid, survey.source_positions, survey.receiver_positions)
        self._kernel = TorchSparse(self.matrix)

    # all rays cost ~0.1 ms per model: cheaper to compute them all (the base class selects)
    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> tuple[torch.Tensor, None]:
        return self._kernel.matmul(slowness.reshape(slowness.shape[0], -1)), None

    def _vjp(self, slowness, data_index, state, cotangent: torch.Tensor) -> torch.Tensor:
        return self._kernel.rmatmul(cotangent).reshape(-1, *self.grid.shape)

    def _jvp(self, slowness, data_index, state, tangent: torch.Tensor) -> torch.Tensor:
        return self._kernel.matmul(tangent.reshape(tangent.shape[0], -1))

    def jacobian(self, slowness: TensorLike | None = None, data_index: DataIndex = None) -> sp.csr_matrix:
        """The ray-length matrix (m), independent of the model; ``slowness`` may be omitted."""
        if slowness is None:
            return self.matrix if data_index is None else self.matrix[self._check_index(data_index)]
        return super().jacobian(slowness, data_index)

    def _jacobian(self, slowness: np.ndarray, data_index: np.ndarray | None, state=None) -> sp.csr_matrix:
        return self.matrix
