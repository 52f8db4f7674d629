"""Operators whose core is a numpy (or C) solver, model by model, with an explicit Fréchet kernel."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import require_count
from ..errors import ConfigError
from ..grid import Grid2D
from ..survey import Survey
from .base import ForwardOperator
from .parallel import ModelPool

__all__ = ["NumpyKernelOperator"]


class NumpyKernelOperator(ForwardOperator):
    """Base of operators whose core is a numpy (or C) solver with an explicit Fréchet kernel.

    Subclasses implement two methods on one ``(nz, nx)`` float64 slowness array:

    - ``simulate_numpy(slowness, data_index) -> (traveltimes, state)``;
    - ``_jacobian(slowness, data_index, state=None) -> csr_matrix``, where
      ``state`` is what ``simulate_numpy`` returned (e.g. time fields), so the
      derivatives do not solve again;

    and, where it is cheaper than forming the kernel, ``vjp_numpy`` and
    ``jvp_numpy`` (the eikonal's adjoint-state solves). This class turns them
    into the batched primitives of :class:`ForwardOperator`, which derives
    backward, :meth:`~ForwardOperator.vjp`, :meth:`~ForwardOperator.jvp` and
    :meth:`~ForwardOperator.jacobian` from them.

    With ``workers > 1`` the models of a batch are solved by that many worker
    processes (:class:`~geoinv.forward.parallel.ModelPool`), for solvers that
    move several models at once (chains, starts, candidates); the results are
    bit-for-bit those of one process. The operator must then be picklable.
    """

    def __init__(self, grid: Grid2D, survey: Survey, workers: int = 1) -> None:
        super().__init__(grid, survey)
        self.workers = require_count(workers, "workers", error=ConfigError,
                                     meaning="worker processes solving the models of a batch; 1: this process")
        self._model_pool: ModelPool | None = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_model_pool"] = None  # a copy (a worker's, a Dask task's) starts its own pool if it needs one
        return state

    def close(self) -> None:
        """Stop the worker processes of ``workers > 1`` (the next batch starts them again)."""
        if self._model_pool is not None:
            self._model_pool.close()
            self._model_pool = None

    @abstractmethod
    def simulate_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None = None
                       ) -> tuple[np.ndarray, Any]:
        """Traveltimes (s) of one slowness array (s/m) and the state the kernel can reuse."""

    @abstractmethod
    def _jacobian(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any = None) -> sp.csr_matrix:
        """Fréchet kernel (m) of one model; ``state`` from :meth:`simulate_numpy` or None."""

    def vjp_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any,
                  weights: np.ndarray) -> np.ndarray:
        """``Jᵀ w`` (flat cells) for data weights ``w``; override when it is cheaper than forming ``J``."""
        return self._jacobian(slowness, data_index, state).T @ weights

    def jvp_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any,
                  tangent: np.ndarray) -> np.ndarray:
        """``J v`` (data) for a flat model-space direction ``v``; override when cheaper than forming ``J``."""
        return self._jacobian(slowness, data_index, state) @ tangent

    def jacobians(self, slowness, data_index=None) -> list[sp.csr_matrix]:
        """:meth:`~ForwardOperator.jacobian` at each model of a batch, in the worker processes
        when there are several."""
        models = self._check_slowness(slowness)
        pool = self._batch_pool(models)
        if pool is None:
            return super().jacobians(slowness, data_index)
        items = [(model, None, "jacobian") for model in models.detach().cpu().double().numpy()]
        return pool.derive("kernel_numpy", items, (self._index_or_none(data_index),))

    def jacobian_products(self, slowness, tangents, data_index=None) -> np.ndarray:
        """:meth:`~ForwardOperator.jacobian_products`, each in a worker process when there are several:
        only the ``(n, k)`` products travel back, not the kernels (megabytes each on the eikonal)."""
        models = self._check_slowness(slowness)
        pool = self._batch_pool(models)
        if pool is None:
            return super().jacobian_products(models, tangents, data_index)
        tangents = self._check_tangents(models, tangents)
        items = list(zip(models.detach().cpu().double().numpy(), [None] * len(models), tangents))
        return np.stack(pool.derive("kernel_product_numpy", items, (self._index_or_none(data_index),)))

    def kernel_product_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any,
                             tangent: np.ndarray) -> np.ndarray:
        """One model's Fréchet kernel times ``tangent`` (a worker's entry)."""
        return np.asarray(self.kernel_numpy(slowness, data_index, state, "jacobian") @ tangent)

    def linearization_kernels(self, slowness: np.ndarray) -> list[sp.csr_matrix]:
        """:meth:`~ForwardOperator.linearization_kernel` at each model of a batch, in the worker
        processes when there are several."""
        models = np.asarray(slowness, dtype=np.float64)
        pool = self._batch_pool(models)
        if pool is None:
            return super().linearization_kernels(models)
        return pool.derive("kernel_numpy", [(model, None, "linearization") for model in models], (None,))

    def kernel_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any, kind: str
                     ) -> sp.csr_matrix:
        """One model's Fréchet kernel (``kind='jacobian'``, the rows of ``data_index``) or linearisation
        kernel (a worker's entry)."""
        if kind != "jacobian":
            return self.linearization_kernel(slowness)
        subset = data_index is not None and not self.computes_subsets
        kernel = self._jacobian(slowness, None if subset else data_index, state)
        return kernel[data_index] if subset else kernel

    def _batch_pool(self, models) -> ModelPool | None:
        """The worker processes for a batch ``(B, nz, nx)`` of two models or more; None where one process
        does the work."""
        return self._pool() if models.ndim == 3 and len(models) >= 2 else None

    def _pool(self) -> ModelPool | None:
        """The worker processes, when there are several (started on the first batch)."""
        if self.workers > 1 and self._model_pool is None:
            self._model_pool = ModelPool(self, self.workers)
        return self._model_pool if self.workers > 1 else None

    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> tuple[torch.Tensor, Any]:
        models = slowness.detach().cpu().double().numpy()
        pool = self._pool() if len(models) > 1 else None
        times: list | tuple
        states: list | tuple
        if pool is not None:
            times, states = pool.simulate(list(models), (data_index,))
        else:
            times, states = zip(*(self.simulate_numpy(model, data_index) for model in models))
        return torch.as_tensor(np.stack(times), dtype=slowness.dtype, device=slowness.device), (models, states)

    def _derive(self, method: str, state: tuple, vectors: np.ndarray, data_index: np.ndarray | None) -> np.ndarray:
        """``method(model, data_index, model_state, vector)`` per model, where the states are."""
        models, states = state
        pool = self._pool() if len(models) > 1 else None
        if pool is not None:
            return np.stack(pool.derive(method, list(zip(models, states, vectors)), (data_index,)))
        call = getattr(self, method)
        return np.stack([call(model, data_index, model_state, vector)
                         for model, model_state, vector in zip(models, states, vectors)])

    def _vjp(self, slowness, data_index, state, cotangent: torch.Tensor) -> torch.Tensor:
        grads = self._derive("vjp_numpy", state, cotangent.detach().cpu().double().numpy(), data_index)
        return torch.as_tensor(grads, dtype=cotangent.dtype, device=cotangent.device).reshape(-1, *self.grid.shape)

    def _jvp(self, slowness, data_index, state, tangent: torch.Tensor) -> torch.Tensor:
        directions = tangent.detach().cpu().double().numpy().reshape(len(state[0]), -1)
        results = self._derive("jvp_numpy", state, directions, data_index)
        return torch.as_tensor(results, dtype=tangent.dtype, device=tangent.device)
