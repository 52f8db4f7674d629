"""Small checks shared by the public constructors (internal)."""

from __future__ import annotations

import numpy as np

from .errors import GeoinvError


def as_finite_array(
    value, name: str, *, ndim: int | None = None, error: type[GeoinvError] = GeoinvError
) -> np.ndarray:
    """Return ``value`` as a float64 array, rejecting NaN/inf and wrong ``ndim``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be numeric: {exc}") from exc
    if ndim is not None and array.ndim != ndim:
        raise error(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise error(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index {first}); "
            "remove or replace them before building the object"
        )
    return array


def require_positive(value: float, name: str, error: type[GeoinvError] = GeoinvError) -> float:
    """Return ``float(value)`` if it is finite and > 0, else raise ``error``."""
    number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise error(f"{name} must be a positive finite number, got {value!r}")
    return number
