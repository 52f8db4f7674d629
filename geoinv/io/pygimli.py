"""pyGIMLi interchange: data containers and ``.sgt`` files, grid meshes and model vectors.

Conventions on the pyGIMLi side, handled here once:

* 2-D positions are ``(x, y)`` with ``y`` pointing *up*: ``y = −z`` for geoinv's
  depth ``z`` (so a surface line with topography has positive ``y`` and negative
  ``z``: the grid's origin may be above zero depth).
* Traveltime containers hold sensor indices ``s`` (shot) and ``g`` (geophone),
  times ``t`` and absolute errors ``err`` in s, and a ``valid`` flag.
* A regular grid mesh (``pg.createGrid``) numbers its cells with x fastest and
  y *upward*, so its first cell is geoinv's bottom-left cell.

pyGIMLi is imported lazily (it takes ~0.3 s): importing this module is cheap.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._atomic import atomic_path
from .._typing import PathType, TensorLike, VelocityRange
from .._validation import require_file
from ..errors import FileFormatError, GridError, SurveyError
from ..grid import Grid2D
from ..survey import RADAR_VELOCITY_RANGE, Survey, modelled_errors, two_error_sources

__all__ = [
    "PYGIMLI_SUFFIXES",
    "grid_from_mesh",
    "grid_to_mesh",
    "mesh_cell_order",
    "model_from_mesh",
    "model_to_mesh",
    "read_pygimli_survey",
    "survey_from_data_container",
    "survey_to_data_container",
    "write_pygimli_survey",
]

#: Suffixes read through pyGIMLi's traveltime loader.
PYGIMLI_SUFFIXES = (".sgt", ".dat", ".gtt", ".tom")

_SAME_SENSOR_M = 1e-9  # positions closer than this are one sensor


def _pg():
    import pygimli

    return pygimli


# ----------------------------------------------------------------------------------------------- surveys


def survey_to_data_container(survey: Survey) -> Any:
    """A pyGIMLi traveltime ``DataContainer`` of a survey.

    Parameters
    ----------
    survey : Survey
        Geometry and, if present, traveltimes (s) and errors (s).

    Returns
    -------
    pygimli.physics.traveltime.DataContainer
        Sensors at ``(x, −z)``; a source and a receiver at the same position are
        one sensor. Tokens ``s``, ``g`` (0-based sensor indices), ``valid`` (all 1),
        and ``t`` and ``err`` (s) where the survey has them.
    """
    pg = _pg()
    positions, source_sensor, receiver_sensor = _shared_sensors(survey.sources, survey.receivers)
    data = pg.physics.traveltime.DataContainer()
    for x, z in positions:
        data.createSensor([float(x), float(-z)])
    data.resize(survey.n_data)
    data["s"] = source_sensor[survey.pairs[:, 0]].astype(float)
    data["g"] = receiver_sensor[survey.pairs[:, 1]].astype(float)
    data["valid"] = np.ones(survey.n_data)
    if survey.traveltimes is not None:
        data["t"] = survey.traveltimes
    if survey.errors is not None:
        data["err"] = survey.errors
    return data


def _shared_sensors(sources: np.ndarray, receivers: np.ndarray):
    """Unique sensor positions and the sensor index of every source and receiver."""
    every = np.vstack([sources, receivers])
    keys = np.round(every / _SAME_SENSOR_M).astype(np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    # number sensors in order of first appearance (sources first), not lexicographically
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    sensor = rank[inverse.ravel()]
    positions = every[np.sort(first)]
    return positions, sensor[:len(sources)], sensor[len(sources):]


def survey_from_data_container(data: Any, *, absolute_error: float | None = None, relative_error: float | None = None,
                               source: str = "data container") -> Survey:
    """A :class:`Survey` from a pyGIMLi traveltime ``DataContainer``.

    Parameters
    ----------
    data : pygimli.DataContainer
        With sensor-index tokens ``s`` and ``g``; ``t`` (s) for observed times.
    absolute_error : float, optional
        Error model for containers without an ``err`` column: standard error
        ``absolute_error + relative_error · t`` in s, as pyGIMLi's ``estimateError``.
        Ignored (with a warning) when the container has errors.
    relative_error : float, optional
        Relative part of that error model (e.g. 0.01 for 1 %).
    source : str
        Name used in error messages (the file name when reading a file).

    Returns
    -------
    Survey
        Sources are the sensors used as ``s``, receivers those used as ``g``
        (a sensor used as both appears in both lists); ``z = −y``. Data with
        ``valid == 0`` are dropped with a warning that counts them.

    Raises
    ------
    SurveyError
        Missing ``s``/``g``; times without errors and no error model.
    """
    tokens = set(data.dataMap().keys())
    missing = [token for token in ("s", "g") if token not in tokens]
    if missing:
        raise SurveyError(f"{source}: no sensor-index token(s) {missing} (shot 's' and geophone 'g' are needed); "
                          f"tokens present: {sorted(tokens)}")
    keep = np.ones(data.size(), dtype=bool)
    if "valid" in tokens:
        keep = np.asarray(data["valid"]) != 0
        if not keep.all():
            warnings.warn(f"{source}: dropped {int((~keep).sum())} of {data.size()} data marked invalid "
                          "(valid == 0)", stacklevel=2)
    if not keep.any():
        raise SurveyError(f"{source}: every datum is marked invalid (valid == 0); nothing to read")
    shots = np.asarray(data["s"], dtype=np.int64)[keep]
    geophones = np.asarray(data["g"], dtype=np.int64)[keep]
    positions = _sensor_positions(data, source)
    for name, index in (("s", shots), ("g", geophones)):
        bad = (index < 0) | (index >= len(positions))
        if bad.any():
            raise SurveyError(f"{source}: '{name}' refers to sensor {index[np.argmax(bad)]} but the file has "
                              f"{len(positions)} sensors")
    source_ids, shot_index = np.unique(shots, return_inverse=True)
    receiver_ids, geophone_index = np.unique(geophones, return_inverse=True)
    traveltimes = np.asarray(data["t"], dtype=float)[keep] if "t" in tokens else None
    errors = _errors(data, tokens, keep, traveltimes, absolute_error, relative_error, source)
    return Survey(positions[source_ids], positions[receiver_ids], np.column_stack([shot_index, geophone_index]),
                  traveltimes, errors)


def _sensor_positions(data, source: str) -> np.ndarray:
    """Sensor ``(x, z)`` in m: ``z = −y``, or ``z = −z_pg`` for files that put the vertical in the third column."""
    raw = np.asarray(data.sensors(), dtype=float).reshape(-1, 3)
    if not np.all(np.isfinite(raw)):
        raise SurveyError(f"{source}: sensor positions hold NaN or inf")
    vertical = raw[:, 2] if (np.all(raw[:, 1] == 0) and np.any(raw[:, 2] != 0)) else raw[:, 1]
    return np.column_stack([raw[:, 0], -vertical])


def _errors(data, tokens, keep, traveltimes, absolute_error, relative_error, source):
    has_errors = "err" in tokens and np.any(np.asarray(data["err"]) != 0)
    model_given = absolute_error is not None or relative_error is not None
    if has_errors:
        if model_given:
            raise SurveyError(two_error_sources(source))
        return np.asarray(data["err"], dtype=float)[keep]
    if not model_given:
        if traveltimes is None:
            return None
        raise SurveyError(f"{source}: no 'err' column (standard errors of the picks, s). Pass an error model, "
                          "e.g. read_survey(path, absolute_error=0.25e-9, relative_error=0.01) for "
                          "0.25 ns + 1 % (pyGIMLi's estimateError), or add an 'err' column to the file")
    if traveltimes is None:
        raise SurveyError(f"{source}: an error model was given but the file has no traveltimes 't'")
    return modelled_errors(traveltimes, absolute_error, relative_error, source)


def read_pygimli_survey(path: PathType, *, absolute_error: float | None = None,
                        relative_error: float | None = None,
                        velocity_range: VelocityRange = RADAR_VELOCITY_RANGE) -> Survey:
    """Read a traveltime file (unified data format ``.sgt``, or what ``pg.physics.traveltime.load`` reads).

    Parameters
    ----------
    path : str or Path
        The file.
    absolute_error, relative_error : float, optional
        Error model for files without an ``err`` column (see
        :func:`survey_from_data_container`).
    velocity_range : (float, float) or None
        Plausible apparent velocities in m/s; picks outside are refused as a unit
        mix-up (pyGIMLi files hold times in s). ``None`` skips the check.

    Returns
    -------
    Survey
    """
    path = Path(path)
    require_file(path, "survey file", FileFormatError)
    layout = _unified_rows(path)
    _check_declared_counts(path, layout)
    pg = _pg()
    try:
        data = pg.physics.traveltime.load(str(path))
    except Exception as exc:  # pyGIMLi raises RuntimeError or ValueError from its C++ core
        raise FileFormatError(f"pyGIMLi cannot read {path.name}: {exc}") from exc
    if data.size() == 0:
        raise FileFormatError(f"{path.name}: pyGIMLi read no data (is it a traveltime data file?)")
    flags = _valid_column(layout, data.size())
    if flags is not None:  # pyGIMLi's loader resets 'valid' to its own check; the file's zeros count too
        data["valid"] = np.asarray(data["valid"]) * (flags != 0)
    survey = survey_from_data_container(data, absolute_error=absolute_error, relative_error=relative_error,
                                        source=path.name)
    survey.check_plausible(velocity_range, path.name, "times in s, as pyGIMLi files hold them")
    return survey


#: the most sensors or data a unified data file may declare (pyGIMLi allocates what the header says)
MAX_DECLARED = 10_000_000


class _UnifiedRows(NamedTuple):
    """A unified data file's non-empty rows (tokens, bytes), the column names of the comment before each
    (lower case), and each row's line number."""

    rows: list
    names: list
    numbers: list


def _unified_rows(path: Path) -> _UnifiedRows:
    """Read a unified data file once, for the checks before pyGIMLi reads it and the ``valid`` column after."""
    try:
        with open(path, "rb") as handle:
            lines = [line.split(b"#", 1) for line in handle]
    except OSError as exc:
        raise FileFormatError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    layout, tokens = _UnifiedRows([], [], []), None
    for number, (text, *comment) in enumerate(lines, start=1):
        if text.split():
            layout.rows.append(text.split())
            layout.names.append(tokens)
            layout.numbers.append(number)
        elif comment:
            tokens = comment[0].decode(errors="replace").lower().split()
    return layout


def _check_declared_counts(path: Path, layout: _UnifiedRows) -> None:
    """Refuse a unified data file whose header counts disagree with its rows, or whose data rows pyGIMLi
    would drop without a word (NaN times, sensor numbers out of range), before pyGIMLi reads it.

    The format is ``n_sensors``, that many sensor rows, ``n_data``, that many data rows (``#`` starts a
    comment; the comment before the data names their columns), then optionally a topography count and
    its rows. Files that do not start with a count are left to pyGIMLi.
    """
    rows, names, numbers = layout
    if not rows or len(rows[0]) != 1 or not rows[0][0].isdigit():
        return
    n_sensors = int(rows[0][0])
    data_header = 1 + n_sensors
    if n_sensors > MAX_DECLARED or data_header >= len(rows):
        raise FileFormatError(f"{path.name}: the header declares {n_sensors} sensors but the file holds "
                              f"{max(len(rows) - 1, 0)} rows after it (at most {MAX_DECLARED} are read); fix the "
                              "sensor count on its first line")
    count = rows[data_header]
    if len(count) != 1 or not count[0].isdigit():
        raise FileFormatError(f"{path.name}: after {n_sensors} sensor rows the data count is expected, found "
                              f"{b' '.join(count).decode(errors='replace')!r}; check the sensor count")
    n_data, present = int(count[0]), len(rows) - data_header - 1
    if n_data > MAX_DECLARED or n_data > present:
        raise FileFormatError(f"{path.name}: the header declares {n_data} data but the file holds {present} data "
                              f"rows (at most {MAX_DECLARED} are read); fix the data count")
    _refuse_decimal_commas(path, rows[:data_header + 1 + n_data], numbers)
    _check_trailing_rows(path, rows[data_header + 1 + n_data:], n_data)
    first = data_header + 1
    _check_data_rows(path, rows[first:first + n_data], names[first] if n_data else None, n_sensors)


def _refuse_decimal_commas(path: Path, rows: list, numbers: list) -> None:
    """A number written with a decimal comma (``6,5``) is read by pyGIMLi as another number, silently."""
    for number, row in zip(numbers, rows, strict=False):
        if any(re.fullmatch(rb"[-+]?\d+,\d+([eE][-+]?\d+)?", token) for token in row):
            raise FileFormatError(f"{path.name}: line {number} holds a decimal comma "
                                  f"({b' '.join(row).decode(errors='replace')!r}); write numbers with a decimal "
                                  "point")


def _check_trailing_rows(path: Path, trailing: list, n_data: int) -> None:
    """Rows after the data must be a topography section (its count, then that many rows), or nothing."""
    if not trailing:
        return
    head = trailing[0]
    if len(head) == 1 and head[0].isdigit() and int(head[0]) == len(trailing) - 1:
        return
    raise FileFormatError(f"{path.name}: the header declares {n_data} data but {len(trailing)} more rows follow "
                          "them, which pyGIMLi would ignore; fix the data count (or remove the extra rows)")


def _check_data_rows(path: Path, rows: list, names: list | None, n_sensors: int) -> None:
    """Sensor numbers within 1..n_sensors and finite times in every data row (pyGIMLi drops the others)."""
    if not names:
        return
    for column, name in enumerate(names):
        if name not in ("s", "g", "t"):
            continue
        try:
            values = np.array([float(row[column]) for row in rows])
        except (IndexError, ValueError):
            raise FileFormatError(f"{path.name}: a data row lacks a number in column {name!r} ({' '.join(names)})"
                                  ) from None
        bad = ~np.isfinite(values) if name == "t" else ~((values >= 1) & (values <= n_sensors)
                                                           & (values == np.round(values)))
        if bad.any():
            row = int(np.argmax(bad))
            what = "time is NaN or inf" if name == "t" else f"sensor number is not one of 1..{n_sensors}"
            raise FileFormatError(f"{path.name}: data row {row + 1} ({name} = {rows[row][column].decode()}): its "
                                  f"{what}; {int(bad.sum())} row(s) are, which pyGIMLi would drop. Fix or remove "
                                  "them")


def _valid_column(layout: _UnifiedRows, n_data: int) -> np.ndarray | None:
    """The ``valid`` column of a unified data file, or None if it has none (or is not that format)."""
    rows, names = layout.rows, layout.names
    try:
        n_sensors = int(rows[0][0])
        start = 1 + n_sensors + 1
        tokens = names[start] or []
        if "valid" not in tokens or int(rows[start - 1][0]) != n_data:
            return None
        column = tokens.index("valid")
        return np.array([float(fields[column]) for fields in rows[start:start + n_data]])
    except (IndexError, ValueError):
        return None


def write_pygimli_survey(path: PathType, survey: Survey) -> Path:
    """Write a survey as a pyGIMLi unified data file (``.sgt``), atomically.

    Columns ``s g`` plus ``t`` and ``err`` (s) when the survey has them.
    """
    path = Path(path)
    if path.suffix.lower() not in PYGIMLI_SUFFIXES[:2]:
        raise FileFormatError(f"{path.name}: a pyGIMLi survey is written as .sgt (or .dat), not {path.suffix!r}")
    data = survey_to_data_container(survey)
    tokens = "s g" + (" t" if survey.traveltimes is not None else "") + (" err" if survey.errors is not None else "")
    with atomic_path(path) as tmp:
        data.save(str(tmp), tokens)
        _check_complete(Path(tmp), data.sensorCount() + data.size() + 5)
    return path


def _check_complete(written: Path, lines: int) -> None:
    """Raise an OSError if pyGIMLi's writer stopped short: it reports success even when the disk is full."""
    with open(written, "rb") as handle:
        complete = sum(1 for _ in handle) == lines
    if not complete:
        full = shutil.disk_usage(written.parent).free < 1 << 20
        code = errno.ENOSPC if full else errno.EIO
        raise OSError(code, f"{os.strerror(code)} (pyGIMLi wrote an incomplete file)", str(written))


# ----------------------------------------------------------------------------------------------- meshes


def grid_to_mesh(grid: Grid2D) -> Any:
    """The pyGIMLi regular grid mesh of a :class:`Grid2D` (``y = −z``, cell markers 0).

    Use :func:`model_to_mesh` / :func:`model_from_mesh` for model vectors:
    the mesh numbers its cells from the bottom row up.
    """
    pg = _pg()
    return pg.createGrid(grid.x_edges, -grid.z_edges[::-1])


def mesh_cell_order(mesh: Any, grid: Grid2D) -> np.ndarray:
    """For each cell of ``mesh``, the flat (row-major) index of the geoinv cell it is.

    Raises
    ------
    GridError
        If the mesh's cells are not exactly the grid's cells.
    """
    centres = np.array([[cell.center().x(), -cell.center().y()] for cell in mesh.cells()]).reshape(-1, 2)
    if len(centres) != grid.n_cells:
        raise GridError(f"the mesh has {len(centres)} cells, the grid {grid.n_cells} ({grid.nz} × {grid.nx}); "
                        "build the mesh with geoinv.io.pygimli.grid_to_mesh(grid)")
    rows = np.floor((centres[:, 1] - grid.origin[0]) / grid.spacing[0]).astype(np.int64)
    cols = np.floor((centres[:, 0] - grid.origin[1]) / grid.spacing[1]).astype(np.int64)
    index = rows * grid.nx + cols
    inside = (rows >= 0) & (rows < grid.nz) & (cols >= 0) & (cols < grid.nx)
    if not inside.all() or len(np.unique(index)) != grid.n_cells:
        raise GridError("the mesh's cells do not coincide with the grid's cells (other spacing or origin?); "
                        "build the mesh with geoinv.io.pygimli.grid_to_mesh(grid)")
    return index


def grid_from_mesh(mesh: Any) -> Grid2D:
    """The :class:`Grid2D` of a pyGIMLi regular 2-D grid mesh (equal cells, axis-aligned).

    Raises
    ------
    GridError
        If the mesh is not a regular grid of equal rectangles.
    """
    xs = np.unique(np.round([node.pos().x() for node in mesh.nodes()], 9))
    ys = np.unique(np.round([node.pos().y() for node in mesh.nodes()], 9))
    if len(xs) < 2 or len(ys) < 2 or mesh.cellCount() != (len(xs) - 1) * (len(ys) - 1):
        raise GridError(f"the mesh ({mesh.cellCount()} cells, {mesh.nodeCount()} nodes) is not a regular 2-D "
                        "grid; geoinv models live on pg.createGrid meshes (interpolate other meshes first)")
    dx, dy = np.diff(xs), np.diff(ys)
    if np.ptp(dx) > 1e-6 * dx.mean() or np.ptp(dy) > 1e-6 * dy.mean():
        raise GridError("the mesh's cells differ in size; geoinv grids have equal cells")
    grid = Grid2D((len(ys) - 1, len(xs) - 1), (float(dy.mean()), float(dx.mean())), (float(-ys[-1]), float(xs[0])))
    mesh_cell_order(mesh, grid)  # every cell must be one of the grid's
    return grid


def model_to_mesh(model: TensorLike, grid: Grid2D, mesh: Any = None) -> np.ndarray:
    """Model values ``(nz, nx)`` (or ``(B, nz, nx)``) as pyGIMLi cell vectors in the mesh's cell order.

    Parameters
    ----------
    model : array_like or torch.Tensor
        Values on ``grid``.
    grid : Grid2D
    mesh : pygimli.Mesh, optional
        Target mesh (default :func:`grid_to_mesh`'s order).

    Returns
    -------
    numpy.ndarray, shape (n_cells,) or (B, n_cells)
    """
    array = np.asarray(model.detach().cpu().numpy() if hasattr(model, "detach") else model, dtype=float)
    grid.check_model(array)
    flat = array.reshape(*array.shape[:-2], grid.n_cells)
    order = _default_order(grid) if mesh is None else mesh_cell_order(mesh, grid)
    return flat[..., order]


def model_from_mesh(vector: TensorLike, grid: Grid2D, mesh: Any = None) -> np.ndarray:
    """pyGIMLi cell vector(s) back to geoinv arrays ``(..., nz, nx)``; inverse of :func:`model_to_mesh`."""
    array = np.asarray(vector, dtype=float)
    if array.shape[-1] != grid.n_cells:
        raise GridError(f"the vector has {array.shape[-1]} values, the grid {grid.n_cells} cells")
    order = _default_order(grid) if mesh is None else mesh_cell_order(mesh, grid)
    out = np.empty_like(array)
    out[..., order] = array
    return out.reshape(*array.shape[:-1], grid.nz, grid.nx)


def _default_order(grid: Grid2D) -> np.ndarray:
    """Cell order of :func:`grid_to_mesh`: x fastest, rows from the bottom up."""
    return np.arange(grid.n_cells).reshape(grid.nz, grid.nx)[::-1].ravel()
