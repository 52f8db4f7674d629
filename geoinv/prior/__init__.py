"""The structured prior: channelized training images and the VAE trained on them."""

from __future__ import annotations

from .channels import ChannelConfig, channel_statistics, channelized_image
from .data import DEFAULT_TRAINING_IMAGE, DEFAULT_VAE
from .images import PatchSampler, image_hash, read_image, write_image
from .training import TrainConfig, heldout_accuracy, train_vae
from .vae import VAE, VAEConfig, load_vae, save_checkpoint

__all__ = [
    "VAE",
    "ChannelConfig",
    "PatchSampler",
    "TrainConfig",
    "VAEConfig",
    "channel_statistics",
    "channelized_image",
    "default_training_image",
    "default_vae",
    "heldout_accuracy",
    "image_hash",
    "load_vae",
    "read_image",
    "save_checkpoint",
    "train_vae",
    "write_image",
]


def default_vae(device="cpu") -> VAE:
    """The shipped, pretrained VAE (129 × 65 models, latent_dim 20), in eval mode.

    Its provenance (training command, steps, losses, training-image hash) is in
    ``vae.metadata``.
    """
    if not DEFAULT_VAE.is_file():
        from ..errors import CheckpointError

        raise CheckpointError(f"the shipped VAE {DEFAULT_VAE} is missing; reinstall geoinv")
    return load_vae(DEFAULT_VAE, device=device)


def default_training_image():
    """The shipped 2500 × 2500 channelized training image (uint8, channel = 1)."""
    return read_image(DEFAULT_TRAINING_IMAGE)
