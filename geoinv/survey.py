"""Survey geometry and observed first-arrival traveltimes."""

from __future__ import annotations

import numpy as np

from ._typing import TensorLike, VelocityRange
from ._validation import as_finite_array
from .errors import SurveyError
from .grid import Grid2D

__all__ = ["BOREHOLE_GAP", "RADAR_VELOCITY_RANGE", "Survey", "modelled_errors", "two_error_sources"]

#: apparent velocities (m/s) a crosshole radar pick may imply: 0.01–0.3 m/ns (0.3 m/ns is light in vacuum)
RADAR_VELOCITY_RANGE = (1e7, 3e8)
#: sensors whose x coordinates lie closer than this (m), chained, are taken for one borehole
BOREHOLE_GAP = 0.5
#: errors smaller than this fraction of the median traveltime are taken for a unit mix-up
MIN_RELATIVE_ERROR = 1e-6


def _positions(value, name: str) -> np.ndarray:
    array = as_finite_array(value, name, error=SurveyError)
    array = np.atleast_2d(array)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        raise SurveyError(f"{name} must have shape (n, 2) holding (x, z) in m, got {np.shape(value)}")
    return array


def modelled_errors(traveltimes: TensorLike, absolute_error: float | None, relative_error: float | None,
                    source: str = "") -> np.ndarray:
    """Pick errors ``absolute_error + relative_error · |t|`` in s (pyGIMLi's ``estimateError``).

    Raises
    ------
    SurveyError
        If some error is not > 0 (a zero time without an absolute part).
    """
    errors = (absolute_error or 0.0) + (relative_error or 0.0) * np.abs(np.asarray(traveltimes, dtype=float))
    if not np.all(errors > 0):
        raise SurveyError(f"{source + ': ' if source else ''}the error model gives errors <= 0 (absolute_error="
                          f"{absolute_error}, relative_error={relative_error}); give an absolute_error > 0 s")
    return errors


def two_error_sources(source: str) -> str:
    """The one message of every reader given an error model for a file that stores its errors."""
    return (f"{source}: the file stores the picks' errors and an error model was given too (absolute_error/"
            "relative_error, --absolute-error/--relative-error); leave the error model out to use the file's "
            "errors, or remove the errors from the file to model them")


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

    def __init__(self, sources: TensorLike, receivers: TensorLike, pairs: TensorLike | None = None,
                 traveltimes: TensorLike | None = None, errors: TensorLike | None = None) -> None:
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
    def crosshole(cls, x_sources: float = 0.0, x_receivers: float = 6.5,
                  depths: TensorLike | None = None) -> Survey:
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

    def apparent_velocities(self) -> np.ndarray:
        """Straight distance over traveltime (m/s) of every pick with a time > 0 over a distance > 0."""
        if self.traveltimes is None:
            raise SurveyError("apparent velocities come from picks; the survey holds no traveltimes")
        usable = (self.traveltimes > 0) & (self.distances > 0)
        return self.distances[usable] / self.traveltimes[usable]

    def borehole_of_picks(self, side: str = "source", gap: float = BOREHOLE_GAP) -> np.ndarray:
        """Borehole number of every pick's source (or receiver), shape ``(n_data,)``.

        Sensors are grouped by their x coordinate: sorted, a step of more than
        ``gap`` (m) starts a new borehole, so vertical boreholes a few metres
        apart separate and sensors of one slightly tilted borehole stay
        together. Boreholes are numbered 0, 1, … from the smallest x.

        Parameters
        ----------
        side : {'source', 'receiver'}
            Which end of each pick names its borehole.
        gap : float
            Smallest x distance (m) between two boreholes.

        Returns
        -------
        numpy.ndarray of int
        """
        if side not in ("source", "receiver"):
            raise SurveyError(f"side must be 'source' or 'receiver', got {side!r}")
        if not (isinstance(gap, (int, float)) and gap > 0):
            raise SurveyError(f"gap must be a positive distance in m, got {gap!r}")
        sensors, column = (self.sources, 0) if side == "source" else (self.receivers, 1)
        x = sensors[:, 0]
        order = np.argsort(x, kind="stable")
        labels = np.empty(x.size, dtype=np.int64)
        labels[order] = np.concatenate([[0], np.cumsum(np.diff(x[order]) > gap)])
        used = np.unique(labels[self.pairs[:, column]])  # boreholes without picks get no number
        return np.searchsorted(used, labels[self.pairs[:, column]])

    def with_data(self, traveltimes: TensorLike, errors: TensorLike | None = None) -> Survey:
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

    def check_plausible(self, velocity_range: VelocityRange = RADAR_VELOCITY_RANGE, label: str = "",
                        unit_hint: str = "") -> None:
        """Raise :class:`SurveyError` if the picks or their errors cannot be measurements in s.

        A pick ``t`` over a straight distance ``d`` implies the apparent velocity
        ``d / t``, which lies between the slowest and the fastest velocity of
        the medium; picks in ns labelled s (or the reverse) land 10⁹ outside.
        Each pick is given three standard errors of slack, so short, noisy
        offsets pass.

        Parameters
        ----------
        velocity_range : (float, float) or None
            Slowest and fastest plausible velocity in m/s (default 0.01–0.3 m/ns,
            crosshole radar; pass e.g. ``(300, 8000)`` for seismic data, ``None``
            to skip the velocity check).
        label : str
            Where the survey came from (file and group), put before the message.
        unit_hint : str
            How the reader learned the time unit (e.g. "attribute time_unit = 's'"), for the message.
        """
        if self.traveltimes is None:
            return
        prefix = f"{label}: " if label else ""
        hint = f" (the file says {unit_hint})" if unit_hint else ""
        times, errors = self.traveltimes, self.errors
        if not times.any():
            raise SurveyError(f"{prefix}traveltimes are all zero; a first arrival takes time to travel. "
                              "Were the picks written?")
        # the picks' unit first: picks in ns labelled s make right errors look too small
        if velocity_range is not None:
            slack = None if errors is None else np.minimum(errors, times)
            self._check_velocities(times, slack, velocity_range, prefix, hint)
        if errors is not None:
            self._check_error_sizes(times, errors, prefix, hint)

    def _check_error_sizes(self, times, errors, prefix: str, hint: str) -> None:
        largest = int(np.argmax(errors))
        if errors[largest] > times.max():
            raise SurveyError(
                f"{prefix}errors[{largest}] = {errors[largest]:.3g} s is larger than the largest traveltime "
                f"({times.max():.3g} s): such picks carry no information. Errors are standard deviations in the "
                f"file's time unit{hint}; check their unit")
        smallest = int(np.argmin(errors))
        floor = MIN_RELATIVE_ERROR * float(np.median(times))
        if errors[smallest] < floor:
            raise SurveyError(
                f"{prefix}errors[{smallest}] = {errors[smallest]:.3g} s is too small: below {MIN_RELATIVE_ERROR:g} "
                f"of the median traveltime ({np.median(times):.3g} s), no pick is that precise. Check the errors' "
                f"unit{hint}")

    def _check_velocities(self, times, errors, velocity_range, prefix: str, hint: str) -> None:
        slowest, fastest = (float(v) for v in velocity_range)
        if not 0 < slowest < fastest:
            raise SurveyError(f"velocity_range must be (slowest, fastest) in m/s with 0 < slowest < fastest, "
                              f"got {velocity_range!r}")
        distance = self.distances
        slack = 3.0 * (errors if errors is not None else 0.0)
        with np.errstate(divide="ignore"):
            fast = distance / np.maximum(times + slack, 0.0)  # no faster than this
            slow = np.where(times - slack > 0, distance / np.maximum(times - slack, 1e-300), np.inf)
        spread = distance > 1e-9
        too_fast, too_slow = spread & (fast > fastest), spread & (slow < slowest)
        if not (too_fast.any() or too_slow.any()):
            return
        self._blame_one_sensor(too_fast | too_slow, prefix)
        ratio = np.where(too_fast, fast / fastest, np.where(too_slow, slowest / np.maximum(slow, 1e-300), 0.0))
        row = int(np.argmax(ratio))
        implied = fast[row] if too_fast[row] else slow[row]
        guess = ("picks in ns stored as s" if too_slow[row] else "picks in s stored as ns")
        raise SurveyError(
            f"{prefix}traveltimes[{row}] = {times[row]:.4g} s over {distance[row]:.3g} m implies a velocity of "
            f"{implied * 1e-9:.3g} m/ns, outside the plausible {slowest * 1e-9:g}–{fastest * 1e-9:g} m/ns; "
            f"{int(too_fast.sum() + too_slow.sum())} of {self.n_data} picks are. Are these {guess}? Check the "
            f"time_unit{hint}. For waves of other speeds pass velocity_range=(slowest, fastest) in m/s "
            "(None skips this check)")

    def _blame_one_sensor(self, implausible: np.ndarray, prefix: str) -> None:
        """Raise naming a sensor when every implausible pick involves it and it has plausible company:
        a misplaced sensor, not a unit mix-up (which makes every pick implausible)."""
        count = int(implausible.sum())
        if count == self.n_data:
            return
        for column, kind, positions in ((0, "source", self.sources), (1, "receiver", self.receivers)):
            involved = np.unique(self.pairs[implausible, column])
            own = self.pairs[:, column] == involved[0]
            if involved.size == 1 and len(positions) > 1 and implausible[own].all():
                index = int(involved[0])
                x, z = positions[index]
                raise SurveyError(
                    f"{prefix}all {count} picks whose apparent velocity is implausible involve {kind} {index} at "
                    f"(x={x:g} m, z={z:g} m), and the other picks are plausible: is that {kind}'s position right?")

    def __repr__(self) -> str:
        has_data = "with" if self.traveltimes is not None else "without"
        return (f"Survey({len(self.sources)} sources, {len(self.receivers)} receivers, "
                f"{self.n_data} pairs, {has_data} traveltimes)")
