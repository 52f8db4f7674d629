"""The prior's canvas: where a survey sits among the cells of the models a prior makes.

A prior makes models of one shape (the default VAE: 129 × 65 cells of 0.1 m).
A survey on a smaller grid, or with no grid at all, is inverted on a grid of
the prior's shape that holds it: the *canvas*.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError
from .grid import Grid2D
from .survey import Survey

__all__ = ["DEFAULT_CELL_SIZE", "describe_placement", "place_on_canvas"]

#: cell size (m) of the shipped prior's models
DEFAULT_CELL_SIZE = 0.1


def place_on_canvas(survey: Survey, model_shape: tuple[int, int], spacing: float = DEFAULT_CELL_SIZE,
                    grid: Grid2D | None = None, label: str = "the survey") -> Grid2D:
    """The grid of the prior's shape on which ``survey`` is inverted.

    Parameters
    ----------
    survey : Survey
        Its sensors must lie on the canvas.
    model_shape : (int, int)
        ``(nz, nx)`` of the prior's models.
    spacing : float
        Cell size in m of the prior's models (the shipped prior: 0.1 m).
    grid : Grid2D, optional
        The survey's own grid. Of the prior's shape: used as it is. Smaller, with
        cells of ``spacing``: the canvas starts at its origin (its top-left
        corner), as in batch inversion. None: the canvas is centred on the
        sensors, its origin on a whole multiple of ``spacing``.
    label : str
        Names the survey in errors.

    Returns
    -------
    Grid2D

    Raises
    ------
    ConfigError
        A grid with other cells, or a grid or sensor spread larger than the canvas
        (both sizes named).
    """
    model_shape = (int(model_shape[0]), int(model_shape[1]))
    if grid is not None and grid.shape == model_shape:
        survey.check_grid(grid)
        return grid
    size = (model_shape[0] * spacing, model_shape[1] * spacing)
    if grid is not None:
        if not np.allclose(grid.spacing, spacing, rtol=1e-6):
            raise ConfigError(f"{label}: cells of {grid.spacing} m, but the prior was trained for {spacing} m cells; "
                              "resample the grid or use a prior for its cell size")
        if grid.nz > model_shape[0] or grid.nx > model_shape[1]:
            raise ConfigError(f"{label}: its grid {grid.shape} (nz, nx) does not fit the prior's models "
                              f"{model_shape} of {spacing:g} m cells; train a prior for {grid.shape} or "
                              "shorten the survey's grid")
        canvas = Grid2D(model_shape, spacing, grid.origin)
    else:
        positions = np.vstack([survey.sources, survey.receivers])  # (x, z)
        low, high = positions.min(axis=0), positions.max(axis=0)
        spread = high - low
        if spread[1] > size[0] or spread[0] > size[1]:
            raise ConfigError(f"{label}: the sensors span {spread[0]:g} m × {spread[1]:g} m (x × z), more than the "
                              f"prior's canvas of {size[1]:g} m × {size[0]:g} m ({model_shape[1]} × "
                              f"{model_shape[0]} cells of {spacing:g} m); train a prior for a larger canvas "
                              "(geoinv train-vae --nz --nx) or invert part of the survey")
        origin_x = _centred_origin(low[0], high[0], size[1], spacing)
        origin_z = _centred_origin(low[1], high[1], size[0], spacing)
        canvas = Grid2D(model_shape, spacing, (origin_z, origin_x))
    survey.check_grid(canvas)
    return canvas


def _centred_origin(low: float, high: float, size: float, spacing: float) -> float:
    """The origin that centres [low, high] in a canvas of ``size``, on a whole cell if one keeps it inside."""
    centred = math.floor(((low + high) / 2 - size / 2) / spacing + 1e-9)
    first, last = math.ceil((high - size) / spacing - 1e-9), math.floor(low / spacing + 1e-9)
    if first > last:  # the sensors fill the canvas: no whole-cell origin holds them
        return float(low)
    return min(max(centred, first), last) * spacing


def describe_placement(canvas: Grid2D) -> str:
    """One line that says where the canvas lies (for results and terminals)."""
    return (f"{canvas.nx} × {canvas.nz} cells of {canvas.spacing[1]:g} m: x {canvas.x_edges[0]:g} to "
            f"{canvas.x_edges[-1]:g} m, z {canvas.z_edges[0]:g} to {canvas.z_edges[-1]:g} m")
