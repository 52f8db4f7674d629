"""Training loop for the VAE prior: resumable, checkpointed, seeded."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import CheckpointError, ConfigError
from .images import PatchSampler, image_hash
from .vae import VAE, VAEConfig, read_checkpoint, save_checkpoint, vae_loss

__all__ = ["TrainConfig", "heldout_accuracy", "train_vae"]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train_vae`.

    Parameters
    ----------
    steps : int
        Total number of optimiser steps (across resumed runs).
    batch_size : int
        Patches per step (reference: 100).
    lr : float
        Adam learning rate (reference: 1e-3).
    lr_decay : float
        Multiply the learning rate by this factor every ``lr_decay_steps`` steps.
    beta : float
        KL weight against a KL averaged over batch and latent entries (reference 1000).
    beta_warmup_steps : int
        Ramp the KL weight linearly from 0 to ``beta`` over these first steps; it
        avoids the posterior collapse seen here when β = 1000 acts from step 0
        (0 reproduces the reference, which has no warm-up).
    reconstruction : {'bce', 'mse'}
        Reconstruction term, summed over cells.
    seed : int
        Seed of the patch sampling and reparameterisation noise.
    max_minutes : float, optional
        Stop this run after so many minutes (a checkpoint is written); rerun to resume.
    checkpoint_every_s : float
        Seconds between checkpoints.
    eval_every : int
        Steps between held-out evaluations.
    eval_patches : int
        Held-out crops used for each evaluation.
    """

    steps: int = 100_000
    batch_size: int = 100
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_decay_steps: int = 10_000
    beta: float = 1000.0
    beta_warmup_steps: int = 2000
    reconstruction: str = "bce"
    seed: int = 0
    max_minutes: float | None = None
    checkpoint_every_s: float = 300.0
    eval_every: int = 500
    eval_patches: int = 500

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.eval_every < 1 or self.eval_patches < 1:
            raise ConfigError("steps >= 0, batch_size >= 1, eval_every >= 1 and eval_patches >= 1 are required")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.lr_decay_steps < 1:
            raise ConfigError("lr must be > 0, lr_decay in (0, 1] and lr_decay_steps >= 1")
        if self.beta_warmup_steps < 0:
            raise ConfigError(f"beta_warmup_steps must be >= 0, got {self.beta_warmup_steps}")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if self.reconstruction not in ("bce", "mse"):
            raise ConfigError(f"reconstruction must be 'bce' or 'mse', got {self.reconstruction!r}")

    def learning_rate(self, step: int) -> float:
        return self.lr * self.lr_decay ** (step // self.lr_decay_steps)

    def kl_weight(self, step: int) -> float:
        if self.beta_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.beta_warmup_steps)


@torch.no_grad()
def heldout_accuracy(vae: VAE, patches: torch.Tensor, batch: int = 250) -> float:
    """Fraction of cells whose decoded mean (threshold 0.5) matches the patch."""
    device = next(vae.parameters()).device
    correct = 0.0
    for start in range(0, patches.shape[0], batch):
        chunk = patches[start:start + batch].to(device)
        mean, _ = vae.encode(chunk)
        correct += ((vae.decode(mean) > 0.5).float() == chunk).float().sum().item()
    return correct / patches.numel()


def _resume(path: Path, vae: VAE, optimizer, ti_hash: str) -> dict:
    payload = read_checkpoint(path)
    if payload["config"] != vae.config.to_dict():
        raise CheckpointError(
            f"{path} was trained with architecture {payload['config']}, not {vae.config.to_dict()}; "
            "use another checkpoint path or the same architecture"
        )
    stored_hash = payload["metadata"].get("data", {}).get("training_image_sha256")
    if stored_hash != ti_hash:
        raise CheckpointError(f"{path} was trained on another training image; use another checkpoint path")
    state = payload.get("training_state")
    if state is None:
        raise CheckpointError(f"{path} holds no training state (an exported model?); it cannot be resumed")
    vae.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    return state


def train_vae(
    image: np.ndarray,
    checkpoint: str | Path,
    vae_config: VAEConfig | None = None,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    holdout_fraction: float = 0.1,
    image_source: str = "",
    progress: bool = True,
) -> VAE:
    """Train (or resume training) a VAE on random crops of a training image.

    Parameters
    ----------
    image : numpy.ndarray, shape (rows, cols)
        Binary training image.
    checkpoint : path-like
        Checkpoint file; if it exists, training resumes from it.
    vae_config : VAEConfig, optional
        Architecture; its ``model_shape`` is the patch size.
    config : TrainConfig, optional
        Optimisation settings.
    device : str or torch.device
        Where to train.
    holdout_fraction : float
        Bottom rows of the image kept out of training (see :class:`PatchSampler`).
    image_source : str
        Where the image came from (recorded as provenance).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    VAE
        The trained model in eval mode; its history is in ``vae.metadata``.
    """
    vae_config = vae_config or VAEConfig()
    config = config or TrainConfig()
    checkpoint = Path(checkpoint)
    sampler = PatchSampler(image, vae_config.model_shape, holdout_fraction)
    ti_hash = image_hash(image)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG untouched
        torch.manual_seed(config.seed)
        vae = VAE(vae_config).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    eval_patches = sampler.test_batch(config.eval_patches, torch.Generator().manual_seed(config.seed + 1))
    state = {"step": 0, "elapsed_s": 0.0, "history": {k: [] for k in
             ("step", "loss", "reconstruction", "kl", "lr", "heldout_accuracy", "elapsed_s")}}
    if checkpoint.exists():
        state = _resume(checkpoint, vae, optimizer, ti_hash)
        generator.set_state(state["generator"])
    history = state["history"]

    def total_elapsed() -> float:
        return base_elapsed + time.monotonic() - start

    def write(final: bool = False) -> None:
        elapsed = total_elapsed()
        metadata = {
            "training": {**asdict(config), "steps_done": step, "patches_seen": step * config.batch_size,
                         "elapsed_s": elapsed, "device": str(device), "finished": final},
            "data": {"training_image_sha256": ti_hash, "training_image": image_source,
                     "image_shape": list(np.shape(image)), "patch_shape": list(vae_config.model_shape),
                     "holdout_rows": list(sampler.test_rows)},
            "history": history,
        }
        extra = {"optimizer": optimizer.state_dict(), "generator": generator.get_state(), "step": step,
                 "elapsed_s": elapsed, "history": history}
        save_checkpoint(checkpoint, vae, metadata, extra)

    step, base_elapsed = int(state["step"]), float(state["elapsed_s"])
    start, last_save = time.monotonic(), time.monotonic()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="train VAE", unit="step")
    vae.train()
    try:
        while step < config.steps:
            if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
                break
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate(step)
            batch = sampler.train_batch(config.batch_size, generator).to(device)
            logits, mean, logvar = vae(batch, generator=None if str(device) != "cpu" else generator)
            loss, recon, kl = vae_loss(logits, batch, mean, logvar, config.kl_weight(step), config.reconstruction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % config.eval_every == 0 or step == config.steps:
                vae.eval()
                accuracy = heldout_accuracy(vae, eval_patches)
                vae.train()
                for key, value in zip(history, (step, loss.item(), recon.item(), kl.item(),
                                                config.learning_rate(step), accuracy, total_elapsed())):
                    history[key].append(value)
                bar.set_postfix(loss=f"{loss.item():.1f}", acc=f"{accuracy:.4f}")
            bar.update(1)
            if time.monotonic() - last_save > config.checkpoint_every_s:
                write()
                last_save = time.monotonic()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the CLI maps it): keep the progress, then stop
        bar.close()
        write()
        raise
    bar.close()
    write(final=step >= config.steps)
    vae.eval()
    vae.metadata = read_checkpoint(checkpoint)["metadata"]
    return vae
