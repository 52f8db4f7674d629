"""InverseProblem: parameters → model → data, batched and differentiable."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ._typing import DataIndex, Device, NoiseStd, TensorLike
from .errors import ConfigError, SurveyError
from .prior.base import REGULARIZATIONS, Prior

if TYPE_CHECKING:
    from .forward.base import ForwardOperator
    from .nuisance import FieldUnknowns
    from .petrophysics import FaciesVelocity

__all__ = ["InverseProblem"]

_PRIOR_RANGE_SAMPLES = 10_000  # prior draws for a range estimate, when a problem gives none


def forward_tangent(batch_map: Callable[[torch.Tensor], torch.Tensor], point: torch.Tensor
                    ) -> tuple[np.ndarray, torch.Tensor]:
    """∂f/∂x at one point of a batched map ``f`` by forward-mode AD, as a float64 ``(f.numel(), x.numel())``
    array, and ``f(point)``."""
    def value(vector):
        result = batch_map(vector[None])[0]
        return result, result.detach()

    tangent, result = torch.func.jacfwd(value, has_aux=True)(point)  # (*result_shape, n_parameters)
    return tangent.detach().reshape(-1, point.numel()).double().cpu().numpy(), result


class InverseProblem:
    """What every solver sees of an inverse problem.

    Parameters
    ----------
    forward : callable
        ``forward(x) -> y``: parameters ``(B, n_parameters)`` to data ``(B, n_data)``,
        differentiable where gradient-based solvers are used. With
        ``forward_takes_index=True`` it is called as ``forward(x, data_index)`` and
        must return only those data, in that order.
    n_parameters, n_data : int
        Sizes of x and y.
    sample_prior : callable
        ``sample_prior(n, generator) -> (n, n_parameters)`` draws from the prior.
    prior_mean, prior_range : array_like, optional
        Centre and width of the prior per parameter (bounds ``mean ± range/2``;
        for unbounded priors the 95 % interval), used by boundary losses and by
        the generic regularizer. Estimated from 10 000 prior draws on first use
        if omitted.
    observed : array_like, shape (n_data,) or (S, n_data), optional
        Observed data, in the problem's data unit.
    noise_std : float or array_like of shape (n_data,), optional
        Standard deviation of each datum's noise (data unit), finite and > 0.
    to_model : callable, optional
        ``to_model(x)``: the model a parameter vector stands for (for latent
        tomography: the decoded facies); identity by default.
    data_groups : list of arrays, optional
        Partition of the data into groups that cost one unit of work each (for
        tomography: the data of one source); solvers may draw minibatches by group.
    name : str
        Short description.
    data_unit : str
        Unit of the data (``'ns'`` for tomography, so that step sizes of the
        reference code apply unchanged).
    forward_takes_index : bool
        Whether ``forward`` computes data subsets itself (see above); otherwise
        the problem computes all data and selects.
    training_data : tuple of tensors, optional
        A fixed training set ``(x, y)`` that learned solvers use instead of prior draws.
    inverse_targets : torch.Tensor, shape (T, n_data), optional
        Data values on which learned inverse networks are trained to be right
        (default: the training data).
    regularizer : callable, optional
        ``regularizer(x, kind) -> (B,)`` for ``kind`` in ``('ring', 'origin', 'none')``;
        default: the prior's (latent problems) or the generic one on standardised x.
    device : str or torch.device
        Where ``forward`` wants its input.
    model_forward : callable, optional
        ``model_forward(models, data_index=None) -> data``: the data of models
        themselves (for latent tomography: facies → traveltimes in the data
        unit), for steps that leave the prior's manifold.
    model_jacobian : callable, optional
        ``model_jacobian(model) -> scipy.sparse matrix (n_data, model.numel())``:
        ∂data/∂model at one model (data unit per model unit). With a model map,
        :meth:`jacobian` chains it with the map's forward-mode Jacobian instead
        of ``n_data`` backward passes.
    operator : geoinv.forward.ForwardOperator, optional
        The tomography forward (its grid and survey), for solvers that work in
        model space (``pygimli-smooth``).
    petrophysics : geoinv.FaciesVelocity, optional
        The facies → slowness map of a tomography problem.
    log_prior : callable, optional
        ``log_prior(x) -> (B,)``: the prior's log-density up to a constant,
        differentiable (samplers need it); default: the latent prior's
        (:attr:`prior`), where the problem has one.

    Notes
    -----
    A solver reads only these public members; anything a new solver needs from a
    problem becomes a declared parameter here.
    """

    def __init__(self, forward: Callable, n_parameters: int, n_data: int, sample_prior: Callable,
                 prior_mean: TensorLike | None = None, prior_range: TensorLike | None = None,
                 observed: TensorLike | None = None, noise_std: NoiseStd = None, to_model: Callable | None = None,
                 data_groups: Sequence[TensorLike] | None = None, name: str = "", data_unit: str = "", *,
                 forward_takes_index: bool = False, training_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                 inverse_targets: torch.Tensor | None = None, regularizer: Callable | None = None,
                 device: Device = "cpu", model_forward: Callable | None = None, model_jacobian: Callable | None = None,
                 operator: ForwardOperator | None = None, petrophysics: FaciesVelocity | None = None,
                 log_prior: Callable | None = None) -> None:
        if int(n_parameters) < 1 or int(n_data) < 1:
            raise ConfigError("n_parameters and n_data must be >= 1")
        self._forward = forward
        self.forward_takes_index = bool(forward_takes_index)
        self.n_parameters = int(n_parameters)
        self.n_data = int(n_data)
        self._sample_prior = sample_prior
        self._to_model = to_model
        self._regularizer = regularizer
        self.name = name
        self.data_unit = data_unit
        self.device = torch.device(device)
        self.model_forward = model_forward
        self.model_jacobian = model_jacobian
        self.operator = operator
        self.petrophysics = petrophysics
        self.data_groups = None if data_groups is None else [np.asarray(g, dtype=np.int64) for g in data_groups]
        self.training_data: tuple[torch.Tensor, torch.Tensor] | None = None
        if training_data is not None:
            if len(training_data) != 2:
                raise ConfigError("training_data must be a pair (parameters, data) of tensors")
            inputs, outputs = training_data
            self.training_data = (torch.as_tensor(inputs), torch.as_tensor(outputs))
        self.inverse_targets = None if inverse_targets is None else torch.as_tensor(inverse_targets)
        self._prior_mean = None if prior_mean is None else self._per_parameter(prior_mean, "prior_mean")
        self._prior_range = None if prior_range is None else self._per_parameter(prior_range, "prior_range")
        self.observed = None if observed is None else self._check_observed(observed)
        self.noise_std = None if noise_std is None else self._check_noise(noise_std)
        #: the generative prior of a latent problem (None for others)
        self.prior: Prior | None = None
        self._log_prior = log_prior

    # -- validation -------------------------------------------------------------
    def _per_parameter(self, value, name: str) -> torch.Tensor:
        tensor = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
        if tensor.numel() == 1:
            tensor = tensor.expand(self.n_parameters).clone()
        if tensor.numel() != self.n_parameters or not torch.isfinite(tensor).all():
            raise ConfigError(f"{name} must hold {self.n_parameters} finite values, got {tuple(tensor.shape)}")
        return tensor

    def _check_observed(self, observed) -> torch.Tensor:
        tensor = torch.as_tensor(observed, dtype=torch.float32)
        if tensor.ndim not in (1, 2) or tensor.shape[-1] != self.n_data:
            raise SurveyError(f"observed must have shape (n_data,) or (S, n_data) with n_data={self.n_data}, "
                              f"got {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise SurveyError("observed data contain NaN/inf values")
        return tensor

    def _check_noise(self, noise_std) -> torch.Tensor:
        tensor = torch.as_tensor(noise_std, dtype=torch.float32).reshape(-1)
        if tensor.numel() == 1:
            tensor = tensor.expand(self.n_data).clone()
        if tensor.numel() != self.n_data:
            raise SurveyError(f"noise_std must be a scalar or hold one value per datum ({self.n_data}), "
                              f"got {tensor.numel()} values")
        if not (torch.isfinite(tensor).all() and (tensor > 0).all()):
            raise SurveyError(f"noise_std must be finite and > 0 ({self.data_unit or 'data unit'}) for every "
                              "datum; give each datum's standard error")
        return tensor

    # -- data ---------------------------------------------------------------------
    def targets(self, observed: TensorLike | None = None) -> torch.Tensor:
        """Observed data as ``(S, n_data)``: ``observed`` if given (validated), else the problem's own."""
        if observed is None:
            if self.observed is None:
                raise ConfigError("no observed data: pass observed= or build the problem with them")
            observed = self.observed
        else:
            observed = self._check_observed(observed)
        return observed.reshape(-1, self.n_data)

    def forward(self, parameters: torch.Tensor, data_index: DataIndex = None) -> torch.Tensor:
        """Simulated data for a batch of parameter vectors.

        Parameters
        ----------
        parameters : torch.Tensor, shape (B, n_parameters)
        data_index : array_like of int, optional
            Only these data, in this order.

        Returns
        -------
        torch.Tensor, shape (B, n_data) or (B, len(data_index))
        """
        if data_index is None:
            return self._forward(parameters, None) if self.forward_takes_index else self._forward(parameters)
        index = torch.as_tensor(np.asarray(data_index, dtype=np.int64)).reshape(-1)
        if self.forward_takes_index:
            return self._forward(parameters, index.numpy())
        data = self._forward(parameters)
        return data[:, index.to(data.device)]

    __call__ = forward

    def misfits(self, data: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RMSE (data unit) and normalised RMSE ``(χ²/N)^½`` of data ``(..., n_data)`` against target.

        The normalised RMSE divides each residual by its datum's ``noise_std``;
        it is None when the problem has no noise level.
        """
        residual = data - target.to(data.device, data.dtype)
        rmse = residual.pow(2).mean(dim=-1).sqrt()
        if self.noise_std is None:
            return rmse, None
        scaled = residual / self.noise_std.to(data.device, data.dtype)
        return rmse, scaled.pow(2).mean(dim=-1).sqrt()

    def jacobian(self, parameters: torch.Tensor) -> torch.Tensor:
        """∂data/∂parameters at each of a batch of parameter vectors.

        Parameters
        ----------
        parameters : torch.Tensor, shape (B, n_parameters)

        Returns
        -------
        torch.Tensor, shape (B, n_data, n_parameters), float64 on the CPU

        Notes
        -----
        With a model map and :attr:`model_jacobian` (latent tomography) it is
        ``∂d/∂m · ∂m/∂x``: the sparse model Jacobian times the decoder's
        Jacobian by forward-mode AD (``n_parameters`` tangents, vectorised),
        not ``n_data`` backward passes. Otherwise reverse mode over the data.
        """
        parameters = torch.as_tensor(parameters).reshape(-1, self.n_parameters).to(self.device)
        if self.model_jacobian is not None and self.has_model:
            tangents, models = zip(*(self._model_tangent(point) for point in parameters))
            return torch.from_numpy(self._model_jacobian_products(torch.stack(models), np.stack(tangents)))

        def data(point):
            return self.forward(point[None])[0]

        return torch.stack([torch.autograd.functional.jacobian(data, point).double().cpu()
                            for point in parameters])

    def _model_tangent(self, point: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """∂model/∂parameters (flat cells × parameters, float64) by forward mode, and the model."""
        return forward_tangent(self.model, point)

    def _model_jacobian_products(self, models: torch.Tensor, tangents: np.ndarray) -> np.ndarray:
        """:attr:`model_jacobian` at each model of a batch times its tangent, ``(B, n_data, n_parameters)``
        (a subclass may form them together)."""
        assert self.model_jacobian is not None  # jacobian() chains only with a model Jacobian
        return np.stack([np.asarray(self.model_jacobian(model) @ tangent)
                         for model, tangent in zip(models, tangents)])

    def model(self, parameters: torch.Tensor) -> torch.Tensor:
        """The model(s) the parameters stand for (the parameters themselves by default)."""
        return parameters if self._to_model is None else self._to_model(parameters)

    @property
    def has_model(self) -> bool:
        """Whether parameters stand for a model other than themselves (e.g. decoded facies)."""
        return self._to_model is not None

    def training_set(self, n: int, generator: torch.Generator | None = None,
                     batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs ``(x, F(x))`` for learned solvers: :attr:`training_data` if the problem
        has a fixed set, else ``n`` prior draws simulated in batches."""
        if self.training_data is not None:
            return self.training_data
        parameters = self.sample_prior(n, generator)
        with torch.no_grad():
            data = torch.cat([self.forward(chunk) for chunk in parameters.split(batch)])
        return parameters, data

    # -- prior ----------------------------------------------------------------------
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` parameter vectors drawn from the prior, shape ``(n, n_parameters)``, on :attr:`device`."""
        return self._sample_prior(n, generator).to(self.device)

    def _estimate_prior_box(self) -> None:
        samples = self.sample_prior(_PRIOR_RANGE_SAMPLES, torch.Generator().manual_seed(0)).float().cpu()
        low, high = torch.quantile(samples, 0.025, dim=0), torch.quantile(samples, 0.975, dim=0)
        if self._prior_mean is None:
            self._prior_mean = (low + high) / 2
        if self._prior_range is None:
            self._prior_range = high - low

    @property
    def prior_mean(self) -> torch.Tensor:
        """Centre of the prior per parameter, shape ``(n_parameters,)`` (estimated lazily if not given)."""
        if self._prior_mean is None:
            self._estimate_prior_box()
        assert self._prior_mean is not None
        return self._prior_mean

    @property
    def prior_range(self) -> torch.Tensor:
        """Width of the prior per parameter (95 % interval for unbounded priors)."""
        if self._prior_range is None:
            self._estimate_prior_box()
        assert self._prior_range is not None
        return self._prior_range

    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds ``mean ∓ range/2`` per parameter."""
        return self.prior_mean - self.prior_range / 2, self.prior_mean + self.prior_range / 2

    def regularization(self, parameters: torch.Tensor, kind: str = "ring") -> torch.Tensor:
        """Prior penalty per parameter vector, shape ``(B,)`` (see :meth:`geoinv.prior.Prior.regularizer`).

        Without a prior's own regularizer, x is standardised as ``u = (x − mean)/(range/3.92)``
        (so a Gaussian's 95 % interval maps to ±1.96) and ``'ring'`` is
        ``(‖u‖ − E‖u‖)²`` under ``u ~ N(0, I)``, ``'origin'`` is ``‖u‖²``.
        """
        if self._regularizer is not None:
            return self._regularizer(parameters, kind)
        if kind not in REGULARIZATIONS:
            raise ConfigError(f"regularization must be one of {REGULARIZATIONS}, got {kind!r}")
        from .prior.base import expected_latent_norm

        mean = self.prior_mean.to(parameters.device, parameters.dtype)
        scale = (self.prior_range / 3.92).clamp_min(1e-12).to(parameters.device, parameters.dtype)
        standard = (parameters - mean) / scale
        if kind == "ring":
            return (standard.norm(dim=1) - expected_latent_norm(self.n_parameters)).pow(2)
        if kind == "origin":
            return standard.pow(2).sum(dim=1)
        return torch.zeros(parameters.shape[0], device=parameters.device, dtype=parameters.dtype)

    def tempered(self, temperature: float) -> InverseProblem:
        """This problem with its prior's decoder at temperature T (``sigmoid(logits / T)``); T = 1: itself.

        Same observed data and noise; only latent problems built from a prior
        with logits have a temperature.
        """
        if temperature == 1:
            return self
        raise ConfigError(f"the problem {self.name!r} has no decoder temperature; use temperature 1")

    def linearized(self, parameters: torch.Tensor, kernel: str = "operator") -> InverseProblem:
        """This problem with its forward linearised at each row of a batch of parameter vectors.

        Only problems with a forward operator can be (see
        :meth:`geoinv.LatentTomography.linearized`); one whose operator is
        linear is returned as is.
        """
        if self.operator is not None and self.operator.linear:
            return self
        raise ConfigError(f"the problem {self.name!r} cannot be linearised (latent tomography with a "
                          "forward operator can); use relinearize=0")

    # -- synthetic data and copies ------------------------------------------------------
    def simulate(self, parameters: torch.Tensor, noise_std: NoiseStd = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy synthetic data ``F(x) + ε``, ``ε ~ N(0, noise_std²)`` per datum (no gradient)."""
        with torch.no_grad():
            clean = self.forward(parameters.to(self.device))
            if noise_std is None:
                return clean
            std = torch.as_tensor(noise_std, dtype=clean.dtype).to(clean.device)
            noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
            return clean + std * noise.to(clean.device)

    @property
    def has_log_prior(self) -> bool:
        """Whether :meth:`log_prior` is defined (given, or the latent prior's)."""
        return self._log_prior is not None or self.prior is not None

    def log_prior(self, parameters: torch.Tensor) -> torch.Tensor:
        """Log-density of the prior at a batch of parameter vectors ``(B, n)``, up to a constant, ``(B,)``."""
        if self._log_prior is not None:
            return self._log_prior(parameters)
        if self.prior is not None:
            return self.prior.log_density(parameters)
        raise ConfigError(f"the problem {self.name!r} has no prior log-density: build it with log_prior= (or a "
                          "latent prior); a prior with discrete parameters cannot be sampled by gradients")

    def with_observed(self, observed: TensorLike | None, noise_std: NoiseStd = None) -> InverseProblem:
        """A copy of this problem holding other observed data (and optionally another noise level)."""
        problem = copy.copy(self)
        problem.observed = self._check_observed(observed)
        if noise_std is not None:
            problem.noise_std = self._check_noise(noise_std)
        return problem

    @classmethod
    def latent_tomography(cls, prior: Prior, petrophysics: FaciesVelocity, forward: ForwardOperator,
                          observed: TensorLike | None = None, noise_std: NoiseStd = None, data_unit: str = "ns",
                          unknowns: FieldUnknowns | None = None) -> InverseProblem:
        """Traveltime tomography in the latent space of a prior's decoder: a
        :class:`~geoinv.latent_tomography.LatentTomography` (see there for the parameters)."""
        from .latent_tomography import LatentTomography

        return LatentTomography(prior, petrophysics, forward, observed, noise_std, data_unit, unknowns)
