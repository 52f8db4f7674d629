"""Traveltime tomography in the latent space of a generative prior: decoder ∘ petrophysics ∘ forward."""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch

from ._typing import DataIndex, NoiseStd, TensorLike
from .errors import ConfigError
from .forward.base import ForwardOperator
from .forward.linearized import LinearizedBatch
from .nuisance import FieldUnknowns
from .petrophysics import FaciesVelocity
from .prior.base import Prior
from .problem import InverseProblem, forward_tangent
from .units import time_factor

__all__ = ["LatentTomography"]


class LatentTomography(InverseProblem):
    """Traveltime tomography in the latent space of a prior's decoder.

    Parameters
    ----------
    prior : geoinv.prior.Prior
        ``g(z)`` with models in [0, 1] of the forward operator's grid shape
        (the VAE, or any registered prior).
    petrophysics : geoinv.FaciesVelocity
        Facies → slowness map.
    forward : geoinv.forward.ForwardOperator
        Slowness (s/m) → traveltimes (s).
    observed : array_like, optional
        Traveltimes in ``data_unit``; default: the survey's traveltimes, if any.
    noise_std : float or array_like, optional
        Noise standard deviation per datum in ``data_unit``; default: the
        survey's errors.
    data_unit : {'ns', 's'}
        Unit in which the problem returns and compares data.

    Notes
    -----
    The latent prior, its box, its regularizer and the device come from
    ``prior``. Data groups are the data of one source each. Besides the
    generic problem it has a decoder temperature (:meth:`tempered`) and a
    forward linearised at a batch (:meth:`linearized`), which staged searches use.
    """

    prior: Prior
    operator: ForwardOperator
    petrophysics: FaciesVelocity

    def __init__(self, prior: Prior, petrophysics: FaciesVelocity, forward: ForwardOperator,
                 observed: TensorLike | None = None, noise_std: NoiseStd = None, data_unit: str = "ns",
                 unknowns: FieldUnknowns | None = None) -> None:
        if not isinstance(prior, Prior):
            raise ConfigError(f"prior must implement geoinv.prior.Prior, got {type(prior).__name__}; "
                              "subclass Prior (or StandardNormalPrior) for a custom decoder")
        if tuple(prior.model_shape) != forward.grid.shape:
            raise ConfigError(f"the prior makes models of shape {tuple(prior.model_shape)}, the forward's grid is "
                              f"{forward.grid.shape}; use a prior trained for this grid")
        if unknowns is not None and not isinstance(unknowns, FieldUnknowns):
            raise ConfigError(f"unknowns must be a geoinv.FieldUnknowns or None, got {type(unknowns).__name__}")
        self._scale = 1.0 / time_factor(data_unit, "data_unit")
        survey = forward.survey
        self.unknowns = unknowns = None if unknowns is None else unknowns.bound(survey)
        self.latent_dim = prior.latent_dim
        if observed is None and survey.traveltimes is not None:
            observed = survey.traveltimes * self._scale
        if noise_std is None and survey.errors is not None:
            noise_std = survey.errors * self._scale
        groups = [np.flatnonzero(survey.pairs[:, 0] == s) for s in range(len(survey.sources))]
        use_index = forward.computes_subsets
        n_extra = 0 if unknowns is None else unknowns.size
        fixed = unknowns is None  # facies alone determine the data: model-space steps and Jacobians apply
        super().__init__(self._simulate if use_index else self._simulate_all, prior.latent_dim + n_extra,
                         survey.n_data, self._sample, torch.cat([prior.latent_mean, torch.zeros(n_extra)]),
                         torch.cat([prior.latent_range, torch.full((n_extra,), 3.92)]), observed, noise_std,
                         self._decode, [g for g in groups if g.size],
                         name=f"latent tomography ({type(forward).__name__})", data_unit=data_unit,
                         forward_takes_index=use_index, regularizer=self._regularize, device=prior.device,
                         model_forward=self.facies_data if fixed else None,
                         model_jacobian=self.facies_jacobian if fixed else None, operator=forward,
                         petrophysics=petrophysics, log_prior=None if fixed else self._log_density)
        self.prior = prior

    # -- the parameter vector: latent coordinates, then the unknowns' standardised coordinates ---------------
    def _split(self, parameters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return parameters[:, :self.latent_dim], parameters[:, self.latent_dim:]

    def _sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        latent = self.prior.sample_latent(n, generator)
        if self.unknowns is None:
            return latent
        extra = torch.randn(n, self.unknowns.size, generator=generator)
        return torch.cat([latent, extra.to(latent.device, latent.dtype)], dim=1)

    def _decode(self, parameters: torch.Tensor) -> torch.Tensor:
        return self.prior.decode(self._split(parameters)[0])

    def _regularize(self, parameters: torch.Tensor, kind: str = "ring") -> torch.Tensor:
        # the unknowns are left out: the schedules' weights suit latent coordinates and would pull
        # the velocities and time zero to their start; the data pin them down, the forward clips
        # them at ±6 prior σ, and samplers and MAP solvers use their prior through log_prior
        return self.prior.regularizer(self._split(parameters)[0], kind)

    def _log_density(self, parameters: torch.Tensor) -> torch.Tensor:
        latent, extra = self._split(parameters)
        return self.prior.log_density(latent) - 0.5 * extra.pow(2).sum(dim=1)

    def _slowness(self, parameters: torch.Tensor) -> torch.Tensor:
        """Slowness (s/m) of a batch of parameter vectors: decoded facies at their velocities."""
        latent, extra = self._split(parameters)
        models = self.prior.decode(latent)
        if self.unknowns is None:
            return self.petrophysics.slowness(models)
        return self.unknowns.slowness(models, extra, self.petrophysics)

    def _shifted(self, traveltimes: torch.Tensor, parameters: torch.Tensor, data_index: DataIndex = None
                 ) -> torch.Tensor:
        """Traveltimes (data unit) of the picks ``data_index`` plus each row's time-zero shifts, if estimated."""
        shift = None if self.unknowns is None else self.unknowns.time_shift(self._split(parameters)[1], data_index)
        return traveltimes if shift is None else traveltimes + self._scale * shift.to(traveltimes.dtype)

    def unknown_values(self, parameters: torch.Tensor) -> dict[str, torch.Tensor]:
        """Velocities (m/s) and time zero (s) of parameter vectors ``(..., n_parameters)``; empty without unknowns."""
        if self.unknowns is None:
            return {}
        return self.unknowns.values(parameters[..., self.latent_dim:], self.petrophysics)

    def with_unknowns_fixed(self, parameters: torch.Tensor) -> LatentTomography:
        """This problem with the unknowns fixed at one parameter vector's values: a latent problem
        without unknowns, at the estimated velocities, its data less the estimated time zero.

        Model-space steps (refinement beyond the prior) run on it.
        """
        if self.unknowns is None:
            return self
        values = {name: float(value) for name, value in self.unknown_values(parameters.reshape(-1)[None]).items()}
        start = self.petrophysics
        petrophysics = FaciesVelocity(values.get("channel_velocity", start.channel_velocity),
                                      values.get("matrix_velocity", start.matrix_velocity), unit="m/s",
                                      interpolation=start.interpolation)
        problem = LatentTomography(self.prior, petrophysics, self.operator, data_unit=self.data_unit)
        point = parameters.reshape(-1)[None].double()
        shift = self._shifted(torch.zeros(1, self.n_data, dtype=torch.float64, device=point.device), point)[0]
        problem.observed = None if self.observed is None else self.observed - shift.to(self.observed)
        problem.noise_std = self.noise_std
        return problem

    def facies_data(self, models: torch.Tensor, data_index: DataIndex = None) -> torch.Tensor:
        """Traveltimes (data unit) of facies models ``(B, nz, nx)``."""
        return self._scale * self.operator(self.petrophysics.slowness(models), data_index)

    def facies_jacobian(self, model: torch.Tensor) -> sp.csr_matrix:
        """∂data/∂facies at one model (data unit per facies unit), sparse ``(n_data, nz·nx)``."""
        return self.facies_jacobians(model[None])[0]

    def facies_jacobians(self, models: torch.Tensor) -> list[sp.csr_matrix]:
        """:meth:`facies_jacobian` at each model of a batch ``(B, nz, nx)``, formed by the operator together
        (in its worker processes when it has them)."""
        slowness, derivative = self._slowness_derivative(models)
        kernels = self.operator.jacobians(slowness)
        return [self._scale * (kernel @ sp.diags(scale.ravel())) for kernel, scale in zip(kernels, derivative)]

    def _slowness_derivative(self, models: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Slowness (s/m) of facies models and ds/dm per cell: the map is cell-wise, so one jvp with ones
        gives the diagonal of ∂s/∂m (∂t/∂m = J(s) · diag(ds/dm))."""
        pushed = torch.func.jvp(self.petrophysics.slowness, (models,), (torch.ones_like(models),))
        return pushed[0].detach().double().cpu().numpy(), pushed[1].detach().double().cpu().numpy()

    def _model_jacobian_products(self, models: torch.Tensor, tangents: np.ndarray) -> np.ndarray:
        slowness, derivative = self._slowness_derivative(models)
        slowness_tangents = derivative.reshape(len(models), -1, 1) * tangents
        return self._scale * self.operator.jacobian_products(slowness, slowness_tangents)

    def jacobian(self, parameters: torch.Tensor) -> torch.Tensor:
        """∂data/∂parameters at each of a batch of parameter vectors, ``(B, n_data, n_parameters)`` float64.

        With unknowns: the operator's sparse kernel at each vector's slowness times
        ∂slowness/∂parameters by forward-mode AD (latent and velocity
        coordinates), and a constant column for the time zero. Without: as
        :meth:`InverseProblem.jacobian`.
        """
        if self.unknowns is None:
            return super().jacobian(parameters)
        parameters = torch.as_tensor(parameters).reshape(-1, self.n_parameters).to(self.device)
        tangents, slownesses = zip(*(self._slowness_tangent(point) for point in parameters))
        jacobian = self._scale * self.operator.jacobian_products(np.stack(slownesses), np.stack(tangents))
        if self.unknowns.time_zero:
            shifts = self.unknowns.shift_jacobian(self.n_data)
            jacobian[..., self.n_parameters - shifts.shape[1]:] += self._scale * shifts
        return torch.from_numpy(jacobian)

    def _slowness_tangent(self, point: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """∂slowness/∂parameters (flat cells × parameters) by forward mode, and the slowness (s/m)."""
        tangent, value = forward_tangent(self._slowness, point)
        return tangent, value.double().cpu().numpy()

    def _simulate(self, parameters: torch.Tensor, data_index=None) -> torch.Tensor:
        data = self._scale * self.operator(self._slowness(parameters), data_index)
        return self._shifted(data, parameters, data_index)

    def _simulate_all(self, latent: torch.Tensor) -> torch.Tensor:
        return self._simulate(latent)

    def tempered(self, temperature: float) -> InverseProblem:
        """This problem with the decoder at temperature T (``sigmoid(logits / T)``); T = 1: itself.

        Same observed data and noise.
        """
        if temperature == 1:
            return self
        problem = LatentTomography(self.prior.tempered(temperature), self.petrophysics, self.operator,
                                   data_unit=self.data_unit, unknowns=self.unknowns)
        problem.observed, problem.noise_std = self.observed, self.noise_std
        return problem

    def linearized(self, parameters: torch.Tensor, kernel: str = "operator") -> InverseProblem:
        """This problem with its forward linearised at each row of a batch of latent vectors.

        Row b of any later batch is simulated by ``F(x_b) + K_b (s(x) − s(x_b))``
        with the operator's :meth:`~geoinv.forward.ForwardOperator.linearization_kernel`
        ``K_b``: exact at ``x_b``, one sparse product per step instead of a
        nonlinear solve; ``kernel='straight-ray'`` takes the straight-ray matrix
        for every ``K_b`` (see :class:`~geoinv.forward.linearized.LinearizedBatch`).
        A problem whose operator is linear is returned as is.
        """
        if self.operator.linear:
            return self
        with torch.no_grad():
            local = LinearizedBatch(self.operator, self._slowness(parameters).double(), kernel)

        def simulate(batch: torch.Tensor, data_index=None) -> torch.Tensor:
            return self._shifted(self._scale * local(self._slowness(batch), data_index), batch, data_index)

        problem = copy.copy(self)
        problem._forward, problem.forward_takes_index = simulate, True
        return problem
