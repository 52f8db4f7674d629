"""Pick files as they come from the field: one pick per line, in columns.

A column file holds one first-arrival pick per line: the source position, the
receiver position, the time and (optionally) its standard error, separated by
commas, semicolons, tabs or spaces. Lines starting with ``#`` are comments.
Which column is which comes from, in this order:

1. ``columns=`` (the CLI's ``--columns``): one role per column of the file,
   e.g. ``"sx,sz,rx,rz,t,err"``; ``-`` skips a column;
2. a header line naming the columns (names as in :data:`COLUMN_ALIASES`,
   case-insensitive, e.g. ``sx sz rx rz t err`` or ``source_x,source_z,...``);
3. otherwise the documented default order ``sx sz rx rz t [err]``.

Positions are in m (z positive downward); times and errors are in
``time_unit`` (default ns, as radar picks are written). Sensors are the unique
positions (to 1 µm): the same borehole position in many lines is one sensor.
Two picks of the same source–receiver pair are refused, naming both lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from .._typing import PathType, VelocityRange
from .._validation import require_file
from ..errors import FileFormatError, SurveyError
from ..survey import RADAR_VELOCITY_RANGE, Survey, modelled_errors, two_error_sources
from ..units import time_factor

__all__ = ["COLUMN_ALIASES", "COLUMN_SUFFIXES", "read_column_survey", "write_column_survey"]

COLUMN_SUFFIXES = (".txt", ".csv", ".tsv")
#: accepted names of each column role (header names and ``columns=`` entries), case-insensitive
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "sx": ("sx", "source_x", "xs", "x_source", "src_x"),
    "sz": ("sz", "source_z", "zs", "z_source", "src_z", "source_depth"),
    "rx": ("rx", "receiver_x", "xr", "x_receiver", "rec_x"),
    "rz": ("rz", "receiver_z", "zr", "z_receiver", "rec_z", "receiver_depth"),
    "t": ("t", "time", "traveltime", "pick", "tt"),
    "err": ("err", "error", "sigma", "std", "dt"),
}
_REQUIRED = ("sx", "sz", "rx", "rz", "t")
_SKIP = "-"
_ROLE_OF = {alias: role for role, aliases in COLUMN_ALIASES.items() for alias in aliases}
_SENSOR_DECIMALS = 6  # positions equal to 1 µm are one sensor


def _split(line: str) -> list[str]:
    return [token for token in re.split(r"[,;\s]+", line.strip()) if token]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _roles(names: list[str], source: str, origin: str) -> list[str]:
    """Column roles from names (a header or ``columns=``); ``-`` for skipped columns."""
    roles = []
    for name in names:
        key = name.strip().lower()
        if key == _SKIP:
            roles.append(_SKIP)
            continue
        if key not in _ROLE_OF:
            known = ", ".join(f"{role} ({'/'.join(aliases[1:3])})" for role, aliases in COLUMN_ALIASES.items())
            raise FileFormatError(f"{source}: {origin} names an unknown column {name!r}; columns are {known}, "
                                  f"or '-' to skip one. Pass --columns (columns=) to say which is which")
        roles.append(_ROLE_OF[key])
    repeated = sorted({role for role in roles if role != _SKIP and roles.count(role) > 1})
    missing = [role for role in _REQUIRED if role not in roles]
    if repeated or missing:
        problem = f"names {repeated} twice" if repeated else f"lacks {missing}"
        raise FileFormatError(f"{source}: {origin} {problem}; a pick file needs the columns sx, sz, rx, rz, t "
                              "(and optionally err), e.g. --columns sx,sz,rx,rz,t,err")
    return roles


def _parse_columns(columns) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        return [name for name in re.split(r"[,\s]+", columns.strip()) if name]
    return [str(name) for name in columns]


def _read_rows(path: Path, columns) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Roles, the numeric table (rows × columns) and the 1-based line number of each row."""
    source = path.name
    given = _parse_columns(columns)
    roles: list[str] | None = None if given is None else _roles(given, source, "columns=")
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    header_seen = False
    with open(path, encoding="utf-8", errors="strict") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = _split(line.split("#", 1)[0])
            if not tokens:
                continue
            if not rows and not header_seen and not all(_is_number(token) for token in tokens):
                header_seen = True  # a header; columns= (when given) overrides its names
                if roles is None:
                    roles = _roles(tokens, source, f"the header (line {number})")
                continue
            if roles is None:
                roles = ["sx", "sz", "rx", "rz", "t", "err"][:len(tokens)] if len(tokens) in (5, 6) else []
                if not roles:
                    raise FileFormatError(
                        f"{source}: line {number} has {len(tokens)} columns and the file has no header; without "
                        "one geoinv reads 'sx sz rx rz t [err]' (5 or 6 columns). Add a header line naming the "
                        "columns or pass --columns (columns=), e.g. --columns sx,sz,rx,rz,t,err")
            if len(tokens) != len(roles):
                raise FileFormatError(f"{source}: line {number} has {len(tokens)} columns, expected {len(roles)} "
                                      f"({' '.join(roles)}); every pick needs every column")
            try:
                values = [float(token) for token in tokens]
            except ValueError:
                bad = next(token for token in tokens if not _is_number(token))
                raise FileFormatError(f"{source}: line {number} holds {bad!r}, not a number") from None
            rows.append(values)
            line_numbers.append(number)
    if not rows:
        raise FileFormatError(f"{source}: no picks (every line is empty, a comment or the header)")
    return roles or [], np.asarray(rows, dtype=float), np.asarray(line_numbers)


def _sensors(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique positions in order of first appearance, and each row's index into them."""
    rounded = np.round(positions, _SENSOR_DECIMALS)
    _, first, inverse = np.unique(rounded, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return positions[first[order]], rank[inverse.reshape(-1)]


def _refuse_duplicates(pairs: np.ndarray, lines: np.ndarray, source: str) -> None:
    _, first, counts = np.unique(pairs, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        repeated = pairs[first[np.argmax(counts > 1)]]
        rows = np.flatnonzero((pairs == repeated).all(axis=1))
        raise SurveyError(f"{source}: lines {', '.join(str(lines[row]) for row in rows)} pick the same source and "
                          f"receiver ({int((counts > 1).sum())} pair(s) are picked more than once); keep one pick "
                          "per pair (average repeated picks and give their error)")


def read_column_survey(path: PathType, columns: str | Sequence[str] | None = None, *, time_unit: str = "ns",
                       absolute_error: float | None = None, relative_error: float | None = None,
                       velocity_range: VelocityRange = RADAR_VELOCITY_RANGE) -> Survey:
    """Read a pick file in columns (see :mod:`geoinv.io.columns` for the layout).

    Parameters
    ----------
    path : str or Path
        The file (``.txt``, ``.csv``, ``.tsv``).
    columns : str or list of str, optional
        Role of each column, e.g. ``"sx,sz,rx,rz,t,err"`` (``-`` skips a column);
        default: the header's names, or ``sx sz rx rz t [err]``.
    time_unit : {'ns', 's', 'ms', 'us'}
        Unit of the times and errors in the file.
    absolute_error, relative_error : float, optional
        Error model ``absolute_error + relative_error · t`` (s, fraction) for a
        file without an ``err`` column.
    velocity_range : (float, float) or None
        Plausible apparent velocities in m/s (default: crosshole radar); picks
        outside are refused as a unit mix-up. ``None`` skips the check.

    Returns
    -------
    Survey
        Unique sources and receivers, one datum per line, times and errors in s.

    Raises
    ------
    FileFormatError
        Unknown or missing columns, a line with another column count, a value that is not a number.
    SurveyError
        Repeated picks of one pair, negative or implausible times, errors <= 0.

    Examples
    --------
    >>> survey = geoinv.read_column_survey("picks.txt", "sx,sz,rx,rz,t,err", time_unit="ns")  # doctest: +SKIP
    """
    path = Path(path)
    factor = time_factor(time_unit, "time_unit")
    require_file(path, "pick file", FileFormatError)
    try:
        roles, table, lines = _read_rows(path, columns)
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path.name}: not a text file of picks ({exc.reason} at byte {exc.start}); "
                              "pick files are plain text in columns") from None
    column = {role: table[:, roles.index(role)] for role in roles if role != _SKIP}
    bad = ~np.isfinite(table[:, [roles.index(role) for role in column]]).all(axis=1)
    if bad.any():
        raise SurveyError(f"{path.name}: line {lines[np.argmax(bad)]} holds NaN or inf ({int(bad.sum())} line(s) do);"
                          " remove picks that were not made")
    sources, source_index = _sensors(np.column_stack([column["sx"], column["sz"]]))
    receivers, receiver_index = _sensors(np.column_stack([column["rx"], column["rz"]]))
    pairs = np.column_stack([source_index, receiver_index]).astype(np.int64)
    _refuse_duplicates(pairs, lines, path.name)
    times = column["t"] * factor
    errors = _errors(column.get("err"), times, factor, absolute_error, relative_error, path.name)
    negative = times < 0
    if negative.any():
        raise SurveyError(f"{path.name}: line {lines[np.argmax(negative)]} has a negative time "
                          f"({column['t'][np.argmax(negative)]:g} {time_unit}); first arrivals take time. Is a "
                          "time-zero correction applied twice?")
    survey = Survey(sources, receivers, pairs, times, errors)
    survey.check_plausible(velocity_range, label=path.name, unit_hint=f"time_unit = {time_unit!r} (--time-unit)")
    return survey


def _errors(column, times, factor, absolute_error, relative_error, source) -> np.ndarray:
    model_given = absolute_error is not None or relative_error is not None
    if column is not None:
        if model_given:
            raise SurveyError(two_error_sources(source))
        if not (column > 0).all():
            raise SurveyError(f"{source}: errors must be > 0 (standard deviations of the picks); "
                              f"{int((column <= 0).sum())} are not")
        return column * factor
    if not model_given:
        raise SurveyError(f"{source}: no 'err' column (standard errors of the picks). Pass an error model, e.g. "
                          "--absolute-error 0.8e-9 (absolute_error=, in s), or add an 'err' column")
    return modelled_errors(times, absolute_error, relative_error, source)


def write_column_survey(path: PathType, survey: Survey, time_unit: str = "ns") -> Path:
    """Write a survey with traveltimes as a column file ``sx sz rx rz t [err]`` (header line, times in ``time_unit``).

    Written atomically; :func:`read_column_survey` reads it back.
    """
    path = Path(path)
    if survey.traveltimes is None:
        raise SurveyError("the survey holds no traveltimes to write; attach them with survey.with_data(t, errors)")
    factor = time_factor(time_unit, "time_unit")
    names = ["sx", "sz", "rx", "rz", "t"]
    table = [survey.source_positions, survey.receiver_positions, survey.traveltimes / factor]
    if survey.errors is not None:
        names.append("err")
        table.append(survey.errors / factor)
    delimiter = "," if path.suffix.lower() == ".csv" else " "
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.column_stack(table), fmt="%.9g", delimiter=delimiter, header=delimiter.join(names),
                   comments="")
    return path
