"""Floating-point traps that another library switched on for the whole process, switched off again.

pyGIMLi's Triangle meshing (``pg.meshtools.createMesh``) enables hardware traps on
division by zero, invalid operations and overflow, process-wide. numpy and torch
assume IEEE semantics (an inf or NaN is a value), so with the traps on any such
value anywhere kills Python with SIGFPE — no traceback, results lost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import warnings

from .errors import GeoinvWarning

__all__ = ["switch_off_float_traps"]


@functools.cache
def _libm():
    """glibc's libm with ``fegetexcept``/``fedisableexcept`` (GNU extensions), or None elsewhere."""
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    except OSError:
        return None
    return libm if hasattr(libm, "fegetexcept") and hasattr(libm, "fedisableexcept") else None


def switch_off_float_traps() -> int:
    """Switch off floating-point traps that are on, with a warning; returns the trap mask found (0: none).

    Called at the start of every solve; a no-op where the C library cannot tell (not glibc).
    """
    libm = _libm()
    if libm is None:
        return 0
    enabled = int(libm.fegetexcept())
    if enabled:
        libm.fedisableexcept(enabled)
        warnings.warn("floating-point traps were switched on in this process (pyGIMLi's Triangle meshing, "
                      "pg.meshtools.createMesh, does that); geoinv switched them off, since with them on any inf or "
                      "NaN kills Python with SIGFPE. Mesh before or after geoinv as you like; nothing else changes",
                      GeoinvWarning, stacklevel=3)
    return enabled
