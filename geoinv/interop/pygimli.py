"""geoinv inside pyGIMLi: modelling classes that ``pg.Inversion`` drives, and results as mesh vectors.

* :class:`GeoinvModelling` — any registered geoinv forward (straight ray,
  eikonal, …) as a ``pg.frameworks.MeshModelling`` on a pyGIMLi grid mesh: the
  model is slowness (s/m) per cell, ``response`` gives traveltimes (s) and
  ``createJacobian`` geoinv's Fréchet kernel (m).
* :class:`LatentModelling` — a structured prior's latent space as pyGIMLi's
  model space: the parameters are the standardised latent vector (for
  geoinv's VAE, z itself), ``response = F(g(z))``, the Jacobian ∂F/∂z by torch.
  With ``cType=0`` and ``lam=1`` pyGIMLi's Gauss-Newton then minimises
  ``χ² + ‖z‖²``, the MAP of the latent Gaussian prior.
* :func:`solutions_to_mesh` — best, mean, std and channel probability of a
  :class:`~geoinv.Solutions` as vectors on the mesh, ready for ``pg.show``.

Examples
--------
>>> fop = GeoinvModelling("eikonal", mesh=mesh, data=data)           # doctest: +SKIP
>>> inv = pg.Inversion(fop=fop); inv.dataTrans = pg.trans.Trans()   # doctest: +SKIP
>>> slowness = inv.run(data["t"], data["err"] / data["t"], lam=30)   # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from .._typing import NoiseStd, TensorLike
from ..errors import ConfigError
from ..forward import ForwardOperator
from ..forward import forward as build_forward
from ..grid import Grid2D
from ..io.pygimli import (
    grid_from_mesh,
    grid_to_mesh,
    mesh_cell_order,
    model_to_mesh,
    survey_from_data_container,
)
from ..problem import InverseProblem
from ..survey import Survey

if TYPE_CHECKING:
    from ..solvers.base import Solutions

__all__ = ["GeoinvModelling", "LatentModelling", "quiet_pygimli", "solutions_to_mesh"]

#: the 95 % interval of N(0, 1) is ±1.96: prior ranges are divided by this to give standard deviations
_RANGE_PER_STD = 2 * 1.959963984540054


@contextmanager
def quiet_pygimli() -> Iterator[Any]:
    """pyGIMLi with its INFO lines and bare prints silenced (warnings still shown); yields ``pygimli``."""
    import pygimli as pg

    logger = logging.getLogger("pyGIMLi")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with redirect_stdout(io.StringIO()):  # ClassicInversion.run prints blank lines at chi² <= 1
            yield pg
    finally:
        logger.setLevel(level)


def _frameworks():
    import pygimli as pg

    return pg, pg.frameworks


def _sparse_to_pygimli(matrix):
    """A scipy sparse matrix as pyGIMLi's ``SparseMapMatrix`` (the type of its traveltime Jacobians).

    The shape is set explicitly: pyGIMLi infers it from the largest indices,
    which drops trailing empty columns (cells no ray crosses) and then reads
    past the model vector in its solver.
    """
    pg, _ = _frameworks()
    coo = sp.coo_matrix(matrix)
    result = pg.matrix.SparseMapMatrix(pg.core.IndexArray(coo.row.astype(np.int64)),
                                       pg.core.IndexArray(coo.col.astype(np.int64)), pg.Vector(coo.data.astype(float)))
    result.setRows(coo.shape[0])
    result.setCols(coo.shape[1])
    return result


def GeoinvModelling(forward: str | ForwardOperator = "straight-ray", mesh: Any = None, data: Any = None, *,
                    grid: Grid2D | None = None, survey: Survey | None = None, **options: Any) -> Any:
    """A geoinv forward operator as a pyGIMLi ``MeshModelling`` (slowness in s/m per cell → times in s).

    Parameters
    ----------
    forward : str or ForwardOperator
        A registered forward name (built on the grid and survey with ``options``)
        or a built operator (then ``mesh``/``data`` may be omitted).
    mesh : pygimli.Mesh, optional
        A regular grid mesh (``pg.createGrid`` or :func:`geoinv.io.pygimli.grid_to_mesh`);
        default the operator's grid.
    data : pygimli.DataContainer, optional
        Traveltime container with ``s`` and ``g``; default the operator's survey.
    grid, survey : optional
        geoinv objects instead of ``mesh`` / ``data``.
    **options
        Forward settings (e.g. ``refine=2`` for the eikonal).

    Returns
    -------
    pygimli.frameworks.MeshModelling
        With ``operator``, ``grid`` and ``survey`` attributes, ``response``,
        ``createJacobian`` and a homogeneous ``createStartModel``.
    """
    return _geoinv_modelling_class()(forward, mesh, data, grid=grid, survey=survey, **options)


def _geoinv_modelling_class():
    pg, frameworks = _frameworks()

    class _GeoinvModelling(frameworks.MeshModelling):
        __doc__ = GeoinvModelling.__doc__

        def __init__(self, forward, mesh, data, *, grid, survey, **options: Any):
            super().__init__()
            if mesh is not None:
                grid = grid_from_mesh(mesh)
            if data is not None:
                survey = survey_from_data_container(data)
            if isinstance(forward, ForwardOperator):
                if options:
                    raise ConfigError("options apply to a forward built by name, not to a built operator")
                operator = forward
                if grid is not None and grid != operator.grid:
                    raise ConfigError("the mesh's grid differs from the operator's grid")
            else:
                if grid is None or survey is None:
                    raise ConfigError("give mesh= (or grid=) and data= (or survey=) to build the forward by name")
                operator = build_forward(forward, grid=grid, survey=survey, **options)
            self.operator, self.grid, self.survey = operator, operator.grid, operator.survey
            self._order: np.ndarray | None = None
            # one matrix for the fop's lifetime, refilled in place: pyGIMLi keeps a raw pointer to it
            self._jacobian = pg.matrix.SparseMapMatrix()
            self.setJacobian(self._jacobian)
            self.setMesh(grid_to_mesh(self.grid) if mesh is None else mesh)

        def createRefinedFwdMesh(self, mesh):  # the geoinv operator has its own discretisation
            return pg.Mesh(mesh)

        def _parameter_order(self) -> np.ndarray:
            """geoinv cell (row-major) of every model parameter."""
            if self._order is None:
                domain = self.paraDomain
                cells = mesh_cell_order(domain, self.grid)
                order = np.empty(self.grid.n_cells, dtype=np.int64)
                order[np.asarray(domain.cellMarkers(), dtype=np.int64)] = cells
                self._order = order
            return self._order

        def slowness(self, model) -> np.ndarray:
            """The model vector (s/m, parameter order) as a geoinv array ``(nz, nx)``."""
            values = np.asarray(model, dtype=float)
            if values.shape != (self.grid.n_cells,):
                raise ConfigError(f"the model has {values.size} values, the mesh {self.grid.n_cells} cells")
            flat = np.empty(self.grid.n_cells)
            flat[self._parameter_order()] = values
            return flat.reshape(self.grid.shape)

        def response(self, model):
            slowness = torch.from_numpy(self.slowness(model))[None]
            with torch.no_grad():
                return self.operator(slowness)[0].double().numpy()

        def createJacobian(self, model):
            kernel = self.operator.jacobian(self.slowness(model))
            self._jacobian.copy_(_sparse_to_pygimli(kernel[:, self._parameter_order()]))

        def createStartModel(self, dataVals=None):
            """Homogeneous slowness: the median of time / straight distance (s/m)."""
            times = self.survey.traveltimes if dataVals is None else np.asarray(dataVals, dtype=float)
            if times is None:
                raise ConfigError("no traveltimes to derive a start model from; pass startModel= to run")
            distance = self.survey.distances
            usable = distance > 0
            return pg.Vector(self.grid.n_cells, float(np.median(times[usable] / distance[usable])))

    return _GeoinvModelling


def LatentModelling(problem: InverseProblem, observed: TensorLike | None = None, noise_std: NoiseStd = None) -> Any:
    """A problem's latent space as pyGIMLi's model space (``pg.frameworks.Modelling``).

    Parameters
    ----------
    problem : InverseProblem
        E.g. ``geoinv.build_problem(survey, geoinv.default_vae(), "eikonal", grid=grid)``
        (data in ns) or any task.
    observed, noise_std : array_like, optional
        With both, the response is the *standardised* residual ``1 + (F(x) − d)/σ``
        and the data to fit are ones with absolute error 1. pyGIMLi's inversion
        takes relative errors; this makes χ² exact even where data are zero.
        Without them the response is ``F(x)`` in the problem's data unit.

    Returns
    -------
    pygimli.frameworks.Modelling
        Parameters ``u`` with ``x = prior_mean + u · prior_range / 3.92``
        (z itself for a standard-normal latent prior); linear model transform,
        ``cType=0`` regularization. ``parameters(u)`` gives x, ``decode(u)`` the model.
    """
    return _latent_modelling_class()(problem, observed, noise_std)


def _latent_modelling_class():
    pg, frameworks = _frameworks()

    class _LatentModelling(frameworks.Modelling):
        __doc__ = LatentModelling.__doc__

        def __init__(self, problem, observed, noise_std):
            super().__init__()
            if (observed is None) != (noise_std is None):
                raise ConfigError("give both observed and noise_std (standardised response) or neither")
            self.problem = problem
            self.mean = problem.prior_mean.double().cpu()
            self.scale = problem.prior_range.double().cpu() / _RANGE_PER_STD
            self._observed = None if observed is None else torch.as_tensor(observed).double().reshape(-1)
            self._noise = (None if noise_std is None
                           else torch.as_tensor(noise_std).double().reshape(-1).expand(problem.n_data))
            self.setMesh(pg.meshtools.createMesh1D(problem.n_parameters))  # one cell per parameter
            self.setRegionProperties("*", trans="lin", cType=0)
            self.modelTrans = pg.trans.Trans()
            self.calls = {"response": 0, "jacobian": 0}
            self._jacobian = pg.Matrix()  # refilled in place: pyGIMLi keeps a raw pointer to it
            self.setJacobian(self._jacobian)

        def parameters(self, model) -> torch.Tensor:
            """The problem's parameters ``(1, n_parameters)`` of pyGIMLi's model vector."""
            return (self.mean + self.scale * torch.as_tensor(np.asarray(model), dtype=torch.float64))[None]

        def decode(self, model) -> torch.Tensor:
            """The model the parameters stand for (decoded facies for latent tomography)."""
            with torch.no_grad():
                return self.problem.model(self.parameters(model).to(self.problem.device).float())[0]

        def response(self, model):
            self.calls["response"] += 1
            with torch.no_grad():
                data = self.problem.forward(self.parameters(model).to(self.problem.device).float())[0]
            data = data.double().cpu()
            if self._observed is not None:
                data = 1.0 + (data - self._observed) / self._noise
            return data.numpy()

        def createJacobian(self, model):
            self.calls["jacobian"] += 1
            jacobian = self.problem.jacobian(self.parameters(model).float())[0] * self.scale[None, :]
            if self._noise is not None:
                jacobian = jacobian / self._noise[:, None]
            self._jacobian.assign(pg.Matrix(jacobian.numpy()))

        def createStartModel(self, dataVals=None):
            return pg.Vector(self.problem.n_parameters, 0.0)

    return _LatentModelling


def solutions_to_mesh(solutions: Solutions, grid: Grid2D, mesh: Any = None, survey: int = 0) -> dict[str, np.ndarray]:
    """A survey's results as pyGIMLi cell vectors (for ``pg.show(mesh, vector)``).

    Parameters
    ----------
    solutions : Solutions
        With models on ``grid`` (latent tomography, or ``pygimli-smooth``).
    grid : Grid2D
    mesh : pygimli.Mesh, optional
        Target mesh (default :func:`geoinv.io.pygimli.grid_to_mesh`'s cell order).
    survey : int
        Which observed data set.

    Returns
    -------
    dict
        ``best`` (facies of the best candidate), ``mean``, ``std``,
        ``channel_probability`` (over accepted candidates, all if none), and
        ``refined`` when the solutions hold refined models.
    """
    if solutions.models is None:
        raise ConfigError("these solutions hold no models to put on a mesh")
    posterior = solutions.posterior()
    maps = {"best": solutions.models[survey, 0]}
    maps.update({name: posterior[name][survey] for name in ("mean", "std", "channel_probability")})
    if solutions.refined is not None:
        maps["refined"] = torch.as_tensor(solutions.refined["models"])[survey, 0]
    vectors = model_to_mesh(torch.stack([m.double() for m in maps.values()]), grid, mesh)
    return dict(zip(maps, vectors))
