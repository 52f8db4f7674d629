"""Training loop for the VAE prior: resumable, checkpointed, seeded."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._signals import acknowledge
from ..errors import CheckpointError, ConfigError, GeoinvWarning
from ..metrics import binary_fraction
from .adversarial import PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from .images import PatchSampler, image_hash
from .vae import VAE, VAEConfig, read_checkpoint, save_checkpoint, vae_loss

__all__ = ["TrainConfig", "heldout_accuracy", "prior_binary_like", "train_vae", "training_throughput"]


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
    adversarial : float
        Weight factor of the adversarial term on decoded prior draws (see
        :mod:`geoinv.prior.adversarial`), relative to the reconstruction gradient;
        0 (default) trains a plain VAE. It sharpens prior samples; it costs
        about 2.5× per step.
    adversarial_batch : int
        Prior draws (and real crops) per step for the adversarial term.
    discriminator_lr : float
        Adam learning rate of the discriminator (betas 0.5, 0.999).
    proportion_weight : float
        Weight of the pull of the prior draws' mean towards the training
        image's channel proportion, inside the adversarial term (0: off).
    variogram_weight : float
        Weight of the pull of the prior draws' indicator variograms (along x
        and z, to half the model's size) towards the training image's, inside
        the adversarial term (0: off; see
        :func:`geoinv.prior.adversarial.variogram_penalty`).
    proportion_spread_weight : float
        Weight of the pull of the spread of the prior draws' channel proportions
        (one per draw) towards that of the training crops, inside the
        adversarial term (0: off; see
        :func:`geoinv.prior.adversarial.proportion_spread_penalty`). For images
        whose proportion drifts from place to place, where every draw otherwise
        takes the typical proportion.
    compile : bool
        Run the VAE's training pass through ``torch.compile`` (faster steps
        after a one-off compile of seconds to a minute; see the results page).
        Where compiling fails (no C++ compiler, say), training warns and goes
        on uncompiled. Compiled and uncompiled steps differ in rounding, so a
        run resumes exactly only with the setting it started with.
    keep_tolerance : float
        Held-out accuracy by which a later evaluation may fall short of the
        highest seen and still be the one kept (``train_vae(keep='best')``):
        the latest evaluation within it is kept. Held-out accuracy levels off
        while the adversarial term keeps sharpening the prior's draws; 0.001
        is below the accuracy's own standard error over 500 held-out crops
        (0.0013 on the shipped image). 0 keeps the highest.
    mixed_precision : {'auto', 'bf16', 'off'}
        Forward passes and losses under ``torch.autocast`` in bfloat16 (no loss
        scaling needed), the weights and the optimiser in float32. ``'auto'``
        (default) uses it on a CUDA device and not on the CPU, where bfloat16
        steps were no faster (measured, see the results page); ``'bf16'`` forces
        it on any device. As with
        ``compile``, a run resumes exactly only with the setting it started with.
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
    adversarial: float = 0.0
    adversarial_batch: int = 50
    discriminator_lr: float = 2e-4
    proportion_weight: float = 1.0
    variogram_weight: float = 0.0
    proportion_spread_weight: float = 0.0
    compile: bool = False
    mixed_precision: str = "auto"
    keep_tolerance: float = 0.001

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"mixed_precision must be one of {', '.join(map(repr, MIXED_PRECISION))}, "
                              f"got {self.mixed_precision!r}")
        if self.steps < 0 or self.batch_size < 1 or self.eval_every < 1 or self.eval_patches < 1:
            raise ConfigError("steps >= 0, batch_size >= 1, eval_every >= 1 and eval_patches >= 1 are required")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.lr_decay_steps < 1:
            raise ConfigError("lr must be > 0, lr_decay in (0, 1] and lr_decay_steps >= 1")
        if self.beta_warmup_steps < 0:
            raise ConfigError(f"beta_warmup_steps must be >= 0, got {self.beta_warmup_steps}")
        if self.adversarial < 0 or self.adversarial_batch < 1 or self.discriminator_lr <= 0 \
                or self.proportion_weight < 0 or self.variogram_weight < 0 or self.proportion_spread_weight < 0:
            raise ConfigError("adversarial >= 0, adversarial_batch >= 1, discriminator_lr > 0, proportion_weight >= 0, "
                              "variogram_weight >= 0 and proportion_spread_weight >= 0 are required")
        for name in ("variogram_weight", "proportion_spread_weight"):
            if getattr(self, name) > 0 and self.adversarial == 0:
                raise ConfigError(f"{name} acts inside the adversarial term: set adversarial > 0 too "
                                  "(e.g. adversarial=1.0)")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        if not 0 <= self.keep_tolerance < 1:
            raise ConfigError(f"keep_tolerance must be in [0, 1) (held-out accuracy), got {self.keep_tolerance}")
        if self.reconstruction not in ("bce", "mse"):
            raise ConfigError(f"reconstruction must be 'bce' or 'mse', got {self.reconstruction!r}")

    def autocast(self, device: torch.device) -> torch.autocast:
        """The autocast context of a training step on ``device`` (disabled where precision stays float32)."""
        enabled = self.mixed_precision == "bf16" or (self.mixed_precision == "auto" and device.type == "cuda")
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def learning_rate(self, step: int) -> float:
        return self.lr * self.lr_decay ** (step // self.lr_decay_steps)

    def kl_weight(self, step: int) -> float:
        if self.beta_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.beta_warmup_steps)


#: TrainConfig.mixed_precision's settings
MIXED_PRECISION = ("auto", "bf16", "off")

_HISTORY_KEYS = ("step", "loss", "reconstruction", "kl", "lr", "heldout_accuracy", "prior_binary_like",
                 "elapsed_s")


@torch.no_grad()
def prior_binary_like(vae: VAE, latent: torch.Tensor) -> float:
    """Fraction of decoded cells below 0.1 or above 0.9 for these latent vectors."""
    return binary_fraction(vae.decode(latent.to(next(vae.parameters()).device)).cpu().numpy())


@torch.no_grad()
def reconstructions(vae: VAE, patches: torch.Tensor, batch: int = 250) -> torch.Tensor:
    """Decoded posterior means of ``patches`` (on the CPU), ``batch`` patches at a time."""
    device = next(vae.parameters()).device
    return torch.cat([vae.decode(vae.encode(patches[start:start + batch].to(device))[0]).cpu()
                      for start in range(0, patches.shape[0], batch)])


def reconstruction_accuracy(reconstructed: torch.Tensor, patches: torch.Tensor) -> float:
    """Fraction of cells whose reconstruction (threshold 0.5) matches the patch."""
    return ((reconstructed > 0.5).float() == patches.cpu()).sum().item() / patches.numel()  # an exact count


def heldout_accuracy(vae: VAE, patches: torch.Tensor, batch: int = 250) -> float:
    """Fraction of cells whose decoded mean (threshold 0.5) matches the patch."""
    return reconstruction_accuracy(reconstructions(vae, patches, batch), patches)


def highest_heldout_accuracy(kept: dict) -> float:
    """The highest held-out accuracy seen, from a kept evaluation's record (records written before
    ``keep_tolerance`` kept only the highest)."""
    return float(kept.get("highest_heldout_accuracy", kept["heldout_accuracy"]))


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
    if "runs" not in state:  # checkpoints written before runs were recorded hold one run
        previous = {k: v for k, v in payload["metadata"].get("training", {}).items()
                    if k in TrainConfig.__dataclass_fields__}
        state["runs"] = [{**previous, "first_step": 0, "last_step": int(state["step"]),
                          "note": "settings of the last run before runs were recorded"}]
    for key in _HISTORY_KEYS:  # keys added in later versions: unknown for earlier evaluations
        state["history"].setdefault(key, [None] * len(state["history"]["step"]))
    return state


class _Trainer:
    """One training run: state, a step, evaluation and checkpointing."""

    def __init__(self, image, checkpoint: Path, vae_config: VAEConfig, config: TrainConfig, device,
                 holdout_fraction: float, image_source: str, image_channels: str = "", keep: str = "best") -> None:
        self.config, self.device, self.checkpoint = config, torch.device(device), checkpoint
        self.keep = keep  # recorded, so that loading the checkpoint gives the weights this run kept
        self.image_channels = image_channels
        self.sampler = PatchSampler(image, vae_config.model_shape, holdout_fraction)
        self.ti_hash, self.image_shape, self.image_source = image_hash(image), list(np.shape(image)), image_source
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG untouched
            torch.manual_seed(config.seed)
            self.vae = VAE(vae_config).to(self.device)
        self.optimizer = torch.optim.Adam(self.vae.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed)
        eval_generator = torch.Generator().manual_seed(config.seed + 1)
        self.eval_patches = self.sampler.test_batch(config.eval_patches, eval_generator)
        self.eval_latent = torch.randn(200, vae_config.latent_dim, generator=eval_generator)
        state: dict[str, Any] = {"step": 0, "elapsed_s": 0.0, "history": {k: [] for k in _HISTORY_KEYS}, "runs": []}
        if checkpoint.exists():
            state = _resume(checkpoint, self.vae, self.optimizer, self.ti_hash)
            self.generator.set_state(state["generator"])
        self.step, self.base_elapsed = int(state["step"]), float(state["elapsed_s"])
        self.history, self.runs = state["history"], state["runs"]
        #: the evaluation with the highest held-out accuracy under the full objective, and its weights
        self.best: dict | None = state.get("best")
        # each (re)started run records its settings: resumed training may change β or lr
        self.runs.append({**asdict(config), "first_step": self.step, "last_step": self.step})
        self.step_start_generator = self.generator.get_state()
        self.critic: PatchDiscriminator | None = None
        self.critic_optimizer: torch.optim.Optimizer | None = None
        if config.adversarial > 0:
            self._init_critic(state.get("discriminator"))
        #: the module a training step calls: the VAE, or its compiled wrapper (same parameters)
        self.step_model: Any = torch.compile(self.vae) if config.compile else self.vae
        self._compiled_ran = False
        self.start = time.monotonic()

    def _init_critic(self, stored: dict | None) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + 7)
            self.critic = PatchDiscriminator().to(self.device)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), self.config.discriminator_lr,
                                                 betas=(0.5, 0.999))
        if stored is not None:
            self.critic.load_state_dict(stored["model"])
            self.critic_optimizer.load_state_dict(stored["optimizer"])

    def elapsed(self) -> float:
        return self.base_elapsed + time.monotonic() - self.start

    def train_step(self) -> torch.Tensor:
        if self.step_model is self.vae or self._compiled_ran:
            return self._step()
        state = self.generator.get_state()
        try:  # compiling happens in the first step's passes, forward and backward, and fails there if it fails
            loss = self._step()
        except Exception as error:  # whatever the compiler raised: train uncompiled instead
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); training goes on "
                          "uncompiled", GeoinvWarning, stacklevel=2)
            self.step_model = self.vae
            self.generator.set_state(state)
            self.optimizer.zero_grad(set_to_none=True)
            return self._step()
        self._compiled_ran = True
        return loss

    def _step(self) -> torch.Tensor:
        config, step = self.config, self.step
        self.step_start_generator = self.generator.get_state()
        for group in self.optimizer.param_groups:
            group["lr"] = config.learning_rate(step)
        batch = self.sampler.train_batch(config.batch_size, self.generator).to(self.device)
        with config.autocast(self.device):
            loss, recon, kl, fake = self._losses(batch, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if fake is not None and self.critic is not None and self.critic_optimizer is not None:
            real = self.sampler.train_batch(config.adversarial_batch, self.generator).to(self.device)
            with config.autocast(self.device):
                critic_loss = discriminator_loss(self.critic, real, fake)
            self.critic_optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_optimizer.step()
        self.step += 1
        self.last_losses = (loss.item(), recon.item(), kl.item())
        return loss

    def _losses(self, batch: torch.Tensor, step: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The step's loss, its reconstruction and KL parts, and the decoded prior draws the critic
        judges (None without the adversarial term)."""
        config = self.config
        logits, mean, logvar = self._training_pass(batch)
        loss, recon, kl = vae_loss(logits, batch, mean, logvar, config.kl_weight(step), config.reconstruction)
        fake = None
        if self.critic is not None:
            latent = torch.randn(config.adversarial_batch, self.vae.latent_dim, generator=self.generator)
            fake = self.vae.decode(latent.to(self.device))
            variograms = self.sampler.train_variograms if config.variogram_weight > 0 else None
            adversarial = generator_loss(self.critic, fake, self.sampler.train_proportion,
                                         config.proportion_weight,
                                         target_variograms=None if variograms is None
                                         else (variograms[0].to(self.device), variograms[1].to(self.device)),
                                         variogram_weight=config.variogram_weight,
                                         target_proportion_quantiles=self._spread_target(),
                                         proportion_spread_weight=config.proportion_spread_weight)
            last_layer = self.vae.decoder_conv[-1].weight
            assert isinstance(last_layer, torch.Tensor)
            loss = loss + adaptive_weight(recon, adversarial, last_layer, config.adversarial) * adversarial
        return loss, recon, kl, fake

    def _spread_target(self) -> torch.Tensor | None:
        if self.config.proportion_spread_weight == 0:
            return None
        return self.sampler.train_proportion_quantiles(self.config.adversarial_batch).to(self.device)

    def _training_pass(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.step_model(batch, generator=self.generator)  # drawn on the CPU on any device: resumable

    def evaluate(self) -> dict:
        self.vae.eval()
        accuracy = heldout_accuracy(self.vae, self.eval_patches)
        binary_like = prior_binary_like(self.vae, self.eval_latent)
        self.vae.train()
        values = (self.step, *self.last_losses, self.config.learning_rate(self.step), accuracy, binary_like,
                  self.elapsed())
        for key, value in zip(_HISTORY_KEYS, values):
            self.history[key].append(value)
        # during the β warm-up the KL term is not yet in force: a high accuracy there is not a prior
        if self.step >= self.config.beta_warmup_steps:
            highest = accuracy if self.best is None else max(accuracy, highest_heldout_accuracy(self.best))
            if accuracy >= highest - self.config.keep_tolerance:  # later weights are sharper: keep the latest
                self.best = {"step": self.step, "heldout_accuracy": accuracy, "prior_binary_like": binary_like,
                             "highest_heldout_accuracy": highest,
                             "state_dict": {key: value.detach().cpu().clone()
                                            for key, value in self.vae.state_dict().items()}}
        return {"loss": f"{self.last_losses[0]:.1f}", "acc": f"{accuracy:.4f}", "binary": f"{binary_like:.3f}"}

    def write(self, final: bool = False) -> None:
        config, elapsed = self.config, self.elapsed()
        self.runs[-1]["last_step"] = self.step
        metadata = {
            "training": {**asdict(config), "steps_done": self.step, "patches_seen": self.step * config.batch_size,
                         "elapsed_s": elapsed, "device": str(self.device), "finished": final, "keep": self.keep},
            "data": {"training_image_sha256": self.ti_hash, "training_image": self.image_source,
                     "training_image_channels": self.image_channels,
                     "channel_proportion": float(self.sampler.image.mean()),
                     "image_shape": self.image_shape, "patch_shape": list(self.vae.model_shape),
                     "holdout_rows": list(self.sampler.test_rows)},
            "history": self.history,
            "runs": self.runs,
        }
        extra = {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "step": self.step, "elapsed_s": elapsed, "history": self.history, "runs": self.runs}
        if self.best is not None:
            extra["best"] = self.best
        if self.critic is not None and self.critic_optimizer is not None:
            extra["discriminator"] = {"model": self.critic.state_dict(),
                                      "optimizer": self.critic_optimizer.state_dict()}
        save_checkpoint(self.checkpoint, self.vae, metadata, extra)

    def progress_bar(self, progress: bool) -> tqdm:
        """Steps of the step budget, or seconds of the time budget when one is set (``steps`` is then
        usually a ceiling never reached, and a bar to it would never move)."""
        if self.config.max_minutes is None:
            return tqdm(total=self.config.steps, initial=self.step, disable=not progress, desc="train VAE",
                        unit="step")
        return tqdm(total=round(60 * self.config.max_minutes), disable=not progress, desc="train VAE", unit="s",
                    bar_format="{l_bar}{bar}| {n:.0f}/{total} s [{elapsed}<{remaining}{postfix}]")

    def run(self, progress: bool) -> None:
        config, last_save = self.config, time.monotonic()
        bar = self.progress_bar(progress)
        self.vae.train()
        step_before = self.step
        try:
            while self.step < config.steps:
                if config.max_minutes is not None and time.monotonic() - self.start > 60 * config.max_minutes:
                    break
                step_before = self.step
                self.train_step()
                if self.step % config.eval_every == 0 or self.step == config.steps:
                    bar.set_postfix(step=self.step, **self.evaluate())
                bar.update(1 if config.max_minutes is None else min(time.monotonic() - self.start, bar.total) - bar.n)
                if time.monotonic() - last_save > config.checkpoint_every_s:
                    self.write()
                    last_save = time.monotonic()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (the CLI maps it): keep the progress, then stop
            acknowledge()  # delivered: let the checkpoint below be written
            bar.close()
            # interrupted inside a step: rewind its random draws so that the resumed run
            # sees the same batches as an uninterrupted one
            if self.step == step_before:
                self.generator.set_state(self.step_start_generator)
            self.write()
            raise
        bar.close()
        self.write(final=self.step >= config.steps)


def train_vae(
    image: np.ndarray,
    checkpoint: str | Path,
    vae_config: VAEConfig | None = None,
    config: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    holdout_fraction: float = 0.1,
    image_source: str = "",
    progress: bool = True,
    image_channels: str = "",
    keep: str = "best",
) -> VAE:
    """Train (or resume training) a VAE on random crops of a training image.

    Parameters
    ----------
    image : numpy.ndarray, shape (rows, cols)
        Binary training image.
    checkpoint : path-like
        Checkpoint file; if it exists, training resumes from it (the settings in
        ``config`` may differ from the earlier runs': each run is recorded in the
        metadata under ``runs``).
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
    image_channels : str
        Which pixels of the file were read as channels (``read_image``'s
        ``channels``), recorded as provenance.
    keep : {'best', 'last'}
        Which weights to return: those of the latest evaluation whose held-out
        accuracy is within ``config.keep_tolerance`` of the highest seen once
        the β warm-up is over (across resumed runs; the last weights if no
        evaluation qualifies), or the last step's. The
        checkpoint always holds the last step's (it resumes), and the best
        evaluation's weights in its training state.

    Returns
    -------
    VAE
        The trained model in eval mode; its history is in ``vae.metadata``, and
        which weights it holds in ``vae.metadata['training']['kept']``.
    """
    if keep not in ("best", "last"):
        raise ConfigError(f"keep must be 'best' or 'last', got {keep!r}")
    trainer = _Trainer(image, Path(checkpoint), vae_config or VAEConfig(), config or TrainConfig(), device,
                       holdout_fraction, image_source, image_channels, keep)
    trainer.run(progress)
    vae = trainer.vae.eval()
    metadata = read_checkpoint(checkpoint)["metadata"]
    kept = {"which": "last", "step": trainer.step}
    if keep == "best" and trainer.best is not None:
        vae.load_state_dict(trainer.best["state_dict"])
        kept = {"which": "best", **{key: value for key, value in trainer.best.items() if key != "state_dict"}}
    vae.metadata = {**metadata, "training": {**metadata["training"], "kept": kept}}
    return vae


def training_throughput(image: np.ndarray, vae_config: VAEConfig, config: TrainConfig, seconds: float,
                        device: str | torch.device = "cpu") -> float:
    """Training patches per second of the real training step (for benchmarks; writes nothing lasting).

    Parameters
    ----------
    image : array_like
        Training image (channel = 1).
    vae_config, config : VAEConfig, TrainConfig
        Architecture and training settings (``config.adversarial`` > 0 includes the critic).
    seconds : float
        Wall time to spend stepping.
    device : str or torch.device
        Where to train.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        trainer = _Trainer(image, Path(folder) / "throughput.pt", vae_config, config, device, 0.1, "")
        trainer.vae.train()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            trainer.train_step()
            steps += 1
        return steps * config.batch_size / (time.perf_counter() - start)
