"""The Prior contract: a generative model of facies with a low-dimensional latent space.

Everything that inverts in a latent space (the problem, latent SGD, the
boundary losses of the learned solvers) asks the prior, never assumes
``z ~ N(0, I)``. The VAE is one implementation; a GAN-like decoder plugs in by
subclassing :class:`Prior` (or :class:`StandardNormalPrior`) and registering
under the entry-point group ``geoinv.priors``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from ..errors import ConfigError

__all__ = ["REGULARIZATIONS", "Prior", "StandardNormalPrior", "TemperedPrior", "expected_latent_norm"]

#: latent regularizations every prior provides: ``(‖z‖ − E‖z‖)²``, ``‖z‖²``, nothing
REGULARIZATIONS = ("ring", "origin", "none")


def expected_latent_norm(latent_dim: int) -> float:
    """E‖z‖ for z ~ N(0, I_n): √2·Γ((n+1)/2)/Γ(n/2) (≈ 4.4166 for n = 20)."""
    return math.sqrt(2.0) * math.exp(math.lgamma((latent_dim + 1) / 2) - math.lgamma(latent_dim / 2))


class Prior(ABC):
    """A decoder ``g(z)`` from a latent space to facies models, with the latent prior.

    Implementations provide :attr:`latent_dim`, :attr:`model_shape`,
    :meth:`decode`, :meth:`sample_latent`, :meth:`log_density`, and the
    latent prior's centre/width (:attr:`latent_mean`, :attr:`latent_range`)
    and typical radius (:attr:`typical_norm`). The rest is derived.

    Notes
    -----
    Models are facies values in [0, 1] (0 = matrix, 1 = channel) of shape
    ``(B, nz, nx)``; latent vectors have shape ``(B, latent_dim)``.
    """

    @property
    @abstractmethod
    def latent_dim(self) -> int:
        """Dimension ``n`` of the latent space."""

    @property
    @abstractmethod
    def model_shape(self) -> tuple[int, int]:
        """``(nz, nx)`` of the decoded models (cells)."""

    @abstractmethod
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """``g(z)``: facies models in [0, 1], shape ``(B, nz, nx)``; differentiable."""

    @abstractmethod
    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latent vectors drawn from the latent prior, shape ``(n, latent_dim)``, on :attr:`device`."""

    @abstractmethod
    def log_density(self, latent: torch.Tensor) -> torch.Tensor:
        """Log-density of the latent prior up to a constant, shape ``(B,)``."""

    @property
    @abstractmethod
    def latent_mean(self) -> torch.Tensor:
        """Centre of the latent prior, shape ``(latent_dim,)``."""

    @property
    @abstractmethod
    def latent_range(self) -> torch.Tensor:
        """Width of the latent prior per entry (its 95 % interval), shape ``(latent_dim,)``."""

    @property
    @abstractmethod
    def typical_norm(self) -> float:
        """``E‖z − mean‖`` under the prior: the radius of the 'ring' regularization."""

    @property
    def device(self) -> torch.device:
        """Where the decoder runs (CPU unless overridden)."""
        return torch.device("cpu")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` models decoded from prior draws, shape ``(n, nz, nx)``."""
        with torch.no_grad():
            return self.decode(self.sample_latent(n, generator))

    def regularizer(self, latent: torch.Tensor, kind: str = "ring") -> torch.Tensor:
        """Latent penalty per vector, shape ``(B,)``.

        Parameters
        ----------
        latent : torch.Tensor, shape (B, latent_dim)
        kind : {'ring', 'origin', 'none'}
            ``(‖z − μ‖ − r)²`` with ``r`` = :attr:`typical_norm` (keeps z where
            prior mass concentrates in high dimension), ``‖z − μ‖²``, or zero.
        """
        if kind not in REGULARIZATIONS:
            raise ConfigError(f"regularization must be one of {REGULARIZATIONS}, got {kind!r}")
        centred = latent - self.latent_mean.to(latent.device, latent.dtype)
        if kind == "ring":
            return (centred.norm(dim=1) - self.typical_norm).pow(2)
        if kind == "origin":
            return centred.pow(2).sum(dim=1)
        return torch.zeros(latent.shape[0], device=latent.device, dtype=latent.dtype)

    def tempered(self, temperature: float) -> Prior:
        """This prior decoding ``sigmoid(logits / T)``: a smoother map for continuation (T = 1: itself).

        Needs a ``decode_logits`` method (the VAE has one).
        """
        if temperature == 1:
            return self
        if not hasattr(self, "decode_logits"):
            raise ConfigError(f"{type(self).__name__} has no decode_logits, so it has no decoder temperature; "
                              "use temperature 1 with it")
        return TemperedPrior(self, temperature)

    def frozen(self) -> Prior:
        """This prior for inference: no parameter gradients, eval mode. Returns ``self``."""
        if isinstance(self, torch.nn.Module):
            self.requires_grad_(False)
            self.eval()
        return self


class TemperedPrior(Prior):
    """A prior whose decoder output is ``sigmoid(logits / T)``; everything else is the base prior's."""

    def __init__(self, base: Prior, temperature: float) -> None:
        if not temperature >= 1:
            raise ConfigError(f"temperature must be >= 1, got {temperature}")
        self.base, self.temperature = base, float(temperature)

    latent_dim = property(lambda self: self.base.latent_dim)
    model_shape = property(lambda self: self.base.model_shape)
    latent_mean = property(lambda self: self.base.latent_mean)
    latent_range = property(lambda self: self.base.latent_range)
    typical_norm = property(lambda self: self.base.typical_norm)
    device = property(lambda self: self.base.device)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.base.decode_logits(latent) / self.temperature)  # type: ignore[attr-defined]

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.base.sample_latent(n, generator)

    def log_density(self, latent: torch.Tensor) -> torch.Tensor:
        return self.base.log_density(latent)

    def regularizer(self, latent: torch.Tensor, kind: str = "ring") -> torch.Tensor:
        return self.base.regularizer(latent, kind)


class StandardNormalPrior(Prior):
    """Mixin for decoders whose latent prior is ``z ~ N(0, I)`` (VAEs, most GANs)."""

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def log_density(self, latent: torch.Tensor) -> torch.Tensor:
        return -0.5 * latent.pow(2).sum(dim=-1)

    @property
    def latent_mean(self) -> torch.Tensor:
        return torch.zeros(self.latent_dim)

    @property
    def latent_range(self) -> torch.Tensor:
        return torch.full((self.latent_dim,), 2 * 1.96)

    @property
    def typical_norm(self) -> float:
        return expected_latent_norm(self.latent_dim)
