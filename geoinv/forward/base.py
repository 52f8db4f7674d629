"""The small interface every tomography forward operator implements."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import GridError, SurveyError
from ..grid import Grid2D
from ..survey import Survey

__all__ = ["ForwardOperator"]


class ForwardOperator(nn.Module):
    """Slowness models → first-arrival traveltimes, batched and differentiable.

    Subclasses implement :meth:`_simulate` on a validated ``(B, nz, nx)``
    tensor and, where they have an explicit Fréchet kernel, :meth:`_jacobian`.
    The base class validates input, handles an unbatched ``(nz, nx)`` model,
    and selects data (``data_index``) for operators that cannot skip work.

    Parameters
    ----------
    grid : Grid2D
        Model grid.
    survey : Survey
        Sensor geometry; every sensor must lie inside the grid.

    Notes
    -----
    ``operator(slowness)`` takes slowness in s/m with shape ``(B, nz, nx)`` (or
    ``(nz, nx)``) and returns traveltimes in s with shape ``(B, n_data)`` (or
    ``(n_data,)``). Gradients flow through ``loss.backward()``: each operator
    applies its transposed Fréchet kernel (ray-length matrix) in the backward pass.

    A new operator is one module with a subclass of this class (or of
    :class:`~geoinv.forward.NumpyKernelOperator` when its core is numpy) and one
    entry point in the group ``geoinv.forwards``.
    """

    #: True for operators with ``t = A s`` (they also expose ``.matrix``).
    linear: bool = False
    #: True if :meth:`_simulate` computes only the data in ``data_index`` (saving work);
    #: otherwise the base class computes all data and selects.
    computes_subsets: bool = False

    def __init__(self, grid: Grid2D, survey: Survey) -> None:
        super().__init__()
        if not isinstance(grid, Grid2D):
            raise GridError(f"grid must be a geoinv.Grid2D, got {type(grid).__name__}")
        if not isinstance(survey, Survey):
            raise SurveyError(f"survey must be a geoinv.Survey, got {type(survey).__name__}")
        survey.check_grid(grid)
        self.grid = grid
        self.survey = survey

    @property
    def n_data(self) -> int:
        return self.survey.n_data

    def forward(self, slowness: torch.Tensor, data_index=None) -> torch.Tensor:
        """Traveltimes (s) of slowness models (s/m).

        Parameters
        ----------
        slowness : torch.Tensor, shape (B, nz, nx) or (nz, nx)
            Slowness in s/m, finite and > 0.
        data_index : array_like of int, optional
            Compute only these data (rows of ``survey.pairs``), in this order;
            operators that can skip work for the others do (the eikonal operator
            solves only the sources involved).

        Returns
        -------
        torch.Tensor, shape (B, n) or (n,), with n = ``n_data`` or ``len(data_index)``
        """
        slowness = self._check_slowness(slowness)
        if slowness.ndim == 2:
            return self.forward(slowness[None], data_index)[0]
        index = None if data_index is None else self._check_index(data_index)
        if index is not None and not self.computes_subsets:
            return self._simulate(slowness, None)[:, torch.as_tensor(index, device=slowness.device)]
        return self._simulate(slowness, index)

    def make_synthetic_data(self, slowness, noise_std=None, generator: torch.Generator | None = None) -> Survey:
        """This operator's survey holding simulated traveltimes of one model, with Gaussian noise.

        Parameters
        ----------
        slowness : array_like, shape (nz, nx)
            Slowness in s/m.
        noise_std : float or array_like of shape (n_data,), optional
            Noise standard deviation per datum in s, stored as the survey's
            errors; noise-free data without errors if omitted.
        generator : torch.Generator, optional
            Random source of the noise.

        Returns
        -------
        Survey
            Same geometry, traveltimes and errors in s.
        """
        with torch.no_grad():
            clean = self.forward(torch.as_tensor(slowness, dtype=torch.float64)).double()
        if noise_std is None:
            return self.survey.with_data(clean.numpy())
        std = np.broadcast_to(np.asarray(noise_std, dtype=float), (self.n_data,))
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64).numpy()
        return self.survey.with_data(clean.numpy() + std * noise, std)

    def jacobian(self, slowness, data_index=None) -> sp.csr_matrix:
        """Fréchet kernel ∂t/∂s at one model: ray lengths in m.

        Parameters
        ----------
        slowness : array_like, shape (nz, nx)
            Slowness in s/m (ignored by linear operators).
        data_index : array_like of int, optional
            Rows to return (default all data).

        Returns
        -------
        scipy.sparse.csr_matrix, shape (n, nz·nx)
            Always sparse CSR, whatever the operator; row ``i`` is datum
            ``data_index[i]``, columns are cells in row-major order.
        """
        model = self._check_slowness(slowness)
        if model.ndim != 2:
            raise GridError(f"jacobian takes one model of shape {self.grid.shape}, got {tuple(model.shape)}")
        model = model.detach().cpu().double().numpy()
        index = None if data_index is None else self._check_index(data_index)
        if index is not None and not self.computes_subsets:
            return self._jacobian(model, None)[index]
        return self._jacobian(model, index)

    def linearization_kernel(self, slowness: np.ndarray) -> sp.csr_matrix:
        """Sparse kernel ``K`` (m) of a local linear model ``t(s') ≈ t(s) + K (s' − s)`` for search stages.

        Default: the exact :meth:`jacobian`. An operator may return a cheaper or
        sparser approximation (the eikonal gives its ray-traced kernel): the
        linear model stays exact at ``s`` whatever ``K`` is.
        """
        return self.jacobian(slowness)

    def _check_slowness(self, slowness) -> torch.Tensor:
        slowness = torch.as_tensor(slowness)
        if not slowness.is_floating_point():
            slowness = slowness.to(torch.float64)
        self.grid.check_model(slowness, "slowness")
        if slowness.ndim not in (2, 3):
            raise GridError(f"slowness must have shape (B, nz, nx) or (nz, nx), got {tuple(slowness.shape)}")
        with torch.no_grad():
            bad = ~torch.isfinite(slowness) | (slowness <= 0)
            if bad.any():
                first = tuple(int(i) for i in bad.nonzero()[0])
                raise GridError(f"slowness must be finite and > 0 (s/m) in every cell; {int(bad.sum())} cell(s) "
                                f"are NaN/inf or <= 0, first at index {first}: check the model and the "
                                "petrophysics map")
        return slowness

    def _check_index(self, data_index) -> np.ndarray:
        index = np.asarray(torch.as_tensor(data_index).cpu()).reshape(-1)
        if index.size == 0 or not np.issubdtype(index.dtype, np.integer):
            raise SurveyError("data_index must be a non-empty array of integer data indices")
        if index.min() < 0 or index.max() >= self.n_data:
            raise SurveyError(f"data_index must lie in 0..{self.n_data - 1}, got {index.min()}..{index.max()}")
        return index

    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> torch.Tensor:
        raise NotImplementedError

    def _jacobian(self, slowness: np.ndarray, data_index: np.ndarray | None) -> sp.csr_matrix:
        """Default kernel: the dense autograd Jacobian (fine for small plug-ins; override it)."""
        model = torch.as_tensor(slowness, dtype=torch.float64)

        def times(flat: torch.Tensor) -> torch.Tensor:
            return self._simulate(flat.reshape(1, *self.grid.shape), data_index)[0]

        dense = torch.autograd.functional.jacobian(times, model.reshape(-1))
        return sp.csr_matrix(dense.numpy())

    def extra_repr(self) -> str:
        return f"grid={self.grid.shape}, n_data={self.n_data}"
