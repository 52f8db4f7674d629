"""InverseProblem: parameters → model → data, batched and differentiable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import ConfigError, SurveyError

__all__ = ["InverseProblem"]

_DATA_UNITS = {"s": 1.0, "ns": 1e9}


class InverseProblem:
    """What every solver sees of an inverse problem.

    Parameters
    ----------
    forward : callable
        ``forward(x, data_index=None) -> y``: parameters ``(B, n_parameters)`` to
        data ``(B, n_data)`` (or ``(B, len(data_index))``); differentiable where
        gradient-based solvers are used.
    n_parameters, n_data : int
        Sizes of x and y.
    sample_prior : callable
        ``sample_prior(n, generator) -> (n, n_parameters)`` draws from the prior.
    prior_mean, prior_range : array_like, optional
        Centre and width of the prior per parameter (bounds ``mean ± range/2``;
        for unbounded priors the 95 % interval), used by boundary losses.
        Estimated from 10 000 prior samples if omitted.
    observed : array_like, shape (n_data,) or (S, n_data), optional
        Observed data, in the problem's data unit.
    noise_std : float or array_like, optional
        Standard deviation of the data noise (data unit).
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
    """

    def __init__(self, forward: Callable, n_parameters: int, n_data: int, sample_prior: Callable,
                 prior_mean=None, prior_range=None, observed=None, noise_std=None,
                 to_model: Callable | None = None, data_groups=None, name: str = "",
                 data_unit: str = "") -> None:
        if n_parameters < 1 or n_data < 1:
            raise ConfigError("n_parameters and n_data must be >= 1")
        self._forward = forward
        self.n_parameters = int(n_parameters)
        self.n_data = int(n_data)
        self._sample_prior = sample_prior
        self._to_model = to_model
        self.name = name
        self.data_unit = data_unit
        self.fixed_training: tuple[torch.Tensor, torch.Tensor] | None = None
        self.data_groups = None if data_groups is None else [np.asarray(g, dtype=np.int64) for g in data_groups]
        if prior_mean is None or prior_range is None:
            samples = self.sample_prior(10_000, torch.Generator().manual_seed(0))
            low, high = torch.quantile(samples, 0.025, dim=0), torch.quantile(samples, 0.975, dim=0)
            prior_mean = (low + high) / 2 if prior_mean is None else prior_mean
            prior_range = (high - low) if prior_range is None else prior_range
        self.prior_mean = torch.as_tensor(prior_mean, dtype=torch.float32).reshape(self.n_parameters)
        self.prior_range = torch.as_tensor(prior_range, dtype=torch.float32).reshape(self.n_parameters)
        self.observed = None if observed is None else self._check_observed(observed)
        self.noise_std = None if noise_std is None else torch.as_tensor(noise_std, dtype=torch.float32)

    def _check_observed(self, observed) -> torch.Tensor:
        tensor = torch.as_tensor(observed, dtype=torch.float32)
        if tensor.shape[-1] != self.n_data or tensor.ndim not in (1, 2):
            raise SurveyError(f"observed must have shape (n_data,) or (S, n_data) with n_data={self.n_data}, "
                              f"got {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise SurveyError("observed data contain NaN/inf values")
        return tensor

    def targets(self, observed=None) -> torch.Tensor:
        """Observed data as ``(S, n_data)``: ``observed`` if given (validated), else the problem's own."""
        if observed is None:
            if self.observed is None:
                raise ConfigError("no observed data: pass observed= or build the problem with them")
            observed = self.observed
        else:
            observed = self._check_observed(observed)
        return observed.reshape(-1, self.n_data)

    def forward(self, parameters: torch.Tensor, data_index=None) -> torch.Tensor:
        """Simulated data for a batch of parameter vectors, shape ``(B, n_data)``."""
        return self._forward(parameters, data_index)

    __call__ = forward

    def model(self, parameters: torch.Tensor) -> torch.Tensor:
        """The model(s) the parameters stand for."""
        return parameters if self._to_model is None else self._to_model(parameters)

    def training_set(self, n: int, generator: torch.Generator | None = None,
                     batch: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs ``(x, F(x))`` for learned solvers: the task's fixed set if it has one
        (``fixed_training``), else ``n`` prior draws simulated in batches."""
        if getattr(self, "fixed_training", None) is not None:
            return self.fixed_training
        parameters = self.sample_prior(n, generator)
        with torch.no_grad():
            data = torch.cat([self.forward(chunk) for chunk in parameters.split(batch)])
        return parameters, data

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` parameter vectors drawn from the prior, shape ``(n, n_parameters)``."""
        return self._sample_prior(n, generator)

    @property
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds ``mean ∓ range/2`` per parameter."""
        return self.prior_mean - self.prior_range / 2, self.prior_mean + self.prior_range / 2

    def simulate(self, parameters: torch.Tensor, noise_std: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy synthetic data ``F(x) + ε``, ``ε ~ N(0, noise_std²)`` (no gradient)."""
        with torch.no_grad():
            clean = self.forward(parameters)
            if not noise_std:
                return clean
            noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
            return clean + noise_std * noise.to(clean.device)

    def with_observed(self, observed, noise_std=None) -> InverseProblem:
        """A copy of this problem holding other observed data."""
        copy = object.__new__(InverseProblem)
        copy.__dict__.update(self.__dict__)
        copy.observed = self._check_observed(observed)
        if noise_std is not None:
            copy.noise_std = torch.as_tensor(noise_std, dtype=torch.float32)
        return copy

    @classmethod
    def latent_tomography(cls, decoder, petrophysics, forward, observed=None, noise_std=None,
                          data_unit: str = "ns") -> InverseProblem:
        """Traveltime tomography in the latent space of a VAE decoder.

        Parameters
        ----------
        decoder : geoinv.prior.VAE or module with ``decode`` and ``latent_dim``
            ``g(z)`` with models in [0, 1] of the forward operator's grid shape.
        petrophysics : geoinv.FaciesVelocity
            Facies → slowness map.
        forward : geoinv.forward.ForwardOperator
            Slowness (s/m) → traveltimes (s).
        observed : array_like, optional
            Traveltimes in ``data_unit``; default: the survey's traveltimes, if any.
        noise_std : float, optional
            Noise standard deviation in ``data_unit``; default: the survey's errors.
        data_unit : {'ns', 's'}
            Unit in which the problem returns and compares data.

        Notes
        -----
        The prior is ``z ~ N(0, I)`` (mean 0, 95 % range ±1.96 per entry). Data
        groups are the data of one source each.
        """
        if data_unit not in _DATA_UNITS:
            raise ConfigError(f"data_unit must be one of {sorted(_DATA_UNITS)}, got {data_unit!r}")
        shape = tuple(decoder.model_shape) if hasattr(decoder, "model_shape") else None
        if shape is not None and shape != forward.grid.shape:
            raise ConfigError(f"the decoder makes models of shape {shape}, the forward's grid is "
                              f"{forward.grid.shape}; use a VAE trained for this grid")
        scale = _DATA_UNITS[data_unit]
        survey = forward.survey
        latent_dim = int(decoder.latent_dim)

        def simulate(latent: torch.Tensor, data_index=None) -> torch.Tensor:
            return scale * forward(petrophysics.slowness(decoder.decode(latent)), data_index)

        def sample_prior(n: int, generator=None) -> torch.Tensor:
            device = next(decoder.parameters()).device
            return torch.randn(n, latent_dim, generator=generator).to(device)

        if observed is None and survey.traveltimes is not None:
            observed = survey.traveltimes * scale
        if noise_std is None and survey.errors is not None:
            noise_std = float(np.mean(survey.errors)) * scale
        groups = [np.flatnonzero(survey.pairs[:, 0] == s) for s in range(len(survey.sources))]
        return cls(simulate, latent_dim, survey.n_data, sample_prior, torch.zeros(latent_dim),
                   torch.full((latent_dim,), 2 * 1.96), observed, noise_std, decoder.decode,
                   [g for g in groups if g.size], name=f"latent tomography ({type(forward).__name__})",
                   data_unit=data_unit)
