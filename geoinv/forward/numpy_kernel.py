"""Operators whose core is a numpy (or C) solver, model by model, with an explicit Fréchet kernel."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .base import ForwardOperator

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
    """

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

    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> tuple[torch.Tensor, Any]:
        models = slowness.detach().cpu().double().numpy()
        times, states = zip(*(self.simulate_numpy(model, data_index) for model in models))
        return torch.as_tensor(np.stack(times), dtype=slowness.dtype, device=slowness.device), (models, states)

    def _vjp(self, slowness, data_index, state, cotangent: torch.Tensor) -> torch.Tensor:
        models, states = state
        weights = cotangent.detach().cpu().double().numpy()
        grads = [self.vjp_numpy(model, data_index, model_state, w)
                 for model, model_state, w in zip(models, states, weights)]
        return torch.as_tensor(np.stack(grads), dtype=cotangent.dtype,
                               device=cotangent.device).reshape(-1, *self.grid.shape)

    def _jvp(self, slowness, data_index, state, tangent: torch.Tensor) -> torch.Tensor:
        models, states = state
        directions = tangent.detach().cpu().double().numpy().reshape(len(models), -1)
        results = [self.jvp_numpy(model, data_index, model_state, v)
                   for model, model_state, v in zip(models, states, directions)]
        return torch.as_tensor(np.stack(results), dtype=tangent.dtype, device=tangent.device)
