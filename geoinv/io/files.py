"""Survey files by suffix: geoinv HDF5 (``.h5``, ``.hdf5``) or pyGIMLi traveltime files (``.sgt`` …)."""

from __future__ import annotations

from pathlib import Path

from ..errors import FileFormatError
from ..grid import Grid2D
from ..survey import RADAR_VELOCITY_RANGE, Survey
from . import hdf5
from .pygimli import PYGIMLI_SUFFIXES, read_pygimli_survey, write_pygimli_survey

__all__ = ["HDF5_SUFFIXES", "read_survey", "write_survey"]

HDF5_SUFFIXES = (".h5", ".hdf5")


def read_survey(path, group: str = "survey", *, absolute_error: float | None = None,
                relative_error: float | None = None,
                velocity_range=RADAR_VELOCITY_RANGE) -> tuple[Survey, Grid2D | None]:
    """Read a survey file, choosing the reader by suffix.

    Parameters
    ----------
    path : str or Path
        ``.h5``/``.hdf5`` (geoinv layout, see :mod:`geoinv.io.hdf5`) or a pyGIMLi
        traveltime file (``.sgt``, ``.dat``, ``.gtt``, ``.tom``).
    group : str
        HDF5 group of the survey.
    absolute_error, relative_error : float, optional
        Error model (s, fraction) for pyGIMLi files without an ``err`` column.
    velocity_range : (float, float) or None
        Plausible apparent velocities in m/s (default: crosshole radar, 0.01–0.3
        m/ns); picks outside it are refused as a unit mix-up. ``None`` skips the check
        (see :meth:`Survey.check_plausible`).

    Returns
    -------
    survey : Survey
    grid : Grid2D or None
        The grid stored with an HDF5 survey; None for pyGIMLi files (build one
        with :meth:`Grid2D.covering`).

    Examples
    --------
    >>> survey, grid = geoinv.read_survey("picks.sgt", absolute_error=0.25e-9)  # doctest: +SKIP
    """
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES:
        if absolute_error is not None or relative_error is not None:
            raise FileFormatError(f"{Path(path).name}: an error model applies to pyGIMLi files only; HDF5 "
                                  "surveys store their errors (or pass noise_std= to invert)")
        return hdf5.read_survey(path, group, velocity_range=velocity_range)
    if suffix in PYGIMLI_SUFFIXES:
        survey = read_pygimli_survey(path, absolute_error=absolute_error, relative_error=relative_error,
                                     velocity_range=velocity_range)
        return survey, None
    raise FileFormatError(f"{Path(path).name}: unknown survey file suffix {suffix!r}; geoinv reads "
                          f"{', '.join(HDF5_SUFFIXES + PYGIMLI_SUFFIXES)}")


def write_survey(path, survey: Survey, grid: Grid2D | None = None, group: str = "survey",
                 time_unit: str = "s") -> Path:
    """Write a survey atomically, choosing the format by suffix (``.h5`` or ``.sgt``).

    ``grid``, ``group`` and ``time_unit`` apply to HDF5 files; a ``.sgt`` file
    holds times in s and no grid.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        hdf5.write_survey(path, survey, grid, group, time_unit)
        return path
    if suffix in (".sgt", ".dat"):
        if grid is not None or time_unit != "s":
            raise FileFormatError(f"{path.name}: a .sgt file stores neither a grid nor a time unit (times in s); "
                                  "write an .h5 file to keep them")
        return write_pygimli_survey(path, survey)
    raise FileFormatError(f"{path.name}: cannot write a survey as {suffix!r}; use .h5 or .sgt")
