"""Survey files by suffix: geoinv HDF5 (``.h5``, ``.hdf5``), pyGIMLi traveltime files (``.sgt`` …) or
pick files in columns (``.txt``, ``.csv``, ``.tsv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._typing import PathType, VelocityRange
from ..errors import FileFormatError
from ..grid import Grid2D
from ..survey import RADAR_VELOCITY_RANGE, Survey, modelled_errors, two_error_sources
from . import hdf5
from .columns import COLUMN_SUFFIXES, read_column_survey, write_column_survey
from .pygimli import PYGIMLI_SUFFIXES, read_pygimli_survey, write_pygimli_survey

__all__ = ["HDF5_SUFFIXES", "SURVEY_SUFFIXES", "read_survey", "write_survey"]

HDF5_SUFFIXES = (".h5", ".hdf5")
#: every suffix :func:`read_survey` reads
SURVEY_SUFFIXES = HDF5_SUFFIXES + PYGIMLI_SUFFIXES + COLUMN_SUFFIXES


def read_survey(path: PathType, group: str = "survey", *, absolute_error: float | None = None,
                relative_error: float | None = None, velocity_range: VelocityRange = RADAR_VELOCITY_RANGE,
                columns: str | Sequence[str] | None = None,
                time_unit: str | None = None) -> tuple[Survey, Grid2D | None]:
    """Read a survey file, choosing the reader by suffix.

    Parameters
    ----------
    path : str or Path
        ``.h5``/``.hdf5`` (geoinv layout, see :mod:`geoinv.io.hdf5`), a pyGIMLi
        traveltime file (``.sgt``, ``.dat``, ``.gtt``, ``.tom``) or a pick file in
        columns (``.txt``, ``.csv``, ``.tsv``, see :mod:`geoinv.io.columns`).
    group : str
        HDF5 group of the survey.
    absolute_error, relative_error : float, optional
        Error model (s, fraction) for pyGIMLi and column files without an ``err`` column.
    velocity_range : (float, float) or None
        Plausible apparent velocities in m/s (default: crosshole radar, 0.01–0.3
        m/ns); picks outside it are refused as a unit mix-up. ``None`` skips the check
        (see :meth:`Survey.check_plausible`).
    columns : str or list of str, optional
        Column files only: the role of each column (e.g. ``"sx,sz,rx,rz,t,err"``).
    time_unit : str, optional
        Column files only: unit of their times and errors (default ``'ns'``).

    Returns
    -------
    survey : Survey
    grid : Grid2D or None
        The grid stored with an HDF5 survey; None for other files (build one
        with :meth:`Grid2D.covering`, or let :func:`geoinv.invert` place the prior's canvas).

    Examples
    --------
    >>> survey, grid = geoinv.read_survey("picks.sgt", absolute_error=0.25e-9)  # doctest: +SKIP
    """
    suffix = Path(path).suffix.lower()
    if suffix not in COLUMN_SUFFIXES and (columns is not None or time_unit is not None):
        raise FileFormatError(f"{Path(path).name}: columns and time_unit describe pick files in columns "
                              f"({', '.join(COLUMN_SUFFIXES)}); this file's format states its own")
    if suffix in COLUMN_SUFFIXES:
        survey = read_column_survey(path, columns, time_unit=time_unit or "ns", absolute_error=absolute_error,
                                    relative_error=relative_error, velocity_range=velocity_range)
        return survey, None
    if suffix in HDF5_SUFFIXES:
        survey, grid = hdf5.read_survey(path, group, velocity_range=velocity_range)
        if absolute_error is None and relative_error is None:
            return survey, grid
        if survey.errors is not None:
            raise FileFormatError(two_error_sources(Path(path).name))
        return _with_error_model(survey, absolute_error, relative_error, Path(path).name), grid
    if suffix in PYGIMLI_SUFFIXES:
        survey = read_pygimli_survey(path, absolute_error=absolute_error, relative_error=relative_error,
                                     velocity_range=velocity_range)
        return survey, None
    raise FileFormatError(f"{Path(path).name}: unknown survey file suffix {suffix!r}; geoinv reads "
                          f"{', '.join(SURVEY_SUFFIXES)}")


def _with_error_model(survey: Survey, absolute_error, relative_error, source: str) -> Survey:
    """The survey with errors ``absolute_error + relative_error · t`` (s)."""
    if survey.traveltimes is None:
        raise FileFormatError(f"{source}: an error model was given but the survey holds no traveltimes")
    return survey.with_data(survey.traveltimes, modelled_errors(survey.traveltimes, absolute_error,
                                                                relative_error, source))


def write_survey(path: PathType, survey: Survey, grid: Grid2D | None = None, group: str = "survey",
                 time_unit: str = "s") -> Path:
    """Write a survey atomically, choosing the format by suffix (``.h5``, ``.sgt`` or a column file).

    ``grid`` and ``group`` apply to HDF5 files, ``time_unit`` to HDF5 and column
    files; a ``.sgt`` file holds times in s and no grid.
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
    if suffix in COLUMN_SUFFIXES:
        if grid is not None:
            raise FileFormatError(f"{path.name}: a column file stores no grid; write an .h5 file to keep it")
        return write_column_survey(path, survey, time_unit)
    raise FileFormatError(f"{path.name}: cannot write a survey as {suffix!r}; use .h5, .sgt or "
                          f"{', '.join(COLUMN_SUFFIXES)}")
