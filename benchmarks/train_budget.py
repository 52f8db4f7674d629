"""Prior quality per CPU-minute: training settings compared on two training images under one time budget.

Issue 30's goal 1 asks for a prior that passes the quality report's marks
(held-out accuracy ≥ 0.97, binary-like ≥ 0.90, proportion within 0.03,
variograms within 10 % along x and z) within 60 minutes on a 2-core CPU, from
the shipped training image **and** from a second one of different character.
This benchmark trains each setting on each image for ``--minutes`` of wall
time (resuming its checkpoint under ``$GEOINV_CACHE/train_budget/`` across
runs, so a budget can span sessions), keeps the best held-out evaluation seen
(``train_vae``'s ``keep='best'``), and measures it with
:func:`geoinv.prior.quality.prior_report`. The checkpoints' histories give the
held-out accuracy and binary-likeness at every evaluation against elapsed
minutes, the quality-per-minute curve.

Images: ``shipped`` (``channels_2500.h5``: proportion 0.26, width 12 px,
horizontal) and ``second`` (made here by ``geoinv.prior.channelized_image``,
seed 2027: proportion 0.35, width 7 px, main direction 10°; thinner, denser
and inclined channels). Settings: see :data:`SETTINGS`.

Run: ``python -m benchmarks train_budget [--images shipped second] [--settings NAME ...]
[--minutes 60] [--threads 2] [--inversion-crops 3]``; ``--quick`` trains a tiny VAE for a few seconds on a
small crop of each image (checks the script). A run whose budget is spent trains nothing more: it
reports the kept weights again (with ``--inversion-crops N``, the report's inversion check too).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, write_json

from geoinv._paths import cache_dir
from geoinv.prior import ChannelConfig, TrainConfig, VAEConfig, channelized_image, default_training_image, train_vae
from geoinv.prior.quality import prior_report
from geoinv.prior.vae import read_checkpoint
from geoinv.workflows import inversion_check

CACHE = cache_dir() / "train_budget"
SECOND_IMAGE = ChannelConfig(proportion=0.35, width_mean=7.0, width_std=1.5, direction_deg=10.0)
SECOND_SEED = 2027

#: name: (fields, what it tests): TrainConfig fields, and ARCHITECTURE_FIELDS of train-vae's default architecture
SETTINGS: dict[str, tuple[dict, str]] = {
    "default": ({}, "train-vae's defaults: β 1000 after a 2000-step warm-up, lr 1e-3, batch 100"),
    "beta250": ({"beta": 250.0}, "a lower KL weight: sharper reconstructions, a looser latent space"),
    "beta250-decay": ({"beta": 250.0, "lr_decay": 0.7, "lr_decay_steps": 2000},
                      "β 250 with the learning rate × 0.7 every 2000 steps"),
    "beta250-compiled": ({"beta": 250.0, "compile": True}, "β 250 with torch.compile (1.08–1.09× the steps, s41)"),
    "beta250-adversarial": ({"beta": 250.0, "adversarial": 1.0},
                            "β 250 with the adversarial term from the start (2.6× the cost per crop)"),
    "beta250-adversarial-variogram": ({"beta": 250.0, "adversarial": 1.0, "variogram_weight": 1.0},
                                      "β 250, the adversarial term and its pull of the prior's variograms "
                                      "(x and z) to the training image's"),
    "beta250-adversarial-variogram0.3": ({"beta": 250.0, "adversarial": 1.0, "variogram_weight": 0.3},
                                         "as above with a weaker pull (0.3): s46's weight 1 cost binary-likeness"),
    "beta250-adversarial-spread": ({"beta": 250.0, "adversarial": 1.0, "proportion_spread_weight": 1.0},
                                   "β 250 + adversarial, the draws' proportion spread pulled to the crops' (weight 1)"),
    "beta250-adversarial-spread0.5": ({"beta": 250.0, "adversarial": 1.0, "proportion_spread_weight": 0.5},
                                      "as above with half the pull (0.5): weight 1 cost binary-likeness (s54)"),
    "beta250-latent64": ({"beta": 250.0, "latent_dim": 64},
                         "β 250 with 64 latent dimensions instead of 20 (room for images with many thin channels)"),
}
#: setting fields that belong to the architecture (VAEConfig), not to TrainConfig
ARCHITECTURE_FIELDS = ("latent_dim",)


def training_image(name: str, quick: bool) -> np.ndarray:
    """The named training image (``second`` is generated once and cached)."""
    if name == "shipped":
        image = default_training_image()
    elif quick:
        return channelized_image((400, 400), SECOND_IMAGE, seed=SECOND_SEED)
    else:
        path = CACHE / f"second_{SECOND_SEED}.npy"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, channelized_image((2500, 2500), SECOND_IMAGE, seed=SECOND_SEED))
        image = np.load(path)
    return image[:400, :400] if quick else image


def run_one(image_name: str, setting: str, folder: Path, args) -> dict:
    image = training_image(image_name, args.quick)
    fields = dict(SETTINGS[setting][0])
    architecture = {name: fields.pop(name) for name in ARCHITECTURE_FIELDS if name in fields}
    vae_config = VAEConfig((32, 32), **{"latent_dim": 8, **architecture}, channels=(8, 16, 32), kernels=(4, 4, 4),
                           strides=(2, 2, 2), hidden=64) if args.quick else VAEConfig(**architecture)
    checkpoint = folder / f"{image_name}_{setting}.pt"
    trained = read_checkpoint(checkpoint)["metadata"]["training"] if checkpoint.exists() else None
    left = args.minutes - (trained["elapsed_s"] / 60 if trained else 0.0)
    # a spent budget trains no further step (the report, and an inversion check, of the kept weights)
    config = TrainConfig(steps=10**9 if left > 0 or trained is None else trained["steps_done"], seed=args.seed,
                         max_minutes=max(left, 1e-3),
                         checkpoint_every_s=60.0 if not args.quick else 5.0,
                         eval_every=20 if args.quick else 500, eval_patches=50 if args.quick else 500,
                         beta_warmup_steps=20 if args.quick else 2000, **fields)
    started = time.perf_counter()
    vae = train_vae(image, checkpoint, vae_config, config, device=args.device, progress=not args.quick, keep="best",
                    image_source=f"train_budget:{image_name}").to("cpu")
    metadata = vae.metadata
    report = prior_report(vae, image, n_samples=50 if args.quick else 1000, n_heldout=50 if args.quick else 500)
    if args.inversion_crops:
        report.add_inversion_check(inversion_check(vae, image, n_crops=args.inversion_crops, seed=args.seed))
    history = metadata["history"]
    return {"image": image_name, "setting": setting, "minutes": metadata["training"]["elapsed_s"] / 60,
            "this_run_minutes": (time.perf_counter() - started) / 60, "steps": metadata["training"]["steps_done"],
            "kept_step": metadata["training"]["kept"].get("step"), "passed": report.passed,
            **{check.name: check.value for check in report.checks},
            "failures": [check.name for check in report.failures],
            "curve": {"minutes": [None if value is None else value / 60 for value in history["elapsed_s"]],
                      "heldout_accuracy": history["heldout_accuracy"],
                      "prior_binary_like": history["prior_binary_like"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny VAE for a few seconds: checks the script")
    parser.add_argument("--images", nargs="+", choices=("shipped", "second"), default=["shipped", "second"])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["default", "beta250"])
    parser.add_argument("--minutes", type=float, default=60.0, help="wall-time budget per image and setting")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="torch threads")
    parser.add_argument("--device", default="cpu", help="train on this torch device (e.g. cuda); reported on the CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inversion-crops", type=int, default=0,
                        help="held-out crops of the report's inversion check (straight ray, σ = 0.25 ns); 0: none")
    parser.add_argument("--name", default="train_budget", help="JSON name, and the checkpoints' folder")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.inversion_crops = 0.1, 1  # the whole path, the inversion check included
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:  # quick checks leave no checkpoints behind
        folder = Path(scratch) if args.quick else CACHE / args.name
        folder.mkdir(parents=True, exist_ok=True)
        rows = [run_one(image, setting, folder, args) for image in args.images for setting in args.settings]
    print_table(rows, [("image", "image", ""), ("setting", "setting", ""), ("minutes", "min", ".1f"),
                       ("steps", "steps", "d"), ("heldout_accuracy", "held-out", ".4f"),
                       ("binary_like", "binary-like", ".3f"), ("proportion_gap", "prop. gap", ".3f"),
                       ("variogram_x_gap", "vario x", ".3f"), ("variogram_z_gap", "vario z", ".3f"),
                       *([("inversion_model_rmse", "inversion RMSE", ".3f")] if args.inversion_crops else []),
                       ("passed", "passed", "")])
    write_json(args.name, {"rows": rows, "settings": {name: SETTINGS[name] for name in args.settings},
                           "second_image": {"config": vars(SECOND_IMAGE), "seed": SECOND_SEED}, "args": vars(args)})


if __name__ == "__main__":
    main()
