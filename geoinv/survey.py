"""Survey geometry and observed first-arrival traveltimes."""

from __future__ import annotations

import numpy as np

from ._validation import as_finite_array
from .errors import SurveyError
from .grid import Grid2D

__all__ = ["Survey"]


def _positions(value, name: str) -> np.ndarray:
    array = as_finite_array(value, name, error=SurveyError)
    array = np.atleast_2d(array)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        raise SurveyError(f"{name} must have shape (n, 2) holding (x, z) in m, got {np.shape(value)}")
    return array


class Survey:
    """Sources, receivers, the pairs between them and, optionally, observed data.

    Parameters
    ----------
    sources : array_like, shape (n_sources, 2)
        Source positions ``(x, z)`` in m (z positive downward).
    receivers : array_like, shape (n_receivers, 2)
        Receiver positions ``(x, z)`` in m.
    pairs : array_like of int, shape (n_data, 2), optional
        ``(source index, receiver index)`` of each datum. Default: every source
        with every receiver, source-major (all receivers of source 0 first).
    traveltimes : array_like, shape (n_data,), optional
        Observed first-arrival times in s.
    errors : float or array_like, shape (n_data,), optional
        Standard errors of the traveltimes in s (> 0).

    Examples
    --------
    >>> survey = Survey.crosshole()
    >>> survey.n_data
    625
    """

    def __init__(self, sources, receivers, pairs=None, traveltimes=None, errors=None) -> None:
        self.sources = _positions(sources, "sources")
        self.receivers = _positions(receivers, "receivers")
        if pairs is None:
            source_index, receiver_index = np.meshgrid(
                np.arange(len(self.sources)), np.arange(len(self.receivers)), indexing="ij")
            pairs = np.column_stack([source_index.ravel(), receiver_index.ravel()])
        self.pairs = self._check_pairs(pairs)
        self.traveltimes = None if traveltimes is None else self._check_traveltimes(traveltimes)
        self.errors = None if errors is None else self._check_errors(errors)

    def _check_pairs(self, pairs) -> np.ndarray:
        array = np.asarray(pairs)
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
            raise SurveyError(f"pairs must have shape (n_data, 2), got {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
                raise SurveyError("pairs must hold integer (source, receiver) indices")
            array = array.astype(np.int64)
        for column, name, count in ((0, "source", len(self.sources)), (1, "receiver", len(self.receivers))):
            bad = (array[:, column] < 0) | (array[:, column] >= count)
            if bad.any():
                row = int(np.argmax(bad))
                raise SurveyError(
                    f"pairs[{row}] refers to {name} {array[row, column]}, but there are {count} "
                    f"{name}s (valid indices 0..{count - 1})")
        return array.astype(np.int64)

    def _check_traveltimes(self, traveltimes) -> np.ndarray:
        array = as_finite_array(traveltimes, "traveltimes", ndim=1, error=SurveyError)
        if array.shape != (self.n_data,):
            raise SurveyError(f"traveltimes has {array.size} values, but the survey has {self.n_data} pairs")
        if (array < 0).any():
            row = int(np.argmax(array < 0))
            raise SurveyError(f"traveltimes[{row}] = {array[row]} s is negative; first-arrival times must be >= 0")
        return array

    def _check_errors(self, errors) -> np.ndarray:
        array = as_finite_array(errors, "errors", error=SurveyError)
        array = np.broadcast_to(array, (self.n_data,)).copy() if array.ndim == 0 else array
        if array.shape != (self.n_data,):
            raise SurveyError(f"errors has shape {array.shape}, expected a scalar or ({self.n_data},)")
        if (array <= 0).any():
            raise SurveyError("errors (standard deviations, s) must be > 0 everywhere")
        return array

    @classmethod
    def crosshole(cls, x_sources: float = 0.0, x_receivers: float = 6.5, depths=None) -> Survey:
        """The reference crosshole geometry: 25 sources and 25 receivers, 625 pairs.

        Parameters
        ----------
        x_sources, x_receivers : float
            Borehole positions in m (reference: 0 and 6.5 m).
        depths : array_like, optional
            Sensor depths in m; default 0.5, 1.0, …, 12.5 m in both holes.
        """
        depths = np.arange(1, 26) * 0.5 if depths is None else np.asarray(depths, dtype=float)
        sources = np.column_stack([np.full(len(depths), x_sources), depths])
        receivers = np.column_stack([np.full(len(depths), x_receivers), depths])
        return cls(sources, receivers)

    @property
    def n_data(self) -> int:
        return int(self.pairs.shape[0])

    @property
    def source_positions(self) -> np.ndarray:
        """Source position of every datum, shape ``(n_data, 2)``."""
        return self.sources[self.pairs[:, 0]]

    @property
    def receiver_positions(self) -> np.ndarray:
        """Receiver position of every datum, shape ``(n_data, 2)``."""
        return self.receivers[self.pairs[:, 1]]

    @property
    def distances(self) -> np.ndarray:
        """Straight source–receiver distance of every datum in m."""
        return np.linalg.norm(self.receiver_positions - self.source_positions, axis=1)

    def with_data(self, traveltimes, errors=None) -> Survey:
        """A copy of this geometry holding the given traveltimes (s) and errors (s)."""
        return Survey(self.sources, self.receivers, self.pairs, traveltimes,
                      self.errors if errors is None else errors)

    def check_grid(self, grid: Grid2D) -> None:
        """Raise :class:`SurveyError` if a sensor lies outside ``grid``."""
        for name, positions in (("sources", self.sources), ("receivers", self.receivers)):
            outside = ~grid.contains(positions)
            if outside.any():
                index = int(np.argmax(outside))
                x, z = positions[index]
                raise SurveyError(
                    f"{name}[{index}] at (x={x:g} m, z={z:g} m) lies outside the grid "
                    f"(x in [{grid.x_edges[0]:g}, {grid.x_edges[-1]:g}] m, "
                    f"z in [{grid.z_edges[0]:g}, {grid.z_edges[-1]:g}] m); move it or enlarge the grid")

    def __repr__(self) -> str:
        has_data = "with" if self.traveltimes is not None else "without"
        return (f"Survey({len(self.sources)} sources, {len(self.receivers)} receivers, "
                f"{self.n_data} pairs, {has_data} traveltimes)")
