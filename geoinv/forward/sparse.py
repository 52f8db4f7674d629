"""A fixed scipy sparse matrix applied to torch batches, with its transpose, per dtype and device."""

from __future__ import annotations

import warnings
from typing import Any

import scipy.sparse as sp
import torch

__all__ = ["TorchSparse"]


def _torch_csr(matrix: sp.csr_matrix, dtype: torch.dtype, device) -> torch.Tensor:
    with warnings.catch_warnings():  # torch flags sparse CSR as beta on every construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.as_tensor(matrix.indptr, dtype=torch.int64),
            torch.as_tensor(matrix.indices, dtype=torch.int64),
            torch.as_tensor(matrix.data, dtype=dtype),
            size=matrix.shape,
            check_invariants=False,
        ).to(device)


class TorchSparse:
    """``A x`` and ``Aᵀ y`` for batches of flat vectors; torch copies are built once per dtype and device.

    Not differentiable by itself: operators differentiate through the one
    autograd bridge of :class:`~geoinv.forward.ForwardOperator`, whose VJP is
    :meth:`rmatmul`.

    Parameters
    ----------
    matrix : scipy.sparse matrix, shape (m, n)
    """

    def __init__(self, matrix: Any) -> None:
        self.matrix = sp.csr_matrix(matrix)
        self._transpose = self.matrix.T.tocsr()
        self._cache: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    def _pair(self, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (dtype, str(device))
        if key not in self._cache:
            self._cache[key] = (_torch_csr(self.matrix, dtype, device), _torch_csr(self._transpose, dtype, device))
        return self._cache[key]

    def matmul(self, vectors: torch.Tensor) -> torch.Tensor:
        """``A x`` for rows ``x`` of ``vectors`` ``(B, n)`` → ``(B, m)``."""
        matrix, _ = self._pair(vectors.dtype, vectors.device)
        return (matrix @ vectors.T).T

    def rmatmul(self, vectors: torch.Tensor) -> torch.Tensor:
        """``Aᵀ y`` for rows ``y`` of ``vectors`` ``(B, m)`` → ``(B, n)``."""
        _, transpose = self._pair(vectors.dtype, vectors.device)
        return (transpose @ vectors.T).T
