"""Units: geoinv computes in SI (m, s, m/s); field crosshole radar data come in ns and m/ns.

This is the one place that knows unit names and factors. Every reader,
writer, problem and option that accepts a unit name looks it up here.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

__all__ = [
    "NS",
    "TIME_UNITS",
    "VELOCITY_UNITS",
    "m_per_ns_to_m_per_s",
    "m_per_s_to_m_per_ns",
    "ns_to_s",
    "s_to_ns",
    "time_factor",
    "velocity_factor",
]

NS = 1e-9  #: one nanosecond in s

#: seconds per unit of time
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": NS}
#: m/s per unit of velocity
VELOCITY_UNITS: dict[str, float] = {"m/s": 1.0, "m/ns": 1.0 / NS}


def _factor(table: dict[str, float], unit, name: str) -> float:
    if isinstance(unit, bytes):
        unit = unit.decode()
    if unit not in table:
        raise ConfigError(f"{name} must be one of {sorted(table)}, got {unit!r}")
    return table[unit]


def time_factor(unit: str, name: str = "time unit") -> float:
    """Seconds per ``unit`` (``'s'`` or ``'ns'``); a :class:`ConfigError` names ``name`` otherwise."""
    return _factor(TIME_UNITS, unit, name)


def velocity_factor(unit: str, name: str = "velocity unit") -> float:
    """m/s per ``unit`` (``'m/s'`` or ``'m/ns'``); a :class:`ConfigError` names ``name`` otherwise."""
    return _factor(VELOCITY_UNITS, unit, name)


def ns_to_s(value: Any) -> Any:
    """Convert times from ns to s."""
    return value * NS


def s_to_ns(value: Any) -> Any:
    """Convert times from s to ns."""
    return value / NS


def m_per_ns_to_m_per_s(value: Any) -> Any:
    """Convert velocities from m/ns to m/s."""
    return value / NS


def m_per_s_to_m_per_ns(value: Any) -> Any:
    """Convert velocities from m/s to m/ns."""
    return value * NS
