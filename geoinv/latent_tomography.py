"""Traveltime tomography in the latent space of a generative prior: decoder ∘ petrophysics ∘ forward."""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
import torch

from .errors import ConfigError
from .forward.base import ForwardOperator
from .forward.linearized import LinearizedBatch
from .prior.base import Prior
from .problem import InverseProblem
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

    def __init__(self, prior: Prior, petrophysics, forward: ForwardOperator, observed=None, noise_std=None,
                 data_unit: str = "ns") -> None:
        if not isinstance(prior, Prior):
            raise ConfigError(f"prior must implement geoinv.prior.Prior, got {type(prior).__name__}; "
                              "subclass Prior (or StandardNormalPrior) for a custom decoder")
        if tuple(prior.model_shape) != forward.grid.shape:
            raise ConfigError(f"the prior makes models of shape {tuple(prior.model_shape)}, the forward's grid is "
                              f"{forward.grid.shape}; use a prior trained for this grid")
        self._scale = 1.0 / time_factor(data_unit, "data_unit")
        survey = forward.survey
        if observed is None and survey.traveltimes is not None:
            observed = survey.traveltimes * self._scale
        if noise_std is None and survey.errors is not None:
            noise_std = survey.errors * self._scale
        groups = [np.flatnonzero(survey.pairs[:, 0] == s) for s in range(len(survey.sources))]
        use_index = forward.computes_subsets
        super().__init__(self._simulate if use_index else self._simulate_all, prior.latent_dim, survey.n_data,
                         lambda n, generator=None: prior.sample_latent(n, generator),
                         prior.latent_mean, prior.latent_range, observed, noise_std, prior.decode,
                         [g for g in groups if g.size], name=f"latent tomography ({type(forward).__name__})",
                         data_unit=data_unit, forward_takes_index=use_index, regularizer=prior.regularizer,
                         device=prior.device, model_forward=self.facies_data, model_jacobian=self.facies_jacobian,
                         operator=forward, petrophysics=petrophysics)
        self.prior = prior

    def facies_data(self, models: torch.Tensor, data_index=None) -> torch.Tensor:
        """Traveltimes (data unit) of facies models ``(B, nz, nx)``."""
        return self._scale * self.operator(self.petrophysics.slowness(models), data_index)

    def facies_jacobian(self, model: torch.Tensor) -> sp.csr_matrix:
        """∂data/∂facies at one model (data unit per facies unit), sparse ``(n_data, nz·nx)``."""
        # ∂t/∂m = J(s) · diag(ds/dm); the map is cell-wise, so one jvp with ones gives the diagonal
        pushed = torch.func.jvp(self.petrophysics.slowness, (model,), (torch.ones_like(model),))
        slowness, derivative = pushed[0], pushed[1]
        kernel = self.operator.jacobian(slowness.detach().double().cpu().numpy())
        return self._scale * (kernel @ sp.diags(derivative.detach().double().cpu().numpy().ravel()))

    def _simulate(self, latent: torch.Tensor, data_index=None) -> torch.Tensor:
        return self.facies_data(self.prior.decode(latent), data_index)

    def _simulate_all(self, latent: torch.Tensor) -> torch.Tensor:
        return self._simulate(latent)

    def tempered(self, temperature: float) -> InverseProblem:
        """This problem with the decoder at temperature T (``sigmoid(logits / T)``); T = 1: itself.

        Same observed data and noise.
        """
        if temperature == 1:
            return self
        problem = LatentTomography(self.prior.tempered(temperature), self.petrophysics, self.operator,
                                   data_unit=self.data_unit)
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
            local = LinearizedBatch(self.operator, self.petrophysics.slowness(self.prior.decode(parameters).double()),
                                    kernel)
        prior, petrophysics, scale = self.prior, self.petrophysics, self._scale

        def simulate(latent: torch.Tensor, data_index=None) -> torch.Tensor:
            return scale * local(petrophysics.slowness(prior.decode(latent)), data_index)

        problem = copy.copy(self)
        problem._forward, problem.forward_takes_index = simulate, True
        return problem
