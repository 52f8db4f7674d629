"""Regular 2-D grids of rectangular cells (depth × horizontal)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._typing import TensorLike
from ._validation import as_finite_array, check_real_dtype, require_positive
from .errors import GridError

if TYPE_CHECKING:
    from .survey import Survey

__all__ = ["Grid2D"]


#: the most cells a grid may have (a float64 model of this size takes 800 MB)
MAX_CELLS = 10**8


def _cell_counts(shape) -> tuple[int, int]:
    check_real_dtype(shape, "shape", GridError)
    values = np.atleast_1d(np.asarray(shape, dtype=float))
    if values.shape != (2,) or not np.isfinite(values).all() or (values < 1).any():
        raise GridError(f"shape must be (nz, nx) with both >= 1, got {shape!r}")
    if (values != np.round(values)).any():
        raise GridError(f"shape must hold integer cell counts (nz, nx), got {shape!r}; round it yourself "
                        "if that is what you mean")
    counts = (int(values[0]), int(values[1]))
    if counts[0] * counts[1] > MAX_CELLS:
        raise GridError(f"shape {counts} has {counts[0] * counts[1]:.3g} cells, more than the {MAX_CELLS:.0e} "
                        "cells geoinv handles (geoinv.grid.MAX_CELLS); use larger cells")
    return counts


@dataclass(frozen=True)
class Grid2D:
    """A regular grid of ``nz × nx`` rectangular cells.

    Parameters
    ----------
    shape : tuple of int
        ``(nz, nx)``: number of cells along depth and along x.
    spacing : float or tuple of float, default 0.1
        Cell size in m, ``(dz, dx)`` or one value for square cells.
    origin : tuple of float, default (0.0, 0.0)
        ``(z0, x0)`` in m: position of the top-left corner of cell ``(0, 0)``.

    Notes
    -----
    Depth ``z`` increases downward, ``x`` is horizontal. Cell ``(i, j)`` covers
    ``z0 + i·dz ≤ z ≤ z0 + (i+1)·dz`` and ``x0 + j·dx ≤ x ≤ x0 + (j+1)·dx``.
    Model arrays have shape ``(nz, nx)`` (or ``(batch, nz, nx)``); point
    positions are given as ``(x, z)`` pairs in m.
    """

    shape: tuple[int, int]
    spacing: tuple[float, float] = (0.1, 0.1)
    origin: Sequence[float] = (0.0, 0.0)

    def __init__(self, shape: Sequence[int], spacing: float | Sequence[float] = 0.1,
                 origin: Sequence[float] = (0.0, 0.0)) -> None:
        shape_tuple = _cell_counts(shape)
        spacing_array = np.broadcast_to(np.asarray(spacing, dtype=float), (2,))
        spacing_tuple = tuple(require_positive(s, "spacing", GridError) for s in spacing_array)
        origin_array = as_finite_array(origin, "origin", ndim=1, error=GridError)
        if origin_array.shape != (2,):
            raise GridError(f"origin must be (z0, x0), got {origin!r}")
        object.__setattr__(self, "shape", shape_tuple)
        object.__setattr__(self, "spacing", spacing_tuple)
        object.__setattr__(self, "origin", (float(origin_array[0]), float(origin_array[1])))

    @classmethod
    def crosshole(cls) -> Grid2D:
        """The reference crosshole grid: 129 × 65 cells of 0.1 m (12.9 m × 6.5 m)."""
        return cls((129, 65), 0.1, (0.0, 0.0))

    @classmethod
    def covering(cls, points: TensorLike | Survey, spacing: float | tuple[float, float] = 0.1,
                 margin: float = 0.0) -> Grid2D:
        """The smallest grid of cells of ``spacing`` holding every point, ``margin`` m around them.

        Parameters
        ----------
        points : Survey or array_like, shape (n, 2)
            A survey (its sources and receivers) or ``(x, z)`` positions in m.
        spacing : float or (dz, dx)
            Cell size in m.
        margin : float
            Extra room in m on every side (≥ 0).

        Notes
        -----
        Edges are snapped to multiples of the spacing, so sensors at such
        positions sit on cell corners (where pyGIMLi needs mesh nodes). For a
        surface line with topography the grid is the box under and around the
        sensors: cells above the ground are part of the model like any other.
        """
        if hasattr(points, "sources") and hasattr(points, "receivers"):
            points = np.vstack([points.sources, points.receivers])
        array = as_finite_array(points, "points", ndim=2, error=GridError)
        if array.shape[-1] != 2:
            raise GridError(f"points must have shape (n, 2) holding (x, z) in m, got {array.shape}")
        if not (np.isfinite(margin) and margin >= 0):
            raise GridError(f"margin must be >= 0 m, got {margin!r}")
        dz, dx = (float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (2,)))
        origin, counts = [], []
        for column, step in ((1, dz), (0, dx)):
            low = np.floor((array[:, column].min() - margin) / step + 1e-9) * step
            count = int(np.ceil((array[:, column].max() + margin - low) / step - 1e-9))
            origin.append(float(low))
            counts.append(max(count, 1))
        return cls(tuple(counts), (dz, dx), tuple(origin))

    @property
    def nz(self) -> int:
        return self.shape[0]

    @property
    def nx(self) -> int:
        return self.shape[1]

    @property
    def n_cells(self) -> int:
        return self.nz * self.nx

    @property
    def z_edges(self) -> np.ndarray:
        """Cell boundaries along depth in m, shape ``(nz + 1,)``."""
        return self.origin[0] + self.spacing[0] * np.arange(self.nz + 1)

    @property
    def x_edges(self) -> np.ndarray:
        """Cell boundaries along x in m, shape ``(nx + 1,)``."""
        return self.origin[1] + self.spacing[1] * np.arange(self.nx + 1)

    @property
    def z_centers(self) -> np.ndarray:
        """Cell-centre depths in m, shape ``(nz,)``."""
        return self.origin[0] + self.spacing[0] * (np.arange(self.nz) + 0.5)

    @property
    def x_centers(self) -> np.ndarray:
        """Cell-centre x positions in m, shape ``(nx,)``."""
        return self.origin[1] + self.spacing[1] * (np.arange(self.nx) + 0.5)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(x_min, x_max, z_max, z_min)`` in m, as matplotlib's ``imshow`` wants it."""
        return (self.x_edges[0], self.x_edges[-1], self.z_edges[-1], self.z_edges[0])

    def cell_centers(self) -> np.ndarray:
        """Cell centres as ``(x, z)`` pairs in m, shape ``(nz * nx, 2)``, row-major."""
        zz, xx = np.meshgrid(self.z_centers, self.x_centers, indexing="ij")
        return np.column_stack([xx.ravel(), zz.ravel()])

    def contains(self, points: TensorLike, tol: float = 1e-9) -> np.ndarray:
        """Whether each ``(x, z)`` point (m) lies inside the grid or on its boundary.

        Parameters
        ----------
        points : array_like, shape (n, 2) or (2,)
            Positions ``(x, z)`` in m.
        tol : float
            Tolerance in m for points on the boundary.
        """
        array = np.atleast_2d(np.asarray(points, dtype=float))
        x, z = array[:, 0], array[:, 1]
        return (
            (x >= self.x_edges[0] - tol)
            & (x <= self.x_edges[-1] + tol)
            & (z >= self.z_edges[0] - tol)
            & (z <= self.z_edges[-1] + tol)
        )

    def check_model(self, model: TensorLike, name: str = "model") -> None:
        """Raise :class:`GridError` unless ``model`` ends in this grid's shape."""
        model_shape = tuple(getattr(model, "shape", np.shape(model)))
        if model_shape[-2:] != self.shape:
            raise GridError(
                f"{name} has shape {model_shape}, but the grid is {self.shape} (nz, nx); "
                f"pass an array of shape (batch, {self.nz}, {self.nx})"
            )

    def to_dict(self) -> dict:
        """A JSON/HDF5-friendly description of the grid."""
        return {"shape": list(self.shape), "spacing": list(self.spacing), "origin": list(self.origin)}
