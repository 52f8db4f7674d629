"""HDF5 layout of crosshole surveys (and the grid they live on).

Layout of a survey group (default ``/survey``)::

    sources      (n_sources, 2)   float  (x, z) in m, z positive downward
    receivers    (n_receivers, 2) float  (x, z) in m
    pairs        (n_data, 2)      int    (source index, receiver index)
    traveltimes  (n_data,)        float  first arrivals, s            [optional]
    errors       (n_data,)        float  standard errors, s           [optional]
    attrs: format = "geoinv-survey/1", time_unit = "s" or "ns"
    grid/ attrs: shape, spacing, origin                               [optional]

Field data picked in ns may be stored with ``time_unit = "ns"``; they are
converted to s on reading.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._atomic import atomic_hdf5
from .._typing import PathType, VelocityRange
from .._validation import check_real_dtype, require_file
from ..errors import FileFormatError, GeoinvError, SurveyError
from ..grid import Grid2D
from ..survey import RADAR_VELOCITY_RANGE, Survey
from ..units import time_factor

if TYPE_CHECKING:
    from ..solvers.base import Solutions

_DATASETS = ("sources", "receivers", "pairs", "traveltimes", "errors", "grid")
#: the most values a survey dataset may declare (as for ``.sgt`` header counts): a compressed dataset
#: can claim 10⁹ rows in a few kB, and reading it whole would take the host's memory
MAX_VALUES = 10_000_000

__all__ = ["SURVEY_FORMAT", "read_survey", "read_survey_group", "write_result", "write_survey", "write_survey_group"]

SURVEY_FORMAT = "geoinv-survey/1"


def attribute_text(value: Any) -> Any:
    """An HDF5 string attribute as str (h5py returns bytes for fixed-length strings)."""
    return value.decode() if isinstance(value, bytes) else value


def write_survey(path: PathType, survey: Survey, grid: Grid2D | None = None, group: str = "survey",
                 time_unit: str = "s") -> None:
    """Write ``survey`` (and optionally its ``grid``) to an HDF5 file atomically.

    Parameters
    ----------
    path : path-like
        Output file (replaced if it exists).
    survey : Survey
        Geometry and, if present, traveltimes and errors (s).
    grid : Grid2D, optional
        Model grid to store beside it.
    group : str
        Group name inside the file.
    time_unit : {'s', 'ns'}
        Unit in which times are stored.
    """

    time_factor(time_unit, "time_unit")
    with atomic_hdf5(path) as handle:
        write_survey_group(handle, survey, grid, group, time_unit)


def write_survey_group(handle: Any, survey: Survey, grid: Grid2D | None = None, group: str = "survey",
                       time_unit: str = "s") -> None:
    """Write ``survey`` (and ``grid``) into an open ``h5py.File`` under ``group`` (see :func:`write_survey`)."""
    scale = 1.0 / time_factor(time_unit, "time_unit")
    root = handle.create_group(group)
    root.attrs["format"] = SURVEY_FORMAT
    root.attrs["time_unit"] = time_unit
    root.create_dataset("sources", data=survey.sources)
    root.create_dataset("receivers", data=survey.receivers)
    root.create_dataset("pairs", data=survey.pairs)
    if survey.traveltimes is not None:
        root.create_dataset("traveltimes", data=survey.traveltimes * scale)
    if survey.errors is not None:
        root.create_dataset("errors", data=survey.errors * scale)
    if grid is not None:
        grid_group = root.create_group("grid")
        for key, value in grid.to_dict().items():
            grid_group.attrs[key] = value


def write_result(path: PathType, solutions: Solutions, survey: Survey | None = None, grid: Grid2D | None = None,
                 datasets: dict | None = None, attrs: dict | None = None) -> None:
    """Write an inversion result as one atomic HDF5 file.

    Layout: ``/solutions`` (see :class:`geoinv.Solutions`), ``/survey`` (the
    inverted data, if given), one dataset per entry of ``datasets`` (e.g.
    ``truth``) and root attributes ``attrs`` (JSON-encoded when not scalar).
    Everything is written to a temporary file beside ``path`` and renamed, so
    ``path`` holds either the previous complete file or the new complete file.
    """
    import json


    with atomic_hdf5(path) as handle:
        if survey is not None:
            write_survey_group(handle, survey, grid)
        solutions.write_group(handle, "solutions")
        for name, value in (datasets or {}).items():
            handle.create_dataset(name, data=np.asarray(value), compression="gzip")
        for name, value in (attrs or {}).items():
            handle.attrs[name] = value if isinstance(value, (str, int, float)) else json.dumps(value, default=str)


def unreadable(path: PathType, exc: OSError, hint: str = "") -> FileFormatError:
    """The error for an HDF5 file h5py cannot open: a lock held by another program named as such."""
    name = Path(path).name
    if "lock" in str(exc).lower():
        return FileFormatError(f"{name} is locked by another program that has it open for writing (HDF5 file "
                               "locking); close it there, or set HDF5_USE_FILE_LOCKING=FALSE if the file system "
                               f"cannot lock: {exc}")
    return FileFormatError(f"cannot read {name} as HDF5{hint}: {exc}")


def read_survey(path: PathType, group: str = "survey",
                velocity_range: VelocityRange = RADAR_VELOCITY_RANGE) -> tuple[Survey, Grid2D | None]:
    """Read a survey (and its grid, if stored) written by :func:`write_survey`.

    ``velocity_range`` (m/s, default crosshole radar; None skips) bounds the
    apparent velocities the picks may imply (see :meth:`Survey.check_plausible`).

    Returns
    -------
    survey : Survey
        Times in s, validated (NaN/inf, negative times, indices out of range).
    grid : Grid2D or None
    """
    import h5py

    path = Path(path)
    require_file(path, "survey file", FileFormatError)
    try:
        with h5py.File(path, "r") as handle:
            if group not in handle:
                raise FileFormatError(f"{path.name}: no group '/{group}'; groups present: {list(handle)}")
            return read_survey_group(handle[group], f"{path.name}: '/{group}'", velocity_range)
    except OSError as exc:
        raise unreadable(path, exc) from exc


def read_survey_group(root: Any, label: str,
                      velocity_range: VelocityRange = RADAR_VELOCITY_RANGE) -> tuple[Survey, Grid2D | None]:
    """Read an open survey group (see :func:`read_survey`); errors start with ``label``.

    The group must carry ``format = "geoinv-survey/1"`` and hold ``pairs``
    (an implicit all-pairs default would silently misassign picks).

    Raises
    ------
    FileFormatError, SurveyError, GridError
        Missing datasets, unknown time unit, invalid values — with ``label`` in the message.
    """
    import h5py

    if not isinstance(root, h5py.Group):
        raise FileFormatError(f"{label} is a dataset, not a survey group")
    found = attribute_text(root.attrs.get("format"))
    if found != SURVEY_FORMAT:
        raise FileFormatError(
            f"{label}: attribute format is {found!r}, not {SURVEY_FORMAT!r}; this is not a geoinv survey "
            f"group. If you wrote it yourself following geoinv.io.hdf5, set attrs['format'] = {SURVEY_FORMAT!r}")
    missing = [name for name in ("sources", "receivers", "pairs") if name not in root]
    if missing:
        raise FileFormatError(f"{label} lacks the dataset(s) {missing}; 'pairs' (n_data, 2) of (source, "
                              "receiver) indices is required so every pick meets its sensors")
    unexpected = [name for name in root if name not in _DATASETS]
    if unexpected:
        raise FileFormatError(f"{label}: unexpected dataset(s) {unexpected}; a survey group holds {_DATASETS}")
    unit = attribute_text(root.attrs.get("time_unit", "s"))
    try:
        scale = time_factor(unit, f"{label}: attribute time_unit")
    except GeoinvError as exc:
        raise FileFormatError(str(exc)) from exc
    names = [name for name in ("sources", "receivers", "pairs", "traveltimes", "errors") if name in root]
    for name in names:
        dataset = root[name]
        if not isinstance(dataset, h5py.Dataset):
            raise FileFormatError(f"{label}: {name!r} is a group, not a dataset")
        if dataset.size > MAX_VALUES:
            raise FileFormatError(f"{label}: dataset {name!r} declares shape {dataset.shape} ({dataset.size} "
                                  f"values), more than geoinv reads ({MAX_VALUES}, geoinv.io.hdf5.MAX_VALUES); the "
                                  "file is damaged or not a survey")
    fields = {name: root[name][()] for name in names}
    grid_attrs = dict(root["grid"].attrs) if "grid" in root else None
    try:
        for name in ("traveltimes", "errors"):
            if name in fields:
                check_real_dtype(fields[name], name, SurveyError)
                if np.asarray(fields[name]).dtype == np.float16:
                    raise SurveyError(f"{name} are stored as float16, which keeps 3 significant digits (about "
                                      "0.1 ns at 100 ns): store them as float32 or float64")
                fields[name] = np.asarray(fields[name], dtype=float) * scale
        for name in ("sources", "receivers"):
            check_real_dtype(fields[name], name, SurveyError)
        if np.asarray(fields["pairs"]).dtype.kind not in "iu":
            raise SurveyError(f"pairs must hold integer (source, receiver) indices, got dtype "
                              f"{np.asarray(fields['pairs']).dtype}; store them as int64")
        survey = Survey(**fields)
        grid = None
        if grid_attrs is not None:
            missing = [key for key in ("shape", "spacing", "origin") if key not in grid_attrs]
            if missing:
                raise FileFormatError(f"the grid group lacks the attribute(s) {missing}")
            grid = Grid2D(grid_attrs["shape"], grid_attrs["spacing"], grid_attrs["origin"])
            survey.check_grid(grid)
        survey.check_plausible(velocity_range, unit_hint=f"attribute time_unit = {unit!r}")
    except GeoinvError as exc:
        raise type(exc)(f"{label}: {exc}") from exc
    return survey, grid
