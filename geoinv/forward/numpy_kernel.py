"""The one bridge between a numpy forward solver and torch autograd."""

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
      backward pass does not solve again.

    Torch sees them through one ``autograd.Function`` whose backward applies
    the transposed kernel to the incoming gradient, model by model.
    """

    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> torch.Tensor:
        return _NumpyKernelFunction.apply(slowness, self, data_index)

    @abstractmethod
    def simulate_numpy(self, slowness: np.ndarray, data_index: np.ndarray | None = None
                       ) -> tuple[np.ndarray, Any]:
        """Traveltimes (s) of one slowness array (s/m) and the state the kernel can reuse."""

    @abstractmethod
    def _jacobian(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any = None) -> sp.csr_matrix:
        """Fréchet kernel (m) of one model; ``state`` from :meth:`simulate_numpy` or None."""

    def _vjp(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any,
             weights: np.ndarray) -> np.ndarray:
        """``Jᵀ w`` (flat cells) for data weights ``w``; override when it is cheaper than forming ``J``."""
        return self._jacobian(slowness, data_index, state).T @ weights


class _NumpyKernelFunction(torch.autograd.Function):
    """``t = F(s)`` by the operator's numpy solver; backward ``Jᵀ g`` with its kernel."""

    @staticmethod
    def forward(ctx, slowness: torch.Tensor, operator: NumpyKernelOperator, data_index) -> torch.Tensor:
        models = slowness.detach().cpu().double().numpy()
        times, states = zip(*(operator.simulate_numpy(model, data_index) for model in models))
        ctx.operator, ctx.models, ctx.states, ctx.data_index = operator, models, states, data_index
        return torch.as_tensor(np.stack(times), dtype=slowness.dtype, device=slowness.device)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        operator = ctx.operator
        incoming = grad_output.detach().cpu().double().numpy()
        grads = [operator._vjp(model, ctx.data_index, state, g)
                 for model, state, g in zip(ctx.models, ctx.states, incoming)]
        grad = torch.as_tensor(np.stack(grads), dtype=grad_output.dtype, device=grad_output.device)
        return grad.reshape(-1, *operator.grid.shape), None, None
