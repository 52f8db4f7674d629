"""The small interface every tomography forward operator implements.

One contract, two derivative primitives. An operator implements
``_simulate`` (traveltimes and whatever state its derivatives reuse) and, when
torch's autograd cannot see through it, ``_vjp`` and ``_jvp``. Everything else
is derived here, in one place: the backward pass (one ``autograd.Function``
for every operator), :meth:`ForwardOperator.vjp`, :meth:`ForwardOperator.jvp`,
:meth:`ForwardOperator.jacobian` and, for linear operators,
:meth:`ForwardOperator.matvec` and :meth:`ForwardOperator.adjoint`.
:func:`geoinv.testing.check_forward` checks the contract.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .._typing import DataIndex, NoiseStd, TensorLike
from ..errors import ConfigError, GridError, SurveyError
from ..grid import Grid2D
from ..survey import Survey

__all__ = ["ForwardOperator"]


class ForwardOperator(nn.Module):
    """Slowness models → first-arrival traveltimes, batched and differentiable.

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
    ``(n_data,)``). Gradients flow through ``loss.backward()``, which applies
    the operator's :meth:`vjp` (for traveltimes: the transposed ray-length
    kernel ``J(s)ᵀ``).

    A subclass implements, on a validated ``(B, nz, nx)`` tensor:

    - ``_simulate(slowness, data_index) -> (traveltimes, state)``;
    - ``_vjp(slowness, data_index, state, cotangent) -> (B, nz, nx)`` and
      ``_jvp(slowness, data_index, state, tangent) -> (B, n)``, where ``state``
      is what ``_simulate`` returned (so derivatives need not solve again).
      The defaults differentiate ``_simulate`` with torch's autograd, which is
      right for an operator written in torch;
    - optionally ``_jacobian(slowness, data_index, state=None)``, an explicit
      sparse kernel for one model (the default assembles it from ``_vjp``).

    ``data_index`` reaches these methods only when :attr:`computes_subsets` is
    true; otherwise the base class computes all data and selects.

    A new operator is one module with a subclass of this class (or of
    :class:`~geoinv.forward.NumpyKernelOperator` when its core is numpy) and one
    entry point in the group ``geoinv.forwards``.
    """

    #: True for operators with ``t = A s``: then ``jacobian`` is ``A`` at every model,
    #: and :meth:`matvec` / :meth:`adjoint` take vectors of any sign.
    linear: bool = False
    #: True if the primitives compute only the data in ``data_index`` (saving work);
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
        """Number of traveltimes (source–receiver pairs) of the survey."""
        return self.survey.n_data

    # -- the public contract ----------------------------------------------------------------------
    def forward(self, slowness: torch.Tensor, data_index: DataIndex = None) -> torch.Tensor:
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
        return _OperatorFunction.apply(slowness, self, self._index_or_none(data_index))

    def vjp(self, slowness: torch.Tensor, cotangent: torch.Tensor, data_index: DataIndex = None) -> torch.Tensor:
        """``J(s)ᵀ w``: data-space vectors pulled back to model space (the backward pass).

        Parameters
        ----------
        slowness : torch.Tensor, shape (B, nz, nx) or (nz, nx)
            Models at which to differentiate (s/m).
        cotangent : torch.Tensor, shape (B, n) or (n,)
            Data-space weights (per s of traveltime), one row per model.
        data_index : array_like of int, optional
            The data the rows of ``cotangent`` stand for (default all).

        Returns
        -------
        torch.Tensor, shape like ``slowness`` (m)
        """
        return self._derivative(self._run_vjp, slowness, cotangent, data_index, "cotangent", data_side=True)

    def jvp(self, slowness: torch.Tensor, tangent: torch.Tensor, data_index: DataIndex = None) -> torch.Tensor:
        """``J(s) v``: the change of the traveltimes along a model-space direction.

        Parameters
        ----------
        slowness : torch.Tensor, shape (B, nz, nx) or (nz, nx)
            Models at which to differentiate (s/m).
        tangent : torch.Tensor, shape like ``slowness``
            Model-space directions (s/m).
        data_index : array_like of int, optional
            Return only these data (default all).

        Returns
        -------
        torch.Tensor, shape (B, n) or (n,) (s)
        """
        return self._derivative(self._run_jvp, slowness, tangent, data_index, "tangent", data_side=False)

    def jacobian(self, slowness: TensorLike, data_index: DataIndex = None) -> sp.csr_matrix:
        """Fréchet kernel ∂t/∂s at one model: ray lengths in m.

        Parameters
        ----------
        slowness : array_like, shape (nz, nx)
            Slowness in s/m.
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
        array = model.detach().cpu().double().numpy()
        index = self._index_or_none(data_index)
        if index is not None and not self.computes_subsets:
            return self._jacobian(array, None)[index]
        return self._jacobian(array, index)

    def jacobians(self, slowness: TensorLike, data_index: DataIndex = None) -> list[sp.csr_matrix]:
        """:meth:`jacobian` at each model of a batch.

        Parameters
        ----------
        slowness : array_like, shape (B, nz, nx)
            Slowness in s/m.
        data_index : array_like of int, optional
            Rows to return (default all data).

        Returns
        -------
        list of scipy.sparse.csr_matrix, each of shape (n, nz·nx)
            Ray lengths in m, one kernel per model. An operator with worker
            processes forms them in parallel.
        """
        models = self._check_slowness(slowness)
        if models.ndim != 3:
            raise GridError(f"jacobians takes a batch of models (B, {self.grid.nz}, {self.grid.nx}), "
                            f"got {tuple(models.shape)}")
        return [self.jacobian(model, data_index) for model in models]

    def jacobian_products(self, slowness: TensorLike, tangents: np.ndarray, data_index: DataIndex = None
                          ) -> np.ndarray:
        """``J(s_b) T_b``: each model's Fréchet kernel times its own few model-space directions.

        What a Gauss-Newton step or a latent Jacobian needs of the kernel
        (``T_b`` = ∂slowness/∂parameters): an operator with worker processes
        returns these small products instead of the kernels themselves.

        Parameters
        ----------
        slowness : array_like, shape (B, nz, nx)
            Slowness in s/m.
        tangents : array_like, shape (B, nz·nx, k)
            Directions in slowness per cell (s/m per unit of each direction).
        data_index : array_like of int, optional
            Rows to return (default all data).

        Returns
        -------
        numpy.ndarray, shape (B, n, k), float64
            Traveltime per unit of each direction (s).
        """
        models = self._check_slowness(slowness)
        tangents = self._check_tangents(models, tangents)
        kernels = self.jacobians(models, data_index)
        return np.stack([np.asarray(kernel @ tangent) for kernel, tangent in zip(kernels, tangents)])

    def _check_tangents(self, models: torch.Tensor, tangents: np.ndarray) -> np.ndarray:
        tangents = np.asarray(tangents, dtype=np.float64)
        if models.ndim != 3 or tangents.ndim != 3 or tangents.shape[:2] != (len(models), self.grid.n_cells):
            raise GridError(f"jacobian_products takes models (B, {self.grid.nz}, {self.grid.nx}) and tangents "
                            f"(B, {self.grid.n_cells}, k) for the same B; got {tuple(models.shape)} and "
                            f"{tangents.shape}")
        return tangents

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """``A v`` of a linear operator for any model-space vectors ``(B, nz, nx)``, signs allowed.

        The linear map itself, for dot tests and linear algebra (:meth:`forward`
        insists on physical slowness); differentiable. (Named as in pylops;
        ``apply`` is torch's ``Module.apply``.)
        """
        self._require_linear("matvec")
        vectors = torch.as_tensor(vectors)
        return _OperatorFunction.apply(vectors.reshape(-1, *self.grid.shape), self, None)

    def adjoint(self, residuals: torch.Tensor) -> torch.Tensor:
        """``Aᵀ r`` of a linear operator: back-project data-space vectors ``(B, n_data)`` to ``(B, nz, nx)``."""
        self._require_linear("adjoint")
        residuals = torch.as_tensor(residuals).reshape(-1, self.n_data)
        with torch.no_grad():
            return self._vjp(None, None, None, residuals)

    def close(self) -> None:
        """Release what the operator holds beyond memory (worker processes); a no-op for most operators."""

    def linearization_kernel(self, slowness: np.ndarray) -> sp.csr_matrix:
        """Sparse kernel ``K`` (m) of a local linear model ``t(s') ≈ t(s) + K (s' − s)`` for search stages.

        An *approximation* used by linearised searches, never the operator's
        derivative (that is :meth:`jacobian`, :meth:`vjp`, :meth:`jvp`). The
        default is the exact :meth:`jacobian`; an operator may return a cheaper
        or sparser kernel (the eikonal gives its ray-traced kernel): the linear
        model stays exact at ``s`` whatever ``K`` is.
        """
        return self.jacobian(slowness)

    def linearization_kernels(self, slowness: np.ndarray) -> list[sp.csr_matrix]:
        """:meth:`linearization_kernel` at each model of a batch ``(B, nz, nx)`` (s/m)."""
        return [self.linearization_kernel(model) for model in np.asarray(slowness)]

    def make_synthetic_data(self, slowness: TensorLike, noise_std: NoiseStd = None,
                            generator: torch.Generator | None = None) -> Survey:
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

    # -- primitives a subclass implements ---------------------------------------------------------
    def _simulate(self, slowness: torch.Tensor, data_index: np.ndarray | None) -> tuple[torch.Tensor, Any]:
        """Traveltimes ``(B, n)`` of a validated batch and the state the derivatives may reuse."""
        raise NotImplementedError(f"{type(self).__name__} must implement _simulate(slowness, data_index)")

    def _vjp(self, slowness: torch.Tensor | None, data_index: np.ndarray | None, state: Any,
             cotangent: torch.Tensor) -> torch.Tensor:
        """``J(s_b)ᵀ w_b`` per model (``slowness`` None: a linear operator's adjoint); default: torch
        autograd through :meth:`_simulate`."""
        if slowness is None:
            raise ConfigError(f"{type(self).__name__}._vjp needs the models at which to differentiate")
        with torch.enable_grad():
            model = slowness.detach().requires_grad_(True)
            times, _ = self._simulate(model, data_index)
            return torch.autograd.grad(times, model, cotangent.to(times.dtype))[0]

    def _jvp(self, slowness: torch.Tensor, data_index: np.ndarray | None, state: Any,
             tangent: torch.Tensor) -> torch.Tensor:
        """``J(s_b) v_b`` per model; default: torch autograd through :meth:`_simulate`."""
        def times(model: torch.Tensor) -> torch.Tensor:
            return self._simulate(model, data_index)[0]

        with torch.enable_grad():
            return torch.autograd.functional.jvp(times, slowness.detach(), tangent)[1]

    def _jacobian(self, slowness: np.ndarray, data_index: np.ndarray | None, state: Any = None) -> sp.csr_matrix:
        """Sparse ∂t/∂s (m) of one float64 model ``(nz, nx)``; default: one :meth:`_vjp` per datum.

        ``state`` is what :meth:`_simulate` returned for this model as a batch
        of one (None: simulate first). Override it where the kernel has a
        cheaper explicit form.
        """
        model = torch.as_tensor(slowness)[None]
        with torch.no_grad():
            if state is None:
                _, state = self._simulate(model, data_index)
            n = self.n_data if data_index is None else len(data_index)
            rows = [self._vjp(model, data_index, state, unit[None]).reshape(-1)
                    for unit in torch.eye(n, dtype=model.dtype)]
        return sp.csr_matrix(torch.stack(rows).numpy())

    # -- plumbing ---------------------------------------------------------------------------------
    def _derivative(self, primitive, slowness, vectors, data_index, name: str, data_side: bool) -> torch.Tensor:
        """Validate, simulate for the state, apply ``primitive`` (``_run_vjp`` or ``_run_jvp``)."""
        slowness, vectors, single = self._check_pair(slowness, vectors, data_index, name, data_side)
        index = self._index_or_none(data_index)
        with torch.no_grad():
            _, state = self._run_simulate(slowness, index)
            result = primitive(slowness, index, state, vectors)
        return result[0] if single else result

    def _run_simulate(self, slowness, index):
        if index is not None and not self.computes_subsets:
            times, state = self._simulate(slowness, None)
            return times[:, torch.as_tensor(index, device=times.device)], state
        return self._simulate(slowness, index)

    def _run_vjp(self, slowness, index, state, cotangent):
        if index is not None and not self.computes_subsets:
            full = cotangent.new_zeros(cotangent.shape[0], self.n_data)
            full.index_add_(1, torch.as_tensor(index, device=full.device), cotangent)
            return self._vjp(slowness, None, state, full)
        return self._vjp(slowness, index, state, cotangent)

    def _run_jvp(self, slowness, index, state, tangent):
        if index is not None and not self.computes_subsets:
            result = self._jvp(slowness, None, state, tangent)
            return result[:, torch.as_tensor(index, device=result.device)]
        return self._jvp(slowness, index, state, tangent)

    def _index_or_none(self, data_index) -> np.ndarray | None:
        return None if data_index is None else self._check_index(data_index)

    def _require_linear(self, what: str) -> None:
        if not self.linear:
            raise ConfigError(f"{type(self).__name__} is not linear: it has no {what}(); use vjp/jvp at a model")

    def _check_pair(self, slowness, vectors, data_index, name: str, data_side: bool):
        slowness = self._check_slowness(slowness)
        single = slowness.ndim == 2
        slowness = slowness[None] if single else slowness
        vectors = torch.as_tensor(vectors, dtype=slowness.dtype, device=slowness.device)
        vectors = vectors[None] if single else vectors
        n = self.n_data if data_index is None else len(np.asarray(data_index).reshape(-1))
        expected = (slowness.shape[0], n) if data_side else tuple(slowness.shape)
        if tuple(vectors.shape) != expected:
            raise GridError(f"{name} must have shape {expected[1:] if single else expected} to match the "
                            f"slowness and data_index, got {tuple(vectors.shape)}")
        return slowness, vectors, single

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

    def extra_repr(self) -> str:
        return f"grid={self.grid.shape}, n_data={self.n_data}"


class _OperatorFunction(torch.autograd.Function):
    """The one autograd bridge: ``t = F(s)`` by ``_simulate``, backward ``J(s)ᵀ g`` by ``_vjp``."""

    @staticmethod
    def forward(ctx, slowness: torch.Tensor, operator: ForwardOperator, index) -> torch.Tensor:
        times, state = operator._run_simulate(slowness.detach(), index)
        ctx.operator, ctx.index, ctx.state = operator, index, state
        ctx.save_for_backward(slowness)
        return times

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        (slowness,) = ctx.saved_tensors
        grad = ctx.operator._run_vjp(slowness.detach(), ctx.index, ctx.state, grad_output)
        return grad.reshape(slowness.shape).to(slowness.dtype), None, None
