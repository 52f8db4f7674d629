"""Tomography forward operators: slowness (s/m) → first-arrival traveltimes (s)."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .base import ForwardOperator
from .eikonal import Eikonal
from .numpy_kernel import NumpyKernelOperator
from .straight_ray import StraightRay, ray_length_matrix
from .sweeping import SweepingEikonal

__all__ = [
    "FORWARDS",
    "Eikonal",
    "ForwardOperator",
    "NumpyKernelOperator",
    "PyGimliShortestPath",
    "StraightRay",
    "SweepingEikonal",
    "forward",
    "ray_length_matrix",
]

FORWARDS = Registry("geoinv.forwards", "forward operator")


def forward(name: str, **kwargs: Any) -> ForwardOperator:
    """Build a forward operator by its registered name.

    Parameters
    ----------
    name : str
        ``'straight-ray'``, ``'eikonal'``, ``'sweeping-eikonal'``, ``'pygimli'`` or a plug-in registered
        under the entry-point group ``geoinv.forwards``.
    **kwargs
        Passed to the operator (``grid=``, ``survey=`` and its options).

    Examples
    --------
    >>> from geoinv import Grid2D, Survey, forward
    >>> op = forward("straight-ray", grid=Grid2D.crosshole(), survey=Survey.crosshole())
    """
    return FORWARDS.get(name)(**kwargs)


def __getattr__(name: str):
    if name == "PyGimliShortestPath":  # pyGIMLi takes seconds to import: load it on first use
        from .pygimli import PyGimliShortestPath

        return PyGimliShortestPath
    raise AttributeError(name)
