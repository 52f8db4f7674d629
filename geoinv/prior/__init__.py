"""The structured prior: channelized training images and the VAE trained on them."""

from __future__ import annotations

import numpy as np

from .._registry import Registry
from .._typing import Device, PathType
from .base import REGULARIZATIONS, Prior, StandardNormalPrior, expected_latent_norm
from .channels import ChannelConfig, channel_statistics, channelized_image
from .data import DEFAULT_TRAINING_IMAGE, DEFAULT_VAE
from .images import PatchSampler, image_hash, read_image, write_image
from .quality import PriorReport, QualityCheck, prior_report
from .training import TrainConfig, heldout_accuracy, train_vae
from .vae import VAE, VAEConfig, load_vae, save_checkpoint

__all__ = [
    "PRIORS",
    "REGULARIZATIONS",
    "VAE",
    "ChannelConfig",
    "PatchSampler",
    "Prior",
    "PriorReport",
    "QualityCheck",
    "StandardNormalPrior",
    "TrainConfig",
    "VAEConfig",
    "channel_statistics",
    "channelized_image",
    "default_training_image",
    "default_vae",
    "expected_latent_norm",
    "heldout_accuracy",
    "image_hash",
    "load_prior",
    "load_vae",
    "prior_report",
    "read_image",
    "save_checkpoint",
    "train_vae",
    "write_image",
]


PRIORS = Registry("geoinv.priors", "prior")


def load_prior(path: PathType | None = None, kind: str = "vae", device: Device = "cpu") -> Prior:
    """Load a prior: the shipped VAE (``path=None``) or a checkpoint of a registered kind.

    Parameters
    ----------
    path : path-like, optional
        Checkpoint file; default the shipped VAE.
    kind : str
        Registered prior class (entry-point group ``geoinv.priors``) whose
        ``load(path, device)`` reads the file.
    device : str or torch.device
        Where the decoder runs.
    """
    if path is None:
        return default_vae(device)
    return PRIORS.get(kind).load(path, device=device)


def default_vae(device: Device = "cpu") -> VAE:
    """The shipped, pretrained VAE (129 × 65 models, latent_dim 20), in eval mode.

    Its provenance (training command, steps, losses, training-image hash) is in
    ``vae.metadata``.
    """
    if not DEFAULT_VAE.is_file():
        from ..errors import CheckpointError

        raise CheckpointError(f"the shipped VAE {DEFAULT_VAE} is missing; reinstall geoinv")
    return load_vae(DEFAULT_VAE, device=device)


def default_training_image() -> np.ndarray:
    """The shipped 2500 × 2500 channelized training image (uint8, channel = 1)."""
    return read_image(DEFAULT_TRAINING_IMAGE)
