"""The small interface every tomography forward operator implements."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import GridError, SurveyError
from ..grid import Grid2D
from ..survey import Survey

__all__ = ["ForwardOperator"]


class ForwardOperator(nn.Module):
    """Slowness models → first-arrival traveltimes, batched and differentiable.

    Subclasses implement :meth:`_simulate` on a ``(B, nz, nx)`` tensor; the base
    class validates shapes and handles an unbatched ``(nz, nx)`` input.

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
    """

    #: True for operators with ``t = A s`` (they also expose ``.matrix``).
    linear: bool = False

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
            Slowness in s/m.
        data_index : array_like of int, optional
            Compute only these data (rows of ``survey.pairs``), in this order;
            operators that can skip work for the others do (the eikonal operator
            solves only the sources involved).

        Returns
        -------
        torch.Tensor, shape (B, n) or (n,), with n = ``n_data`` or ``len(data_index)``
        """
        slowness = torch.as_tensor(slowness)
        if not slowness.is_floating_point():
            slowness = slowness.to(torch.float64)
        self.grid.check_model(slowness, "slowness")
        if slowness.ndim == 2:
            return self.forward(slowness[None], data_index)[0]
        if slowness.ndim != 3:
            raise GridError(f"slowness must have shape (B, nz, nx) or (nz, nx), got {tuple(slowness.shape)}")
        return self._simulate(slowness, None if data_index is None else self._check_index(data_index))

    def _check_index(self, data_index) -> np.ndarray:
        index = np.asarray(torch.as_tensor(data_index).cpu()).reshape(-1)
        if index.size == 0 or not np.issubdtype(index.dtype, np.integer):
            raise SurveyError("data_index must be a non-empty array of integer data indices")
        if index.min() < 0 or index.max() >= self.n_data:
            raise SurveyError(f"data_index must lie in 0..{self.n_data - 1}, got {index.min()}..{index.max()}")
        return index

    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> torch.Tensor:
        raise NotImplementedError

    def jacobian(self, slowness) -> np.ndarray | object:
        """Fréchet kernel ∂t/∂s (ray lengths in m) at one model, shape ``(n_data, nz·nx)``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"grid={self.grid.shape}, n_data={self.n_data}"
