"""Convolutional variational autoencoder for facies models, and its checkpoints.

The decoder ``g(z)`` maps a latent vector (``latent_dim`` entries) to a
facies model in ``[0, 1]^(nz × nx)`` (1 = channel). It is an ordinary,
differentiable, batched torch module, so inversions can descend through it.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .._atomic import atomic_torch_save
from .._typing import PathType
from .._validation import require_file
from ..errors import CheckpointError, ConfigError, GeoinvWarning
from .base import StandardNormalPrior

__all__ = ["CHECKPOINT_FORMAT", "VAE", "VAEConfig", "load_vae", "save_checkpoint"]

CHECKPOINT_FORMAT = "geoinv-vae/1"


#: the largest model (cells) a VAE prior is built for (2000 × 2000)
MAX_VAE_CELLS = 4 * 10**6
#: the widest layer (latent size, hidden units, channels) a VAE config may ask for
MAX_WIDTH = 8192


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a :class:`VAE`.

    Parameters
    ----------
    model_shape : tuple of int
        ``(nz, nx)`` of the models it encodes and decodes (cells).
    latent_dim : int
        Dimension ``n`` of the latent space.
    channels, kernels, strides : tuple of int
        One entry per encoder convolution; the decoder mirrors them.
    hidden : int
        Width of the dense layer between the convolutions and the latent space.
    norm : {'instance', 'batch', 'none'}
        Normalisation after each hidden convolution.
    """

    model_shape: tuple[int, int] = (129, 65)
    latent_dim: int = 20
    channels: tuple[int, ...] = (16, 32, 64, 128)
    kernels: tuple[int, ...] = (5, 5, 4, 4)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    hidden: int = 256
    norm: str = "instance"

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_shape", tuple(int(n) for n in self.model_shape))
        for name in ("channels", "kernels", "strides"):
            object.__setattr__(self, name, tuple(int(n) for n in getattr(self, name)))
        if len(self.model_shape) != 2 or min(self.model_shape) < 4:
            raise ConfigError(f"model_shape must be (nz, nx) with both >= 4, got {self.model_shape}")
        cells = self.model_shape[0] * self.model_shape[1]
        if cells > MAX_VAE_CELLS:
            raise ConfigError(f"model_shape {self.model_shape} has {cells:.3g} cells, too large for a VAE prior "
                              f"(at most {MAX_VAE_CELLS:.0e}, geoinv.prior.vae.MAX_VAE_CELLS); use coarser cells")
        if not (1 <= self.latent_dim <= MAX_WIDTH and 1 <= self.hidden <= MAX_WIDTH
                and all(1 <= n <= MAX_WIDTH for n in self.channels)):
            raise ConfigError(f"latent_dim, hidden and channels must lie in 1..{MAX_WIDTH}, got latent_dim="
                              f"{self.latent_dim}, hidden={self.hidden}, channels={self.channels}")
        if not len(self.channels) == len(self.kernels) == len(self.strides) >= 1:
            raise ConfigError("channels, kernels and strides need one entry per convolution")
        if self.norm not in ("instance", "batch", "none"):
            raise ConfigError(f"norm must be 'instance', 'batch' or 'none', got {self.norm!r}")

    @classmethod
    def reference(cls, model_shape: tuple[int, int] = (129, 65), latent_dim: int = 20) -> VAEConfig:
        """The architecture of the reference code (≈ 4.6 M parameters at 129 × 65)."""
        return cls(model_shape, latent_dim, (32, 64, 128, 256), (5, 5, 4, 4), (2, 2, 2, 2), 512)

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _conv_shapes(config: VAEConfig) -> list[tuple[int, ...]]:
    """Spatial shape before each convolution and after the last one."""
    shapes: list[tuple[int, ...]] = [config.model_shape]
    for kernel, stride in zip(config.kernels, config.strides):
        pad = (kernel - 1) // 2
        shapes.append(tuple((n + 2 * pad - kernel) // stride + 1 for n in shapes[-1]))
    if min(shapes[-1]) < 1:
        raise ConfigError(f"model_shape {config.model_shape} is too small for {len(config.kernels)} convolutions")
    if config.norm == "instance" and shapes[-1][0] * shapes[-1][1] < 2:
        raise ConfigError(f"model_shape {config.model_shape} is too small for {len(config.kernels)} convolutions "
                          f"with instance normalisation (the last feature maps are {shapes[-1]}, instance norm "
                          "needs 2 cells or more); use a larger model_shape or fewer convolutions")
    return shapes


class VAE(nn.Module, StandardNormalPrior):
    """Convolutional VAE: encoder ``m → (μ, log σ²)``, decoder ``z → m``.

    A :class:`~geoinv.prior.Prior` with the latent prior ``z ~ N(0, I)``.

    Parameters
    ----------
    config : VAEConfig
        Architecture; default ``VAEConfig()`` (the half-width reference design
        with a 256-wide dense layer).

    Notes
    -----
    The decoder's transposed convolutions use output padding computed from the
    encoder's shapes, so any ``model_shape`` decodes to exactly that shape.
    """

    #: provenance of a loaded or trained model (training config, data hash, history)
    metadata: dict[str, Any]

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.metadata = {}
        self.config = config or VAEConfig()
        cfg = self.config
        self._shapes = _conv_shapes(cfg)
        widths = (1, *cfg.channels)
        encoder: list[nn.Module] = []
        for i, (kernel, stride) in enumerate(zip(cfg.kernels, cfg.strides)):
            encoder += [nn.Conv2d(widths[i], widths[i + 1], kernel, stride, (kernel - 1) // 2),
                        _norm(cfg.norm, widths[i + 1]), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        flat = cfg.channels[-1] * self._shapes[-1][0] * self._shapes[-1][1]
        self.encoder_dense = nn.Sequential(nn.Linear(flat, cfg.hidden), nn.ReLU())
        self.to_mean = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.to_logvar = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.decoder_dense = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, flat), nn.ReLU()
        )
        layers: list[nn.Module] = []
        n_conv = len(cfg.kernels)
        for i in reversed(range(n_conv)):
            kernel, stride, pad = cfg.kernels[i], cfg.strides[i], (cfg.kernels[i] - 1) // 2
            source, target = self._shapes[i + 1], self._shapes[i]
            extra = tuple(t - ((s - 1) * stride - 2 * pad + kernel) for s, t in zip(source, target))
            layers.append(nn.ConvTranspose2d(widths[i + 1], widths[i], kernel, stride, pad, (extra[0], extra[1])))
            if i > 0:
                layers += [_norm(cfg.norm, widths[i]), nn.ReLU()]
        self.decoder_conv = nn.Sequential(*layers)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def model_shape(self) -> tuple[int, int]:
        return self.config.model_shape

    def encode(self, models: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | m) for models of shape ``(B, nz, nx)``."""
        if tuple(models.shape[-2:]) != self.model_shape:
            raise ConfigError(f"models have shape {tuple(models.shape)}, this VAE expects "
                              f"(B, {self.model_shape[0]}, {self.model_shape[1]})")
        hidden = self.encoder_dense(self.encoder(models.reshape(-1, 1, *self.model_shape)))
        return self.to_mean(hidden), self.to_logvar(hidden)

    def decode_logits(self, latent: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid decoder output, shape ``(B, nz, nx)``."""
        if latent.shape[-1] != self.latent_dim:
            raise ConfigError(f"latent vectors must have {self.latent_dim} entries, got shape {tuple(latent.shape)}")
        batch_shape = latent.shape[:-1]
        flat = self.decoder_dense(latent.reshape(-1, self.latent_dim))
        features = flat.reshape(-1, self.config.channels[-1], *self._shapes[-1])
        return self.decoder_conv(features).reshape(*batch_shape, *self.model_shape)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoder ``g(z)``: facies models in ``[0, 1]``, shape ``(B, nz, nx)``."""
        return torch.sigmoid(self.decode_logits(latent))

    def forward(self, models: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample ``z`` by reparameterisation, and return ``(logits, μ, log σ²)``.

        ``generator`` may live on another device than the models (a CPU generator for a GPU run):
        the noise is drawn on the generator's device and moved, so a seed means the same draws anywhere.
        """
        mean, logvar = self.encode(models)
        where = mean.device if generator is None else generator.device
        noise = torch.randn(mean.shape, generator=generator, device=where, dtype=mean.dtype).to(mean.device)
        latent = mean + torch.exp(0.5 * logvar) * noise
        return self.decode_logits(latent), mean, logvar

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def load(cls, path: PathType, device: str | torch.device = "cpu") -> VAE:
        """Load a checkpoint written by :func:`save_checkpoint` (see :func:`load_vae`)."""
        return load_vae(path, device=device)


def vae_loss(
    logits: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
    beta: float, reconstruction: str = "bce",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VAE loss as in the reference: summed per-model reconstruction + β · mean KL.

    Returns ``(total, reconstruction, kl)``; the reconstruction term is summed over
    cells and averaged over the batch, the KL term averaged over batch and latent
    entries (so β = 1000 reproduces the reference weighting).
    """
    batch = target.shape[0]
    if reconstruction == "bce":
        recon = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / batch
    elif reconstruction == "mse":
        recon = F.mse_loss(torch.sigmoid(logits), target, reduction="sum") / batch
    else:
        raise ConfigError(f"reconstruction must be 'bce' or 'mse', got {reconstruction!r}")
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return recon + beta * kl, recon, kl


def save_checkpoint(path: PathType, vae: VAE, metadata: dict, extra: dict | None = None,
                    dtype: torch.dtype | None = None) -> None:
    """Write a VAE checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination file.
    vae : VAE
        The model.
    metadata : dict
        Provenance (training config, seed, data hash, losses, versions).
    extra : dict, optional
        Resumable training state (optimizer, step, generator state).
    dtype : torch.dtype, optional
        Store weights in this floating dtype (``torch.float16`` halves a shipped file).
    """
    from .._version import __version__

    state = {key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value)
             for key, value in vae.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": vae.config.to_dict(),
        "state_dict": state,
        "metadata": {**metadata, "geoinv_version": __version__, "torch_version": str(torch.__version__)},
    }
    if extra:
        payload["training_state"] = extra
    atomic_torch_save(payload, path)


def read_checkpoint(path: PathType, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dictionary, checking that it is a geoinv VAE checkpoint."""
    path = Path(path)
    require_file(path, "checkpoint", CheckpointError)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path.name} is not a readable torch checkpoint ({exc}); "
                              "it may be truncated: re-export or retrain it") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path.name} is not a geoinv VAE checkpoint (format {CHECKPOINT_FORMAT!r})")
    return payload


def load_vae(path: PathType, device: str | torch.device = "cpu", expect_shape: tuple[int, int] | None = None) -> VAE:
    """Load a VAE from a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : path-like
        Checkpoint file.
    device : str or torch.device
        Where to put the model.
    expect_shape : tuple of int, optional
        Raise :class:`~geoinv.errors.CheckpointError` unless the VAE's model
        shape is this ``(nz, nx)``.

    Returns
    -------
    VAE
        In eval mode, float32, with the checkpoint's provenance in ``.metadata``.
    """
    payload = read_checkpoint(path)
    name = Path(path).name
    missing = [key for key in ("config", "state_dict") if not isinstance(payload.get(key), dict)]
    if missing:
        raise CheckpointError(f"{name}: the checkpoint lacks {missing} (or they are not dictionaries); it is "
                              "damaged or was not written by geoinv: retrain or re-export it")
    try:
        stored: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in payload["config"].items()}
        config = VAEConfig(**stored)
    except (TypeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{name}: invalid architecture config ({exc})") from exc
    if expect_shape is not None and tuple(expect_shape) != config.model_shape:
        raise CheckpointError(
            f"{Path(path).name} holds a VAE for models of shape {config.model_shape}, "
            f"but shape {tuple(expect_shape)} was expected; train a VAE for that grid"
        )
    state, kept = _kept_weights(payload)
    if not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{name}: state_dict holds values that are not tensors; the checkpoint is damaged")
    broken = [key for key, value in state.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"{name}: {len(broken)} weight tensor(s) hold NaN/inf values (first: {broken[0]!r}); "
                              "training diverged or the file is damaged: use an earlier checkpoint or retrain")
    vae = VAE(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        vae.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{name}: weights do not match the stored architecture ({exc})") from exc
    vae.metadata = payload.get("metadata", {})
    if kept is not None:
        vae.metadata = {**vae.metadata, "training": {**vae.metadata["training"], "kept": kept}}
    _warn_if_untrained(vae.metadata, name)
    return vae.to(device).eval()


def _kept_weights(payload: dict) -> tuple[dict, dict | None]:
    """The weights to use and, for a training checkpoint, which ones they are.

    A training checkpoint holds the last step's weights (to resume from) and those of the best held-out
    evaluation; its run recorded which to keep (``train_vae(keep=...)``, 'best' by default, as
    ``--export`` writes). Checkpoints without a best evaluation give their only weights.
    """
    best = (payload.get("training_state") or {}).get("best")
    training = (payload.get("metadata") or {}).get("training")
    keep = training.get("keep", "best") if isinstance(training, dict) else "last"
    if keep == "best" and isinstance(best, dict) and isinstance(best.get("state_dict"), dict):
        return best["state_dict"], {"which": "best", **{key: value for key, value in best.items()
                                                        if key != "state_dict"}}
    return payload["state_dict"], None


def _warn_if_untrained(metadata, name: str) -> None:
    """A checkpoint whose provenance records no training step decodes noise, not geology: say so."""
    training = metadata.get("training") if isinstance(metadata, dict) else None
    steps = training.get("steps_done") if isinstance(training, dict) else None
    if not isinstance(steps, int) or steps <= 0:
        warnings.warn(f"{name}: its provenance records no training steps (metadata['training']['steps_done'] is "
                      f"{steps!r}), so its decoder may be untrained; train it with geoinv train-vae, or use the "
                      "shipped prior", GeoinvWarning, stacklevel=3)
