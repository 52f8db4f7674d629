"""Quality of the shipped VAE prior against its training image.

Held-out reconstruction accuracy, and for 1000 prior samples z ~ N(0, I):
channel proportion, binary-likeness, variograms and two-point connectivity
along (x) and across (z) the channels, mean channel thickness, each beside the
training image's own statistics (from random training crops). Also training
throughput of the default and the reference architecture, side by side.

Run: ``python benchmarks/prior_quality.py [--vae CHECKPOINT]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import RESULTS, print_table, write_json

from geoinv.metrics import binary_fraction, connectivity, mean_thickness, variogram
from geoinv.prior import (
    VAE,
    PatchSampler,
    VAEConfig,
    default_training_image,
    default_vae,
    heldout_accuracy,
    load_vae,
)
from geoinv.prior.vae import vae_loss


def _throughput(config: VAEConfig, sampler: PatchSampler, seconds: float = 20.0) -> float:
    """Training patches per second (batch 100, Adam, β = 1000) including patch cropping."""
    torch.manual_seed(0)
    vae = VAE(config)
    optimizer = torch.optim.Adam(vae.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    patches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = sampler.train_batch(100, generator)
        logits, mean, logvar = vae(batch, generator)
        loss, _, _ = vae_loss(logits, batch, mean, logvar, 1000.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        patches += 100
    return patches / (time.perf_counter() - start)


def _statistics(models: np.ndarray, max_lag_x: int, max_lag_z: int) -> dict:
    binary = (models > 0.5).astype(np.float64)
    return {
        "proportion": float(binary.mean()),
        "soft_mean": float(models.mean()),
        "binary_like": binary_fraction(models),
        "thickness": mean_thickness(models),
        "variogram_x": variogram(binary, max_lag_x, axis=2),
        "variogram_z": variogram(binary, max_lag_z, axis=1),
        "connectivity_x": connectivity(binary, max_lag_x, axis=2),
        "connectivity_z": connectivity(binary, max_lag_z, axis=1),
    }


def _relative_gap(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vae", help="checkpoint to assess (default: the shipped VAE)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--throughput-seconds", type=float, default=20.0)
    args = parser.parse_args()
    vae = load_vae(args.vae) if args.vae else default_vae()
    image = default_training_image()
    sampler = PatchSampler(image, vae.model_shape)
    generator = torch.Generator().manual_seed(0)
    heldout = sampler.test_batch(500, generator)
    accuracy = heldout_accuracy(vae, heldout)
    with torch.no_grad():
        samples = vae.sample(args.samples, generator).numpy()
    training = sampler.train_batch(args.samples, generator).numpy()
    max_lag_x, max_lag_z = vae.model_shape[1] // 2, vae.model_shape[0] // 2
    ours, theirs = _statistics(samples, max_lag_x, max_lag_z), _statistics(training, max_lag_x, max_lag_z)
    rows = [{"statistic": "held-out reconstruction accuracy", "vae": accuracy, "goal": "≥ 0.97"},
            {"statistic": "channel proportion (thresholded)", "vae": ours["proportion"],
             "training_image": theirs["proportion"], "goal": "± 0.03"},
            {"statistic": "mean of decoded values", "vae": ours["soft_mean"], "training_image": theirs["soft_mean"]},
            {"statistic": "binary-like cells (< 0.1 or > 0.9)", "vae": ours["binary_like"], "goal": "≥ 0.90"},
            {"statistic": "mean channel thickness (cells, vertical)", "vae": ours["thickness"],
             "training_image": theirs["thickness"]}]
    for key, label in (("variogram_x", "variogram along x (channels), max rel. gap"),
                       ("variogram_z", "variogram along z (across), max rel. gap"),
                       ("connectivity_x", "connectivity along x, max abs. gap"),
                       ("connectivity_z", "connectivity along z, max abs. gap")):
        gap = (_relative_gap(ours[key], theirs[key]) if key.startswith("variogram")
               else float(np.max(np.abs(ours[key] - theirs[key]))))
        rows.append({"statistic": label, "vae": gap, "goal": "≤ 0.10" if key.startswith("variogram") else ""})
    default_speed = _throughput(vae.config, sampler, args.throughput_seconds)
    reference_speed = _throughput(VAEConfig.reference(vae.model_shape, vae.latent_dim), sampler,
                                  args.throughput_seconds)
    rows.append({"statistic": "training throughput, this architecture (patches/s)", "vae": default_speed})
    rows.append({"statistic": "training throughput, reference architecture (patches/s)", "vae": reference_speed})
    rows.append({"statistic": "throughput ratio this / reference", "vae": default_speed / reference_speed})
    training_meta = vae.metadata.get("training", {})
    print(f"VAE: {vae.config.to_dict()}")
    print(f"trained {training_meta.get('steps_done', '?')} steps, {training_meta.get('patches_seen', '?')} patches, "
          f"{training_meta.get('elapsed_s', 0) / 60:.0f} min; torch threads {torch.get_num_threads()}\n")
    print_table(rows, [("statistic", "statistic", ""), ("vae", "VAE", ".4f"),
                       ("training_image", "training image", ".4f"), ("goal", "goal", "")])
    _figure(samples[:16], training[:16], RESULTS / "prior_samples.png")
    curves = {f"{name}_{which}": stats[name].tolist() for which, stats in (("vae", ours), ("ti", theirs))
              for name in ("variogram_x", "variogram_z", "connectivity_x", "connectivity_z")}
    write_json("prior_quality", {"rows": rows, "curves": curves, "training": training_meta})


def _figure(samples: np.ndarray, training: np.ndarray, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 16, figsize=(16, 4.6))
    for k in range(16):
        axes[0, k].imshow(samples[k], cmap="gray_r", vmin=0, vmax=1)
        axes[1, k].imshow(training[k], cmap="gray_r", vmin=0, vmax=1)
        for ax in axes[:, k]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("VAE prior\nsamples")
    axes[1, 0].set_ylabel("training\npatches")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
