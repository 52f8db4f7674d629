"""A forward operator linearised at a batch of models, one sparse kernel per model.

Nonlinear traveltimes cost one eikonal solve per source and step; their local
linear model ``t(s') ≈ t(s_k) + K_k (s' − s_k)`` costs one sparse product. A
search can take many cheap steps on it and refresh it now and then (the
classical bent-ray iteration of traveltime tomography), then finish on the
exact forward.
"""

from __future__ import annotations

import weakref

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import ConfigError
from .base import ForwardOperator
from .sparse import TorchSparse
from .straight_ray import ray_length_matrix

__all__ = ["KERNELS", "LinearizedBatch", "straight_ray_matrix"]

#: kernels a linearisation can use
KERNELS = ("operator", "straight-ray")


_STRAIGHT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def straight_ray_matrix(operator: ForwardOperator) -> sp.csr_matrix:
    """The straight-ray matrix (m) of an operator's grid and survey, built once per operator."""
    if operator not in _STRAIGHT:
        survey = operator.survey
        _STRAIGHT[operator] = ray_length_matrix(operator.grid, survey.source_positions, survey.receiver_positions)
    return _STRAIGHT[operator]


class LinearizedBatch(ForwardOperator):
    """``t_b(s) = t(s_b) + K_b (s − s_b)`` for the b-th model of a batch (s).

    Parameters
    ----------
    operator : ForwardOperator
        The nonlinear operator; it gives the exact times ``t(s_b)``.
    slowness : torch.Tensor, shape (B, nz, nx)
        The linearisation points ``s_b`` (s/m).
    kernel : {'operator', 'straight-ray'}
        ``K_b`` = ``operator.linearization_kernel(s_b)``, or the straight-ray
        matrix of the operator's grid and survey for every b (no bending in the
        kernel, only in the offset: a first-order model-error correction of the
        straight-ray forward).

    Notes
    -----
    Exact at each ``s_b`` whatever the kernel (the offset carries the exact
    times), first-order accurate around it when ``K_b`` is the Jacobian. The
    batch's row order is fixed: row b of any input is linearised at ``s_b``.
    An affine operator: its derivative is ``K_b``, by the same contract as
    every forward (not registered: it exists only for a batch).
    """

    def __init__(self, operator: ForwardOperator, slowness: torch.Tensor, kernel: str = "operator") -> None:
        super().__init__(operator.grid, operator.survey)
        points = operator._check_slowness(slowness).detach().cpu().double()
        if points.ndim != 3:
            raise ConfigError(f"linearise at a batch of models (B, nz, nx), got {tuple(points.shape)}")
        self.batch_size = points.shape[0]
        flat = points.reshape(self.batch_size, -1).numpy()
        matrix = sp.block_diag(self._kernels_at(operator, points, kernel), format="csr")
        exact = operator(points).numpy()
        self._offset = torch.as_tensor(exact - (matrix @ flat.ravel()).reshape(self.batch_size, -1))
        self._kernel = TorchSparse(matrix)

    @staticmethod
    def _kernels_at(operator: ForwardOperator, points: torch.Tensor, kernel: str) -> list[sp.csr_matrix]:
        if kernel == "operator":
            return operator.linearization_kernels(points.numpy())
        if kernel == "straight-ray":
            return [straight_ray_matrix(operator)] * len(points)
        raise ConfigError(f"kernel must be one of {KERNELS}, got {kernel!r}")

    def _check_batch(self, batch: torch.Tensor) -> None:
        if batch.shape[0] != self.batch_size:
            raise ConfigError(f"this linearisation holds {self.batch_size} models; got a batch of "
                              f"{batch.shape[0]} (linearise again for another batch)")

    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> tuple[torch.Tensor, None]:
        self._check_batch(slowness)
        times = self._kernel.matmul(slowness.reshape(1, -1)).reshape(self.batch_size, -1)
        return times + self._offset.to(times.device, times.dtype), None

    def _vjp(self, slowness, data_index, state, cotangent: torch.Tensor) -> torch.Tensor:
        self._check_batch(cotangent)
        return self._kernel.rmatmul(cotangent.reshape(1, -1)).reshape(-1, *self.grid.shape)

    def _jvp(self, slowness, data_index, state, tangent: torch.Tensor) -> torch.Tensor:
        self._check_batch(tangent)
        return self._kernel.matmul(tangent.reshape(1, -1)).reshape(self.batch_size, -1)
