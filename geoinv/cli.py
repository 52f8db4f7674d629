"""The ``geoinv`` command."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .errors import GeoinvError

CACHE_DIR = Path(os.environ.get("GEOINV_CACHE", Path.home() / ".cache" / "geoinv"))


def _cmd_make_ti(args: argparse.Namespace) -> None:
    from .prior.channels import ChannelConfig, channel_statistics, channelized_image
    from .prior.images import write_image

    config = ChannelConfig(proportion=args.proportion, direction_deg=args.direction,
                           width_mean=args.width)
    image = channelized_image((args.rows, args.cols), config, seed=args.seed)
    stats = channel_statistics(image)
    command = "geoinv make-ti " + " ".join(sys.argv[2:])
    metadata = {"generator": "geoinv.prior.channels.channelized_image", "config": config.to_dict(),
                "seed": args.seed, "command": command.strip(), "statistics": stats}
    write_image(args.output, image, metadata=metadata)
    print(json.dumps({"output": str(args.output), **stats}, indent=2))


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _cmd_train_vae(args: argparse.Namespace) -> None:
    import torch

    from .prior.data import DEFAULT_TRAINING_IMAGE
    from .prior.images import read_image
    from .prior.training import TrainConfig, train_vae
    from .prior.vae import VAEConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    signal.signal(signal.SIGTERM, _interrupt)  # a killed job writes its checkpoint first
    image_path = Path(args.image or DEFAULT_TRAINING_IMAGE)
    image = read_image(image_path)
    if args.reference:
        vae_config = VAEConfig.reference((args.nz, args.nx), args.latent_dim)
    else:
        vae_config = VAEConfig((args.nz, args.nx), args.latent_dim)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         lr_decay=args.lr_decay, lr_decay_steps=args.lr_decay_steps, beta=args.beta,
                         beta_warmup_steps=args.beta_warmup,
                         reconstruction=args.loss, seed=args.seed, max_minutes=args.minutes,
                         checkpoint_every_s=args.checkpoint_every, adversarial=args.adversarial)
    vae = train_vae(image, args.checkpoint, vae_config, config, device=args.device,
                    image_source=image_path.name)
    history = vae.metadata["history"]
    if history["step"]:
        binary_like = history["prior_binary_like"][-1]  # None for evaluations by geoinv 0.1
        binary_text = "-" if binary_like is None else f"{binary_like:.3f}"
        print(f"step {history['step'][-1]}: held-out accuracy {history['heldout_accuracy'][-1]:.4f}, "
              f"prior samples binary-like {binary_text}, loss {history['loss'][-1]:.1f}")
    if args.export:
        from .prior.vae import save_checkpoint

        save_checkpoint(args.export, vae, vae.metadata, dtype=torch.float16)
        print(f"exported {args.export}")


def _cmd_simulate(args: argparse.Namespace) -> None:
    import time

    import numpy as np

    from . import Eikonal, FaciesVelocity, Grid2D, StraightRay, Survey
    from .plot import simulation_figure
    from .prior import PatchSampler, default_training_image
    from .workflows import representative_crop

    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    sampler = PatchSampler(default_training_image(), grid.shape)
    facies = representative_crop(sampler, args.seed).double()
    petro = FaciesVelocity()
    slowness = petro.slowness(facies)
    rows = []
    times = {}
    for name, operator in (("straight ray", StraightRay(grid, survey)), ("eikonal", Eikonal(grid, survey))):
        start = time.perf_counter()
        times[name] = operator(slowness).numpy()
        rows.append((name, time.perf_counter() - start, times[name]))
    print(f"held-out channelized model {grid.shape}, {survey.n_data} source-receiver pairs")
    print(f"{'operator':<14}{'time (s)':>10}{'min (ns)':>10}{'max (ns)':>10}{'mean (ns)':>11}")
    for name, seconds, values in rows:
        print(f"{name:<14}{seconds:>10.3f}{values.min() * 1e9:>10.2f}{values.max() * 1e9:>10.2f}"
              f"{values.mean() * 1e9:>11.2f}")
    difference = (times["eikonal"] - times["straight ray"]) * 1e9
    print(f"eikonal − straight ray: mean {difference.mean():.3f} ns, range [{difference.min():.3f}, "
          f"{difference.max():.3f}] ns (bent rays find faster paths; positives are discretisation error)")
    args.output.mkdir(parents=True, exist_ok=True)
    figure = args.output / "simulation.png"
    simulation_figure(grid, survey, petro.velocity(facies).numpy(), times, figure)
    np.savez(args.output / "simulation.npz", facies=facies.numpy(), **{k.replace(" ", "_"): v for k, v in times.items()})
    print(f"wrote {figure} and {args.output / 'simulation.npz'}")


def _cmd_export_vae(args: argparse.Namespace) -> None:
    import torch

    from .prior.vae import load_vae, save_checkpoint

    vae = load_vae(args.checkpoint)
    metadata = dict(vae.metadata)
    metadata["exported_from"] = {"file": args.checkpoint.name, "command": "geoinv " + " ".join(sys.argv[1:])}
    save_checkpoint(args.output, vae, metadata, dtype=torch.float16)
    size_mb = args.output.stat().st_size / 1e6
    steps = metadata.get("training", {}).get("steps_done", "?")
    print(f"exported {args.output} ({size_mb:.1f} MB, float16, {steps} training steps)")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .workflows import run_demo

    print(f"geoinv demo: a held-out channelized model, noisy {args.forward} traveltimes on the reference "
          f"crosshole survey (625 data, σ = {args.noise} ns), latent SGD from {args.starts} starts")
    report, _ = run_demo(args.output, args.forward, args.starts, args.seed, args.noise, not args.quiet,
                         epochs=args.epochs)
    print("\n".join(report.lines()))
    print(f"wrote {args.output / 'demo.png'} and {args.output / 'demo.h5'}")


def _cmd_invert(args: argparse.Namespace) -> None:
    from .workflows import invert_survey

    solutions = invert_survey(args.survey, args.output, args.forward, args.solver, args.starts, args.seed,
                              args.preset, args.vae, not args.quiet, args.epochs)
    print(solutions.summary())
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoinv", description="Structured-model geophysical inversion.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="end-to-end synthetic inversion with the shipped VAE (the main job)")
    demo.add_argument("--forward", choices=("straight-ray", "eikonal"), default="straight-ray")
    demo.add_argument("--starts", type=int, default=10, help="random starts, optimised as one batch")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--noise", type=float, default=0.25, help="noise standard deviation (ns)")
    demo.add_argument("--epochs", type=int, help="override the schedule's number of epochs")
    demo.add_argument("--output", type=Path, default=Path("geoinv-output"), help="output folder")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

    invert = sub.add_parser("invert", help="invert the traveltimes of an HDF5 survey file")
    invert.add_argument("survey", type=Path, help="survey file (layout: geoinv.io.hdf5)")
    invert.add_argument("--forward", choices=("straight-ray", "eikonal", "pygimli"), default="straight-ray")
    invert.add_argument("--solver", default="latent-sgd")
    invert.add_argument("--preset", choices=("reference-linear", "reference-nonlinear", "plain-gd", "adam"))
    invert.add_argument("--starts", type=int, default=20)
    invert.add_argument("--seed", type=int, default=0)
    invert.add_argument("--vae", type=Path, help="VAE checkpoint (default: the shipped one)")
    invert.add_argument("--epochs", type=int, help="override the schedule's number of epochs")
    invert.add_argument("--output", type=Path, default=Path("geoinv-output/inversion.h5"))
    invert.add_argument("--quiet", action="store_true", help="no progress bar")
    invert.set_defaults(func=_cmd_invert)

    simulate = sub.add_parser("simulate", help="simulate straight-ray and eikonal traveltimes on a held-out model")
    simulate.add_argument("--output", type=Path, default=Path("geoinv-output"), help="output folder")
    simulate.add_argument("--seed", type=int, default=0, help="which held-out crop")
    simulate.set_defaults(func=_cmd_simulate)

    make_ti = sub.add_parser("make-ti", help="generate a channelized training image")
    make_ti.add_argument("output", type=Path, help="output file (.h5, .png, .npy, .gslib)")
    make_ti.add_argument("--rows", type=int, default=2500)
    make_ti.add_argument("--cols", type=int, default=2500)
    make_ti.add_argument("--proportion", type=float, default=0.26, help="channel proportion")
    make_ti.add_argument("--direction", type=float, default=0.0, help="main direction (degrees from x)")
    make_ti.add_argument("--width", type=float, default=12.0, help="mean channel width (pixels)")
    make_ti.add_argument("--seed", type=int, default=0)
    make_ti.set_defaults(func=_cmd_make_ti)

    train = sub.add_parser("train-vae", help="train (or resume training) a VAE prior")
    train.add_argument("--image", type=Path, help="training image (default: the shipped one)")
    train.add_argument("--checkpoint", type=Path, default=CACHE_DIR / "vae-train" / "checkpoint.pt",
                       help="resumable checkpoint (resumed if it exists)")
    train.add_argument("--export", type=Path, help="write a compact float16 copy here when done")
    train.add_argument("--nz", type=int, default=129)
    train.add_argument("--nx", type=int, default=65)
    train.add_argument("--latent-dim", type=int, default=20)
    train.add_argument("--reference", action="store_true", help="use the reference (full-width) architecture")
    train.add_argument("--steps", type=int, default=100_000)
    train.add_argument("--minutes", type=float, help="stop after this many minutes (resume later)")
    train.add_argument("--batch-size", type=int, default=100)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--lr-decay", type=float, default=1.0)
    train.add_argument("--lr-decay-steps", type=int, default=10_000)
    train.add_argument("--beta", type=float, default=1000.0)
    train.add_argument("--beta-warmup", type=int, default=2000, help="steps to ramp beta from 0")
    train.add_argument("--loss", choices=("bce", "mse"), default="bce")
    train.add_argument("--adversarial", type=float, default=0.0,
                       help="weight factor of the discriminator term on prior draws (0: plain VAE)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--checkpoint-every", type=float, default=300.0, help="seconds")
    train.set_defaults(func=_cmd_train_vae)

    export = sub.add_parser("export-vae", help="write a compact float16 copy of a trained VAE")
    export.add_argument("checkpoint", type=Path, help="training checkpoint")
    export.add_argument("output", type=Path, help="output .pt file")
    export.set_defaults(func=_cmd_export_vae)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except GeoinvError as exc:
        print(f"geoinv: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
