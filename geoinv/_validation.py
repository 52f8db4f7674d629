"""Small checks shared by the public constructors (internal)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import GeoinvError


def as_finite_array(
    value: Any, name: str, *, ndim: int | None = None, error: type[GeoinvError] = GeoinvError
) -> np.ndarray:
    """Return ``value`` as a float64 array, rejecting non-real dtypes, NaN/inf and wrong ``ndim``."""
    check_real_dtype(value, name, error)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} must be numeric (real numbers): {exc}") from exc
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


_DTYPE_NAMES = {"c": "complex", "b": "boolean", "U": "text (string)", "S": "text (bytes)", "M": "date",
                "m": "time-delta", "V": "raw bytes"}


def check_real_dtype(value: Any, name: str, error: type[GeoinvError] = GeoinvError) -> None:
    """Raise ``error`` unless ``value`` holds real numbers (no complex, boolean, text or objects).

    ``np.asarray(..., dtype=float)`` would silently drop imaginary parts, turn
    ``True`` into 1.0 and parse ``b"1e-7"``; none of these is a measurement.
    """
    if isinstance(value, (str, bytes)):
        raise error(f"{name} must be numeric, got the text {value!r}")
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (TypeError, ValueError) as exc:
            raise error(f"{name} must be numeric (real numbers): {exc}") from exc
    kind = np.dtype(dtype).kind if not str(dtype).startswith("torch.") else ("c" if "complex" in str(dtype)
                                                                              else "b" if "bool" in str(dtype)
                                                                              else "f")
    if kind in _DTYPE_NAMES:
        raise error(f"{name} must hold real numbers, got {_DTYPE_NAMES[kind]} values (dtype {dtype}); "
                    "store them as float")
    if kind == "O":
        raise error(f"{name} must hold real numbers, got Python objects (dtype object); store them as float")


def require_positive(value: float, name: str, error: type[GeoinvError] = GeoinvError) -> float:
    """Return ``float(value)`` if it is finite and > 0, else raise ``error``."""
    number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise error(f"{name} must be a positive finite number, got {value!r}")
    return number


def require_count(value: object, name: str, low: int = 1, *, meaning: str = "",
                  error: type[GeoinvError] = GeoinvError) -> int:
    """Return ``int(value)`` if it is an integer (not a bool) >= ``low``, else raise ``error``.

    ``meaning`` (what the count counts) goes into the message in parentheses.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        what = f" ({meaning})" if meaning else ""
        raise error(f"{name} must be an integer >= {low}{what}, got {value!r}")
    return int(value)


def require_file(path: str | os.PathLike, what: str, error: type[GeoinvError] = GeoinvError) -> None:
    """Raise ``error`` naming ``what`` unless ``path`` is an existing file (not a folder)."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a folder, not a file; give the file's path")
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
