"""Quality of the shipped VAE prior against its training image.

Held-out reconstruction accuracy, and for 1000 prior samples z ~ N(0, I):
channel proportion, binary-likeness, variograms and two-point connectivity
along (x) and across (z) the channels, mean channel thickness, each beside the
training image's own statistics (from random training crops). Also training
throughput of the default and the reference architecture, side by side.

Run: ``python -m benchmarks prior_quality [--vae CHECKPOINT] [--quick]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import figure_path, print_table, write_json

from geoinv.metrics import binary_fraction
from geoinv.prior import (
    PatchSampler,
    TrainConfig,
    VAEConfig,
    default_training_image,
    default_vae,
    heldout_accuracy,
    load_vae,
)
from geoinv.prior.quality import image_statistics, relative_gap
from geoinv.prior.training import prior_binary_like, training_throughput


def _throughput(config: VAEConfig, image: np.ndarray, seconds: float, adversarial: float = 0.0) -> float:
    """Training patches per second (batch 100, Adam, β = 1000) of the real training step."""
    return training_throughput(image, config, TrainConfig(adversarial=adversarial), seconds)


def _assess(vae, sampler: PatchSampler, n_samples: int, reference: dict) -> dict:
    """Quality statistics of one VAE; ``reference`` holds the training crops' statistics."""
    generator = torch.Generator().manual_seed(0)
    heldout = sampler.test_batch(500, generator)
    with torch.no_grad():
        mean, logvar = vae.encode(heldout)
        reconstructions = vae.decode(mean)
        posterior = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)
        samples = vae.sample(n_samples, generator).numpy()
    max_lag_x, max_lag_z = vae.model_shape[1] // 2, vae.model_shape[0] // 2
    ours = image_statistics(samples, max_lag_x, max_lag_z)
    values = {
        "accuracy": heldout_accuracy(vae, heldout),
        "reconstruction_binary_like": binary_fraction(reconstructions.numpy()),
        "posterior_binary_like": prior_binary_like(vae, posterior),
        "proportion": ours["proportion"], "soft_mean": ours["soft_mean"], "binary_like": ours["binary_like"],
        "thickness": ours["thickness"],
    }
    for key in ("variogram_x", "variogram_z"):
        values[key] = relative_gap(ours[key], reference[key])
    for key in ("connectivity_x", "connectivity_z"):
        values[key] = float(np.max(np.abs(ours[key] - reference[key])))
    return {"values": values, "samples": samples, "statistics": ours}


_ROWS = (
    ("accuracy", "held-out reconstruction accuracy", "≥ 0.97"),
    ("reconstruction_binary_like", "held-out reconstructions: binary-like cells", ""),
    ("posterior_binary_like", "posterior draws μ + σε: binary-like cells", ""),
    ("binary_like", "prior samples: binary-like cells (< 0.1 or > 0.9)", "≥ 0.90"),
    ("proportion", "prior samples: channel proportion (thresholded)", "± 0.03"),
    ("soft_mean", "prior samples: mean of decoded values", ""),
    ("thickness", "prior samples: mean channel thickness (cells, vertical)", ""),
    ("variogram_x", "variogram along x (channels), max rel. gap", "≤ 0.10"),
    ("variogram_z", "variogram along z (across), max rel. gap", "≤ 0.10"),
    ("connectivity_x", "connectivity along x, max abs. gap", ""),
    ("connectivity_z", "connectivity along z, max abs. gap", ""),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vae", help="checkpoint to assess (default: the shipped VAE)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="LABEL=CHECKPOINT",
                        help="more checkpoints to assess side by side")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--throughput-seconds", type=float, default=20.0, help="0 skips the throughput rows")
    parser.add_argument("--quick", action="store_true", help="50 samples, half a second of each throughput")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.throughput_seconds = 50, 0.5
    vaes = {"VAE": load_vae(args.vae) if args.vae else default_vae()}
    for item in args.compare:
        label, _, path = item.partition("=")
        vaes[label] = load_vae(path)
    vae = vaes["VAE"]
    image = default_training_image()
    sampler = PatchSampler(image, vae.model_shape)
    training = sampler.train_batch(args.samples, torch.Generator().manual_seed(1)).numpy()
    theirs = image_statistics(training, vae.model_shape[1] // 2, vae.model_shape[0] // 2)
    results = {label: _assess(model, sampler, args.samples, theirs) for label, model in vaes.items()}
    reference_values = {"proportion": theirs["proportion"], "soft_mean": theirs["soft_mean"],
                        "thickness": theirs["thickness"]}
    rows = [{"statistic": label, **{name: result["values"][key] for name, result in results.items()},
             "training_image": reference_values.get(key), "goal": goal} for key, label, goal in _ROWS]
    if args.throughput_seconds > 0:
        rows += _throughput_rows(vae.config, image, args.throughput_seconds)
    training_meta = vae.metadata.get("training", {})
    print(f"VAE: {vae.config.to_dict()}")
    print(f"trained {training_meta.get('steps_done', '?')} steps, {training_meta.get('patches_seen', '?')} patches, "
          f"{training_meta.get('elapsed_s', 0) / 60:.0f} min; torch threads {torch.get_num_threads()}\n")
    print_table(rows, [("statistic", "statistic", ""), *[(label, label, ".4f") for label in vaes],
                       ("training_image", "training image", ".4f"), ("goal", "goal", "")])
    curves = {f"{name}_{which}": stats[name].tolist()
              for which, stats in (("vae", results["VAE"]["statistics"]), ("ti", theirs))
              for name in ("variogram_x", "variogram_z", "connectivity_x", "connectivity_z")}
    write_json("prior_quality", {"args": vars(args), "rows": rows, "curves": curves, "training": training_meta,
                                 "runs": vae.metadata.get("runs", [])})
    _figure(results["VAE"]["samples"][:16], training[:16], figure_path("prior_samples"))
    _history_figure(vae.metadata, figure_path("prior_training"))


def _throughput_rows(config: VAEConfig, image: np.ndarray, seconds: float) -> list[dict]:
    default_speed = _throughput(config, image, seconds)
    adversarial_speed = _throughput(config, image, seconds, adversarial=1.0)
    reference_speed = _throughput(VAEConfig.reference(config.model_shape, config.latent_dim), image, seconds)
    return [
        {"statistic": "training throughput, this architecture (patches/s)", "VAE": default_speed},
        {"statistic": "  … with the adversarial term (patches/s)", "VAE": adversarial_speed},
        {"statistic": "training throughput, reference architecture (patches/s)", "VAE": reference_speed},
        {"statistic": "throughput ratio this / reference", "VAE": default_speed / reference_speed},
    ]


def _history_figure(metadata: dict, path) -> None:
    """Held-out accuracy and prior-sample binary-likeness along training, runs marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = metadata.get("history", {})
    if not history.get("step"):
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    top.plot(history["step"], history["heldout_accuracy"])
    top.set_ylabel("held-out accuracy")
    top.set_ylim(0.9, 1.0)
    steps = [s for s, v in zip(history["step"], history.get("prior_binary_like", [])) if v is not None]
    values = [v for v in history.get("prior_binary_like", []) if v is not None]
    bottom.plot(steps, values, "o-", ms=3)
    bottom.axhline(0.9, color="gray", ls="--", lw=1)
    bottom.set_ylabel("prior samples\nbinary-like")
    bottom.set_xlabel("training step (batch 100)")
    for run in metadata.get("runs", [])[1:]:
        for ax in (top, bottom):
            ax.axvline(run["first_step"], color="k", lw=0.6, alpha=0.5)
        label = f"β={run['beta']:g}" + (f", adv {run['adversarial']:g}" if run.get("adversarial") else "")
        top.annotate(label, (run["first_step"], 0.905), fontsize=7, rotation=90)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
