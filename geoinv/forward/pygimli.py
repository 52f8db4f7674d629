"""pyGIMLi's shortest-path (Dijkstra) traveltimes behind the geoinv interface."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ..grid import Grid2D
from ..io.pygimli import grid_to_mesh, mesh_cell_order, survey_to_data_container
from ..survey import Survey
from .numpy_kernel import NumpyKernelOperator

__all__ = ["PyGimliShortestPath"]


def _import_pygimli():
    import pygimli

    return pygimli


class PyGimliShortestPath(NumpyKernelOperator):
    """First arrivals by pyGIMLi's ``TravelTimeDijkstraModelling`` (a cross-check).

    Parameters
    ----------
    grid : Grid2D
        Model grid; turned into a pyGIMLi grid mesh (y = −z, every cell its own marker).
    survey : Survey
        Sensor geometry.
    secondary_nodes : int, default 3
        Secondary nodes per cell edge (pyGIMLi's ``secNodes``); more is more accurate.

    Notes
    -----
    Slow on purpose of comparison: pyGIMLi rebuilds the ray paths for every
    Jacobian (about 14 s on the reference survey with 3 secondary nodes).
    The three pyGIMLi pitfalls are handled here: its vertical axis is y,
    negative downward; its Jacobian writes each ray segment into the column of
    the cell's *marker*, so every cell gets its own; and it snaps sensors to
    mesh nodes silently, so a warning is issued when a sensor is not on a node.
    Slowness is rescaled to order one before it is handed to pyGIMLi.
    """

    def __init__(self, grid: Grid2D, survey: Survey, secondary_nodes: int = 3) -> None:
        super().__init__(grid, survey)
        if int(secondary_nodes) < 0:
            raise ConfigError(f"secondary_nodes must be >= 0, got {secondary_nodes!r}")
        pg = _import_pygimli()
        self.secondary_nodes = int(secondary_nodes)
        mesh = grid_to_mesh(grid)
        for cell in mesh.cells():
            cell.setMarker(cell.id())
        self._to_geoinv = mesh_cell_order(mesh, grid)  # pyGIMLi cell k is geoinv cell _to_geoinv[k]
        self.mesh = mesh.createMeshWithSecondaryNodes(self.secondary_nodes) if self.secondary_nodes else mesh
        self._warn_off_node(survey)
        self.data = survey_to_data_container(survey)
        self._core = pg.core.TravelTimeDijkstraModelling(self.mesh, self.data)

    def _warn_off_node(self, survey: Survey) -> None:
        grid = self.grid
        for name, positions in (("sources", survey.sources), ("receivers", survey.receivers)):
            fx = (positions[:, 0] - grid.origin[1]) / grid.spacing[1]
            fz = (positions[:, 1] - grid.origin[0]) / grid.spacing[0]
            off = (np.abs(fx - np.round(fx)) > 1e-6) | (np.abs(fz - np.round(fz)) > 1e-6)
            if off.any():
                warnings.warn(f"{int(off.sum())} {name} are not on cell corners; pyGIMLi will move "
                              "them to the nearest mesh node", stacklevel=3)

    def _pg_slowness(self, slowness: np.ndarray) -> tuple[object, float]:
        pg = _import_pygimli()
        flat = np.asarray(slowness, dtype=float).ravel()
        scale = float(np.mean(flat))
        return pg.Vector(flat[self._to_geoinv] / scale), scale

    def response(self, slowness: np.ndarray) -> np.ndarray:
        """Traveltimes (s) for one ``(nz, nx)`` slowness array (s/m)."""
        vector, scale = self._pg_slowness(slowness)
        return np.asarray(self._core.response(vector)) * scale

    def simulate_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None = None) -> tuple[np.ndarray, None]:
        """Traveltimes (s) of all data for one slowness array (pyGIMLi cannot skip data)."""
        return self.response(slowness), None

    def _jacobian(self, slowness: np.ndarray, data_index=None, state=None) -> sp.csr_matrix:
        """pyGIMLi's ray-length Jacobian (m) in geoinv cell order, ``(n_data, nz·nx)``."""
        pg = _import_pygimli()
        vector, _ = self._pg_slowness(slowness)
        self._core.createJacobian(vector)
        coo = pg.utils.sparseMatrix2coo(self._core.jacobian())
        columns = self._to_geoinv[coo.col]
        matrix = sp.coo_matrix((coo.data, (coo.row, columns)), shape=(self.n_data, self.grid.n_cells))
        return matrix.tocsr()
