"""The ``geoinv`` command."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ._paths import cache_dir
from ._signals import Interrupted, check, interruptible
from .errors import ConfigError, GeoinvError
from .units import TIME_UNITS, VELOCITY_UNITS

CACHE_DIR = cache_dir()


def _cmd_make_ti(args: argparse.Namespace) -> None:
    from .io.images import IMAGE_SUFFIXES, write_image
    from .prior.channels import ChannelConfig, channel_statistics, channelized_image
    from .workflows import check_output

    check_output(args.output, IMAGE_SUFFIXES, overwrite=args.overwrite)
    config = ChannelConfig(proportion=args.proportion, direction_deg=args.direction,
                           width_mean=args.width)
    image = channelized_image((args.rows, args.cols), config, seed=args.seed)
    stats = channel_statistics(image)
    command = "geoinv make-ti " + " ".join(sys.argv[2:])
    metadata = {"generator": "geoinv.prior.channels.channelized_image", "config": config.to_dict(),
                "seed": args.seed, "channels": args.channels or "default", "command": command.strip(),
                "statistics": stats}
    write_image(args.output, image, metadata=metadata, channels=args.channels)
    print(json.dumps({"output": str(args.output), **stats}, indent=2))


def _integer(low: int, high: int):
    """argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value
    return parse


def _number(low: float, high: float = math.inf, low_open: bool = True):
    """argparse type: a finite number in (low, high] (or [low, high] when ``low_open`` is False)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            bound = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"must be a finite number in {bound}{low:g}, {high:g}], got {text}")
        return value
    return parse


POSITIVE = _number(0.0)
STARTS = _integer(1, 10_000)
EPOCHS = _integer(1, 1_000_000)
SEED = _integer(0, 2**63 - 1)

PRESET_HELP = ("latent-sgd schedule from prior draws (default: default-linear, the Gauss-Newton continuation, "
               "for linear operators; for nonlinear ones amortized proposals seed proposal-finish, the network "
               "built once per geometry and cached, and candidates that miss the noise are replaced by "
               "randomized-maximum-likelihood candidates from the accepted ones; with --epochs or a preset, "
               "default-nonlinear from prior draws)")
#: ``--time-zero-by BY`` (implies ``--estimate-time-zero``); a separate option, so that the flag never
#: takes the pick file that follows it for its value
TIME_ZERO_BY: dict[str, Any] = {"choices": ("survey", "source-borehole", "receiver-borehole"), "metavar": "BY"}
#: ``--search-rounds`` of invert and batch
SEARCH_ROUNDS: dict[str, Any] = {
    "type": _integer(1, 10),
    "help": "bent-ray default: searches of a survey that none of the candidates fits to the noise (default 3); 1 "
            "stops after one, for surveys off the prior (field data) where more searches cost their time without "
            "a better fit"}
STARTS_HELP = "candidates returned per survey (latent SGD: random starts, optimised as one batch)"


def _kept_text(kept: dict) -> str:
    """What ``train-vae`` says about the evaluation it kept (``keep='best'``)."""
    from .prior.training import highest_heldout_accuracy

    highest = highest_heldout_accuracy(kept)
    within = "" if kept["heldout_accuracy"] == highest else f", within --keep-tolerance of the highest {highest:.4f}"
    return (f"kept the best evaluation: step {kept['step']}, held-out accuracy {kept['heldout_accuracy']:.4f}"
            f"{within} (--keep last for the last step's weights)")


def _cmd_train_vae(args: argparse.Namespace) -> None:
    import torch

    from .io.images import read_image
    from .prior.data import DEFAULT_TRAINING_IMAGE
    from .prior.training import TrainConfig, train_vae
    from .prior.vae import VAEConfig
    from .workflows import check_output

    if args.export is not None:
        check_output(args.export, (".pt",), inputs=(args.checkpoint, args.image), overwrite=args.overwrite)
        if args.export.resolve() == args.checkpoint.resolve():
            raise ConfigError("--export must differ from --checkpoint: the float16 copy would replace the "
                              "resumable training checkpoint")
    check_output(args.checkpoint, (".pt",), inputs=(args.image,))
    if args.threads:
        torch.set_num_threads(args.threads)
    image_path = Path(args.image or DEFAULT_TRAINING_IMAGE)
    image = read_image(image_path, channels=args.channels)
    if args.reference:
        vae_config = VAEConfig.reference((args.nz, args.nx), args.latent_dim)
    else:
        vae_config = VAEConfig((args.nz, args.nx), args.latent_dim)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         lr_decay=args.lr_decay, lr_decay_steps=args.lr_decay_steps, beta=args.beta,
                         beta_warmup_steps=args.beta_warmup,
                         reconstruction=args.loss, seed=args.seed, max_minutes=args.minutes,
                         checkpoint_every_s=args.checkpoint_every, adversarial=args.adversarial,
                         variogram_weight=args.variogram_weight,
                         proportion_spread_weight=args.proportion_spread_weight, compile=args.compile,
                         mixed_precision=args.mixed_precision, keep_tolerance=args.keep_tolerance)
    vae = train_vae(image, args.checkpoint, vae_config, config, device=args.device,
                    image_source=image_path.name, image_channels=args.channels or "default", keep=args.keep)
    history = vae.metadata["history"]
    if history["step"]:
        binary_like = history["prior_binary_like"][-1]  # None for evaluations by geoinv 0.1
        binary_text = "-" if binary_like is None else f"{binary_like:.3f}"
        print(f"step {history['step'][-1]}: held-out accuracy {history['heldout_accuracy'][-1]:.4f}, "
              f"prior samples binary-like {binary_text}, loss {history['loss'][-1]:.1f}")
    kept = vae.metadata["training"]["kept"]
    if kept["which"] == "best":
        print(_kept_text(kept))
    if args.export:
        from .prior.vae import save_checkpoint

        save_checkpoint(args.export, vae, vae.metadata, dtype=torch.float16)
        print(f"exported {args.export}")
    if args.report_samples:
        _write_training_report(vae, image, args.checkpoint, args.report_samples)


def _write_training_report(vae, image, checkpoint: Path, n_samples: int) -> None:
    """The prior's quality report beside its checkpoint (replaced by every run: it describes the checkpoint)."""
    from .prior.quality import prior_report

    _save_report(prior_report(vae, image, n_samples=n_samples), checkpoint.with_suffix(".report.json"))
    print("(geoinv prior-report CHECKPOINT for more samples and an inversion check)")


def _save_report(report, path: Path) -> None:
    """Print a prior report and write it as JSON at ``path`` and a figure beside it (.png)."""
    print(report.summary())
    report.write_json(path)
    report.figure(path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


def _cmd_prior_report(args: argparse.Namespace) -> int:
    from .io.images import read_image
    from .prior import default_training_image
    from .prior.quality import prior_report
    from .prior.vae import load_vae
    from .workflows import check_output

    figure = args.output.with_suffix(".png")
    check_output(args.output, (".json",), inputs=(args.checkpoint, args.image), overwrite=args.overwrite,
                 figure=figure)
    check_output(figure, (".png",), inputs=(args.checkpoint, args.image), overwrite=args.overwrite)
    vae = load_vae(args.checkpoint)
    image = default_training_image() if args.image is None else read_image(args.image, channels=args.channels)
    report = prior_report(vae, image, n_samples=args.samples, seed=args.seed)
    if args.inversion_crops:
        from .workflows import inversion_check

        print(f"inversion check: {args.inversion_crops} held-out crops, straight-ray data, σ = 0.25 ns ...")
        report.add_inversion_check(inversion_check(vae, image, n_crops=args.inversion_crops, seed=args.seed,
                                                   progress=True))
    _save_report(report, args.output)
    return 0 if report.passed or not args.strict else 4


def _cmd_simulate(args: argparse.Namespace) -> None:
    from .workflows import simulate_comparison

    print("\n".join(simulate_comparison(args.output, args.seed)))
    print(f"wrote {args.output / 'simulation.png'} and {args.output / 'simulation.npz'}")


def _cmd_export_vae(args: argparse.Namespace) -> None:
    import torch

    from .prior.vae import load_vae, save_checkpoint
    from .workflows import check_output

    check_output(args.output, (".pt",), inputs=(args.checkpoint,), overwrite=args.overwrite)
    vae = load_vae(args.checkpoint)
    metadata = dict(vae.metadata)
    metadata["exported_from"] = {"file": args.checkpoint.name, "command": "geoinv " + " ".join(sys.argv[1:])}
    save_checkpoint(args.output, vae, metadata, dtype=torch.float16)
    size_mb = args.output.stat().st_size / 1e6
    steps = metadata.get("training", {}).get("steps_done", "?")
    print(f"exported {args.output} ({size_mb:.1f} MB, float16, {steps} training steps)")


def _pair(text: str) -> tuple[float, float]:
    """``A,B`` → two numbers (argparse type of ``--velocities`` and ``--velocity-range``)."""
    try:
        first, second = (float(value) for value in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers as A,B (e.g. 0.06,0.08), got {text!r}") from None
    if not all(math.isfinite(value) and value > 0 for value in (first, second)):
        raise argparse.ArgumentTypeError(f"expected two positive finite numbers, got {text!r}")
    return first, second


def _velocity_range(args: argparse.Namespace) -> tuple[float, float]:
    """``--velocity-range`` in m/s (``--velocity-unit``); default crosshole radar."""
    from .survey import RADAR_VELOCITY_RANGE
    from .units import velocity_factor

    given = getattr(args, "velocity_range", None)
    if given is None:
        return RADAR_VELOCITY_RANGE
    slowest, fastest = (value * velocity_factor(args.velocity_unit, "--velocity-unit") for value in given)
    if not slowest < fastest:
        raise ConfigError(f"--velocity-range must be SLOWEST,FASTEST with slowest < fastest, got {given}")
    return slowest, fastest


def _petrophysics(args: argparse.Namespace):
    """``--velocities CHANNEL,MATRIX`` (``--velocity-unit``) → FaciesVelocity, checked against the velocity range."""
    from .petrophysics import FaciesVelocity
    from .units import velocity_factor

    if args.velocities is None:
        return None
    unit = getattr(args, "velocity_unit", "m/ns")
    factor = velocity_factor(unit, "--velocity-unit")
    slowest, fastest = _velocity_range(args)
    if not all(slowest <= value * factor <= fastest for value in args.velocities):
        wave = "radar " if getattr(args, "velocity_range", None) is None else ""
        raise ConfigError(
            f"--velocities {args.velocities[0]:g},{args.velocities[1]:g} {unit} lies outside the plausible {wave}"
            f"velocities {slowest / factor:g}-{fastest / factor:g} {unit}; are they in {unit}? For other waves "
            "pass --velocity-range SLOWEST,FASTEST (and --velocity-unit m/s)")
    channel, matrix = args.velocities
    return FaciesVelocity(channel, matrix, unit=unit)


def _unknowns(args: argparse.Namespace):
    """``--estimate-velocities`` / ``--estimate-time-zero`` / ``--time-zero-by`` → FieldUnknowns (or None)."""
    from .nuisance import FieldUnknowns

    time_zero = args.estimate_time_zero or args.time_zero_by is not None
    if not (args.estimate_velocities or time_zero):
        return None
    return FieldUnknowns(velocities=args.estimate_velocities, time_zero=time_zero,
                         time_zero_by=args.time_zero_by or "survey")


def _cmd_demo(args: argparse.Namespace) -> None:
    from .workflows import run_demo

    print(f"geoinv demo: a held-out channelized model, noisy {args.forward} traveltimes on the reference "
          f"crosshole survey (625 data, σ = {args.noise} ns), latent SGD from {args.starts} starts")
    report, _ = run_demo(args.output, args.forward, args.starts, args.seed, args.noise, not args.quiet,
                         epochs=args.epochs, petrophysics=_petrophysics(args), refine=not args.no_refine)
    print("\n".join(report.lines()))
    print(f"wrote {args.output / 'demo.png'} and {args.output / 'demo.h5'}")


def _cmd_invert(args: argparse.Namespace) -> None:
    from .workflows import invert_file

    solutions = invert_file(args.survey, args.output, args.forward, args.solver, args.starts, args.seed,
                            args.preset, args.vae, not args.quiet, args.epochs, _petrophysics(args),
                            refine=not args.no_refine, absolute_error=args.absolute_error,
                            relative_error=args.relative_error, overwrite=args.overwrite,
                            solver_settings={**_sampler_settings(args), **_search_settings(args)},
                            columns=args.columns,
                            time_unit=args.time_unit, velocity_range=_velocity_range(args),
                            unknowns=_unknowns(args), cell_size=args.cell_size, workers=args.workers)
    print(f"on the prior's canvas: {solutions.config['canvas']}")
    print(solutions.summary())
    if solutions.from_sampler:
        from .sampling import mixing

        report = mixing(solutions, warn=False)
        print(report.summary())
        if not report.mixed.all():
            print("the chains have not mixed: the maps are not yet posterior maps; run longer (--draws), with "
                  "more --starts so that the chains start in the basins that fit, or with --chain-starts laplace "
                  "to sample the best basin")
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")


def _sampler_settings(args: argparse.Namespace) -> dict:
    """The sampler's options (``--samples``, ``--chains``, ...) as its settings (refused for optimisers)."""
    pairs = (("n_samples", args.samples), ("n_chains", args.chains), ("n_draws", args.draws),
             ("n_warmup", args.draws), ("starts", args.chain_starts), ("leapfrog_steps", args.leapfrog_steps),
             ("differential_evolution", args.differential_evolution), ("line_directions", args.line_directions),
             ("preconditioner", args.preconditioner))
    settings = {name: value for name, value in pairs if value is not None}
    from .solvers import SOLVERS

    if settings and not SOLVERS.get(args.solver).samples:
        raise ConfigError(f"--samples, --chains, --draws, --chain-starts, --leapfrog-steps, "
                          f"--differential-evolution, --line-directions and --preconditioner set a sampler "
                          f"(--solver latent-mcmc), not {args.solver!r}")
    return settings


def _search_settings(args: argparse.Namespace) -> dict:
    """``--search-rounds`` as a setting of the bent-ray default search (checked where the solver is built)."""
    return {} if args.search_rounds is None else {"rounds": args.search_rounds}


#: exit status of a batch that finished with failed panels
PANELS_FAILED = 3


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchSettings, run_batch

    settings = BatchSettings(solver=args.solver, forward=args.forward, n_starts=args.starts, seed=args.seed,
                             preset=args.preset, epochs=args.epochs,
                             prior_path=None if args.vae is None else str(args.vae), refine=not args.no_refine,
                             canvas_spacing=args.cell_size, estimate_velocities=args.estimate_velocities,
                             estimate_time_zero=args.estimate_time_zero or args.time_zero_by is not None,
                             time_zero_by=args.time_zero_by or "survey", search_rounds=args.search_rounds)
    summary = run_batch(args.campaign, args.output, settings, scheduler=args.scheduler, workers=args.workers,
                        threads_per_worker=args.threads_per_worker, overwrite=args.overwrite,
                        replace_output=args.replace_output, progress=not args.quiet)
    print("\n".join(summary.lines()))
    print(f"wrote {args.output}")
    if summary.failed:
        print(f"geoinv: {len(summary.failed)} panel(s) failed (listed above); exit status {PANELS_FAILED}",
              file=sys.stderr)
        return PANELS_FAILED
    return 0


def _cmd_survey_info(args: argparse.Namespace) -> None:
    from .io.campaign import read_campaign
    from .io.files import HDF5_SUFFIXES
    from .units import m_per_s_to_m_per_ns, s_to_ns

    if args.file.suffix.lower() not in HDF5_SUFFIXES:
        _survey_file_info(args)
        return
    if args.columns is not None or args.time_unit is not None:
        raise ConfigError("--columns and --time-unit describe column files (.txt, .csv, .tsv), not HDF5 files")
    campaign = read_campaign(args.file)
    print(f"{args.file}: {len(campaign.surveys)} readable survey(s), {len(campaign.problems)} with problems")
    for entry in campaign.surveys:
        survey, grid = entry.survey, entry.grid
        velocities = ("default velocities" if entry.petrophysics is None else
                      f"v {m_per_s_to_m_per_ns(entry.petrophysics.channel_velocity):g}/"
                      f"{m_per_s_to_m_per_ns(entry.petrophysics.matrix_velocity):g}"
                      " m/ns")
        times = s_to_ns(survey.traveltimes)
        print(f"  {entry.name}: {len(survey.sources)} sources, {len(survey.receivers)} receivers, "
              f"{survey.n_data} picks ({times.min():.1f}-{times.max():.1f} ns), "
              f"grid {'default' if grid is None else f'{grid.shape} of {grid.spacing[0]:g} m'}, {velocities}")
    for name, message in campaign.problems.items():
        print(f"  {name}: PROBLEM: {message}")


def _survey_file_info(args: argparse.Namespace) -> None:
    """``survey-info`` of a pyGIMLi or column file: sizes, times, apparent velocities, extent."""
    import numpy as np

    from .canvas import describe_placement, place_on_canvas
    from .io import read_survey
    from .prior.vae import VAEConfig
    from .units import s_to_ns

    survey, _ = read_survey(args.file, columns=args.columns, time_unit=args.time_unit, velocity_range=None)
    times = s_to_ns(survey.traveltimes)
    positions = np.vstack([survey.sources, survey.receivers])
    (x_low, z_low), (x_high, z_high) = positions.min(axis=0), positions.max(axis=0)
    print(f"{args.file}: {len(survey.sources)} sources, {len(survey.receivers)} receivers, {survey.n_data} picks "
          f"({times.min():.4g}-{times.max():.4g} ns)")
    if survey.errors is not None:
        errors = s_to_ns(survey.errors)
        print(f"  errors {errors.min():.3g}-{errors.max():.3g} ns")
    apparent = survey.apparent_velocities() * 1e-9
    print(f"  apparent velocities {apparent.min():.4g}-{apparent.max():.4g} m/ns "
          f"(5-95 %: {np.percentile(apparent, 5):.4g}-{np.percentile(apparent, 95):.4g})")
    print(f"  sensors span x {x_low:g} to {x_high:g} m, z {z_low:g} to {z_high:g} m")
    try:
        canvas = place_on_canvas(survey, VAEConfig().model_shape)
        print(f"  on the shipped prior's canvas: {describe_placement(canvas)}")
    except GeoinvError as exc:
        print(f"  does not fit the shipped prior's canvas: {exc}")


def _registered(registry) -> list[str]:
    """Names for argparse choices; empty (no choices enforced) if geoinv is not installed."""
    try:
        return registry.names()
    except GeoinvError:
        return []


def build_parser() -> argparse.ArgumentParser:
    from .forward import FORWARDS
    from .prior.training import MIXED_PRECISION, TrainConfig
    from .prior.vae import VAEConfig
    from .solvers import SOLVERS, LatentSGDConfig

    forwards, solvers = _registered(FORWARDS), _registered(SOLVERS)
    train_defaults, vae = TrainConfig(), VAEConfig()
    velocity_help = ("facies velocities as CHANNEL,MATRIX in --velocity-unit (default 0.06,0.08 m/ns, the "
                     "reference values of the shipped prior's training image); with --estimate-velocities: the start")
    parser = argparse.ArgumentParser(prog="geoinv", description="Structured-model geophysical inversion.")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="end-to-end synthetic inversion with the shipped VAE (the main job)")
    demo.add_argument("--forward", choices=forwards or None, default="straight-ray",
                      help="forward operator (every registered one, plug-ins included)")
    demo.add_argument("--starts", type=STARTS, default=10, help="random starts, optimised as one batch")
    demo.add_argument("--seed", type=SEED, default=0)
    demo.add_argument("--noise", type=_number(0.0, 100.0), default=0.25, help="noise standard deviation (ns)")
    demo.add_argument("--epochs", type=EPOCHS, help="epochs of every stage of the schedule (for quick checks)")
    demo.add_argument("--velocities", type=_pair, help=velocity_help)
    demo.add_argument("--no-refine", action="store_true",
                      help="skip refining the best models beyond the prior (geoinv.RefineConfig)")
    demo.add_argument("--output", type=Path, default=Path("geoinv-output"), help="output folder")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_cmd_demo)

    invert = sub.add_parser("invert", help="invert the traveltimes of a survey file (.h5, pyGIMLi .sgt or columns)")
    invert.add_argument("survey", type=Path, help="survey file: .h5 (layout: geoinv.io.hdf5), a pyGIMLi "
                        "traveltime file (.sgt: s g t err) or picks in columns (.txt, .csv, .tsv)")
    invert.add_argument("--columns", help="column files: the role of each column, e.g. sx,sz,rx,rz,t,err ('-' "
                        "skips one; default: the header's names, or sx sz rx rz t [err])")
    invert.add_argument("--time-unit", choices=sorted(TIME_UNITS),
                        help="column files: unit of the times and errors (default ns)")
    invert.add_argument("--absolute-error", type=_number(0.0, 1e-3), metavar="SECONDS",
                        help="error model for surveys without errors (.sgt or columns without err, .h5 without "
                        "errors): absolute part in s (e.g. 2.5e-10)")
    invert.add_argument("--relative-error", type=_number(0.0, 1.0), metavar="FRACTION",
                        help="error model for files without an err column: relative part (e.g. 0.01)")
    invert.add_argument("--forward", choices=forwards or None, default="straight-ray",
                        help="forward operator (every registered one, plug-ins included)")
    invert.add_argument("--solver", choices=solvers or None, default="latent-sgd",
                        help="solver (learned ones are fitted on the survey's problem first)")
    invert.add_argument("--preset", choices=LatentSGDConfig.preset_names(),
                        help=PRESET_HELP)
    invert.add_argument("--velocities", type=_pair, help=velocity_help)
    invert.add_argument("--velocity-unit", choices=sorted(VELOCITY_UNITS), default="m/ns",
                        help="unit of --velocities and --velocity-range (default m/ns)")
    invert.add_argument("--velocity-range", type=_pair, metavar="SLOWEST,FASTEST",
                        help="plausible apparent velocities of the picks (default radar: 0.01,0.3 m/ns); e.g. "
                        "--velocity-range 300,6000 --velocity-unit m/s for seismic picks")
    invert.add_argument("--estimate-velocities", action="store_true",
                        help="estimate the channel and matrix velocities with the model (start: --velocities, or "
                        "the picks' apparent velocities)")
    invert.add_argument("--estimate-time-zero", action="store_true",
                        help="estimate one time-zero shift of all picks with the model")
    invert.add_argument("--time-zero-by", **TIME_ZERO_BY,
                        help="estimate one time-zero shift per borehole of the transmitters (source-borehole) or "
                        "receivers (receiver-borehole) instead (implies --estimate-time-zero)")
    invert.add_argument("--cell-size", type=POSITIVE, default=0.1,
                        help="cell size (m) the prior was trained for, to place the survey on its canvas")
    invert.add_argument("--no-refine", action="store_true",
                        help="skip refining the best models beyond the prior (geoinv.RefineConfig)")
    invert.add_argument("--starts", type=STARTS, default=20, help=STARTS_HELP + "; latent-mcmc: starts of the "
                        "optimiser whose best candidates start the chains")
    invert.add_argument("--samples", type=STARTS, help="latent-mcmc: posterior draws kept for the maps (default 1000)")
    invert.add_argument("--chains", type=_integer(2, 1024), help="latent-mcmc: chains (default 4)")
    invert.add_argument("--draws", type=_integer(1, 1_000_000), help="latent-mcmc: steps per chain after a "
                        "warm-up of as many (default 1000)")
    invert.add_argument("--chain-starts", choices=("candidates", "laplace"),
                        help="latent-mcmc: a chain at each of the optimiser's best candidates, or every chain "
                             "around its best one, dispersed by its Laplace covariance")
    invert.add_argument("--leapfrog-steps", type=_integer(1, 1000),
                        help="latent-mcmc: Hamiltonian (HMC) moves of this many leapfrog steps, each a forward "
                        "and backward pass (default 1: Langevin moves, MALA); --draws counts moves")
    invert.add_argument("--differential-evolution", type=_integer(0, 1000), metavar="K",
                        help="latent-mcmc: a differential-evolution move after every K-th step, along differences "
                        "of the states the chains visited in warm-up (one more forward and backward pass per "
                        "move; default 0: off)")
    invert.add_argument("--line-directions", type=_integer(0, 1000), metavar="M",
                        help="latent-mcmc: after every step a random-walk move along one of the M directions in "
                        "which the warm-up's draws spread most beyond the Laplace approximation, in turn (one "
                        "more forward and backward pass per step; default 0: off)")
    invert.add_argument("--preconditioner", choices=("gauss-newton", "pooled-gauss-newton", "widened-gauss-newton",
                                                     "covariance", "local"),
                        help="latent-mcmc: the proposal's covariance, set at the end of each warm-up window: each "
                        "chain's Gauss-Newton covariance (default), the inverse of the chains' mean Gauss-Newton "
                        "Hessian (for curvature that changes from point to point, as the eikonal's), that widened "
                        "to the draws' spread where they reach further ('widened-gauss-newton'), the draws' "
                        "covariance, or each point's own ('local', a Jacobian per step)")
    invert.add_argument("--search-rounds", **SEARCH_ROUNDS)
    invert.add_argument("--workers", type=_integer(1, 1024), default=1,
                        help="eikonal forward: processes solving the starts' (or chains') models in parallel, "
                             "at most one per free core (default 1)")
    invert.add_argument("--seed", type=SEED, default=0)
    invert.add_argument("--vae", type=Path, help="VAE checkpoint (default: the shipped one)")
    invert.add_argument("--epochs", type=EPOCHS, help="epochs of every stage of the schedule (for quick checks)")
    invert.add_argument("--output", type=Path, default=Path("geoinv-output/inversion.h5"),
                        help="results file (.h5); the figure goes beside it with the suffix .png")
    invert.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    invert.add_argument("--quiet", action="store_true", help="no progress bar")
    invert.set_defaults(func=_cmd_invert)

    batch = sub.add_parser("batch", help="invert every survey of an HDF5 campaign on Dask (resumable)")
    batch.add_argument("campaign", type=Path, help="campaign file (layout: geoinv.io.campaign) or one survey")
    batch.add_argument("output", type=Path, help="results file (.h5); finished panels also in OUTPUT.parts/")
    batch.add_argument("--forward", choices=forwards or None, default="straight-ray")
    batch.add_argument("--solver", choices=solvers or None, default="latent-sgd")
    batch.add_argument("--preset", choices=LatentSGDConfig.preset_names(), help=PRESET_HELP)
    batch.add_argument("--starts", type=STARTS, default=20, help=STARTS_HELP)
    batch.add_argument("--search-rounds", **SEARCH_ROUNDS)
    batch.add_argument("--seed", type=SEED, default=0)
    batch.add_argument("--epochs", type=EPOCHS, help="epochs of every stage of the schedule (for quick checks)")
    batch.add_argument("--vae", type=Path, help="VAE checkpoint (default: the shipped one)")
    batch.add_argument("--cell-size", type=POSITIVE, default=0.1, help="cell size (m) the prior was trained for")
    batch.add_argument("--no-refine", action="store_true", help="skip refining the best models beyond the prior")
    batch.add_argument("--estimate-velocities", action="store_true",
                       help="estimate each panel's facies velocities (start: its petrophysics, or its picks)")
    batch.add_argument("--estimate-time-zero", action="store_true", help="estimate each panel's time-zero shift")
    batch.add_argument("--time-zero-by", **TIME_ZERO_BY,
                       help="one time-zero shift per transmitter (source-borehole) or receiver (receiver-borehole) "
                       "borehole of each panel (implies --estimate-time-zero)")
    where = batch.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running dask scheduler (default: a local cluster)")
    where.add_argument("--workers", type=_integer(1, 1024), default=2, help="worker processes of the local cluster")
    batch.add_argument("--threads-per-worker", type=_integer(1, 1024), default=1,
                       help="threads per worker (1: the eikonal and pyGIMLi hold the GIL)")
    batch.add_argument("--overwrite", action="store_true", help="redo panels that already have a result")
    batch.add_argument("--replace-output", action="store_true",
                       help="replace an existing OUT.h5 that is not this campaign's batch result")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(func=_cmd_batch)

    info = sub.add_parser("survey-info", help="list the surveys of a file: sizes, units, problems found")
    info.add_argument("file", type=Path, help="campaign or survey file (.h5, .sgt, .txt, .csv, ...)")
    info.add_argument("--columns", help="column files: the role of each column (as for invert)")
    info.add_argument("--time-unit", choices=sorted(TIME_UNITS), help="column files: unit of the times")
    info.set_defaults(func=_cmd_survey_info)

    simulate = sub.add_parser("simulate", help="simulate straight-ray and eikonal traveltimes on a held-out model")
    simulate.add_argument("--output", type=Path, default=Path("geoinv-output"), help="output folder")
    simulate.add_argument("--seed", type=SEED, default=0, help="which held-out crop")
    simulate.set_defaults(func=_cmd_simulate)

    make_ti = sub.add_parser("make-ti", help="generate a channelized training image")
    make_ti.add_argument("output", type=Path, help="output file (.h5, .png, .npy, .gslib)")
    make_ti.add_argument("--rows", type=_integer(2, 100_000), default=2500)
    make_ti.add_argument("--cols", type=_integer(2, 100_000), default=2500)
    make_ti.add_argument("--proportion", type=float, default=0.26, help="channel proportion")
    make_ti.add_argument("--direction", type=_number(-360.0, 360.0, low_open=False), default=0.0,
                         help="main direction (degrees from x)")
    make_ti.add_argument("--width", type=_number(0.0, 10_000.0), default=12.0, help="mean channel width (pixels)")
    make_ti.add_argument("--seed", type=SEED, default=0)
    make_ti.add_argument("--channels", choices=("dark", "light"),
                         help="PNG only: channel pixels dark (default, as printed) or light")
    make_ti.add_argument("--overwrite", action="store_true", help="replace an existing image")
    make_ti.set_defaults(func=_cmd_make_ti)

    train = sub.add_parser("train-vae", help="train (or resume training) a VAE prior")
    train.add_argument("--image", type=Path, help="training image (default: the shipped one)")
    train.add_argument("--channels", choices=("dark", "light", "low", "high"),
                       help="which pixels of the image are channels: PNG default 'dark' (dark pixels), "
                            "NPY/HDF5/GSLIB default 'high' (value 1); recorded in the checkpoint")
    train.add_argument("--checkpoint", type=Path, default=CACHE_DIR / "vae-train" / "checkpoint.pt",
                       help="resumable checkpoint (resumed if it exists)")
    train.add_argument("--export", type=Path, help="write a compact float16 copy here when done")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --export file")
    train.add_argument("--nz", type=_integer(4, 100_000), default=vae.model_shape[0])
    train.add_argument("--nx", type=_integer(4, 100_000), default=vae.model_shape[1])
    train.add_argument("--latent-dim", type=_integer(1, 8192), default=vae.latent_dim)
    train.add_argument("--reference", action="store_true", help="use the reference (full-width) architecture")
    train.add_argument("--steps", type=_integer(0, 10**9), default=train_defaults.steps)
    train.add_argument("--minutes", type=POSITIVE, help="stop after this many minutes (resume later)")
    train.add_argument("--keep", choices=("best", "last"), default="best",
                       help="weights to export, report and load from the checkpoint: the latest evaluation within "
                            "--keep-tolerance of the best held-out accuracy after the β warm-up (default), or the "
                            "last step's; the checkpoint keeps both (training resumes from the last)")
    train.add_argument("--keep-tolerance", type=_number(0.0, 1.0, low_open=False),
                       default=train_defaults.keep_tolerance,
                       help="held-out accuracy by which a later evaluation may trail the best and still be kept "
                            "(later weights are sharper; 0 keeps the best)")
    train.add_argument("--batch-size", type=_integer(1, 100_000), default=train_defaults.batch_size)
    train.add_argument("--lr", type=POSITIVE, default=train_defaults.lr)
    train.add_argument("--lr-decay", type=_number(0.0, 1.0), default=train_defaults.lr_decay)
    train.add_argument("--lr-decay-steps", type=_integer(1, 10**9), default=train_defaults.lr_decay_steps)
    train.add_argument("--beta", type=_number(0.0, low_open=False), default=train_defaults.beta)
    train.add_argument("--beta-warmup", type=_integer(0, 10**9), default=train_defaults.beta_warmup_steps,
                       help="steps to ramp beta from 0")
    train.add_argument("--loss", choices=("bce", "mse"), default=train_defaults.reconstruction)
    train.add_argument("--adversarial", type=_number(0.0, low_open=False), default=train_defaults.adversarial,
                       help="weight factor of the discriminator term on prior draws (0: plain VAE)")
    train.add_argument("--variogram-weight", type=_number(0.0, low_open=False),
                       default=train_defaults.variogram_weight,
                       help="with --adversarial: pull of the prior draws' variograms (x and z) towards the "
                            "training image's (0: off)")
    train.add_argument("--proportion-spread-weight", type=_number(0.0, low_open=False),
                       default=train_defaults.proportion_spread_weight,
                       help="with --adversarial: pull of the spread of the prior draws' channel proportions "
                            "towards the training crops' (0: off; for images whose proportion drifts)")
    train.add_argument("--seed", type=SEED, default=train_defaults.seed)
    train.add_argument("--device", default="cpu")
    train.add_argument("--threads", type=_integer(1, 1024), help="torch CPU threads")
    train.add_argument("--compile", action="store_true",
                       help="compile the training pass with torch.compile (faster steps after a one-off compile; "
                            "uncompiled with a warning where compiling fails)")
    train.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=train_defaults.mixed_precision,
                       help="bfloat16 forward passes, float32 weights: 'auto' on a CUDA device only (default), "
                            "'bf16' on any device, 'off'")
    train.add_argument("--checkpoint-every", type=POSITIVE, default=train_defaults.checkpoint_every_s, help="seconds")
    train.add_argument("--report-samples", type=_integer(0, 100_000), default=300,
                       help="prior samples of the quality report written beside the checkpoint at the end "
                            "(CHECKPOINT.report.json and .png; 0: none)")
    train.set_defaults(func=_cmd_train_vae)

    report = sub.add_parser("prior-report", help="is a trained prior good enough? statistics against its "
                                                 "training image, marked against goals, with a figure")
    report.add_argument("checkpoint", type=Path, help="trained VAE (training checkpoint or exported copy)")
    report.add_argument("--image", type=Path, help="the training image (default: the shipped one)")
    report.add_argument("--channels", choices=("dark", "light", "low", "high"),
                        help="which pixels of --image are channels, as for train-vae")
    report.add_argument("--output", type=Path, default=Path("prior-report.json"),
                        help="report JSON; the figure goes beside it as .png")
    report.add_argument("--samples", type=_integer(50, 100_000), default=1000,
                        help="prior samples and training crops compared")
    report.add_argument("--inversion-crops", type=_integer(0, 1000), default=20,
                        help="held-out crops inverted with straight-ray data for the inversion check "
                             "(0: none; about 30 s each on one core with the shipped prior; the median of "
                             "a few crops is too noisy to mark: its standard error is printed)")
    report.add_argument("--seed", type=SEED, default=0)
    report.add_argument("--strict", action="store_true", help="exit with status 4 when a statistic misses its goal")
    report.add_argument("--overwrite", action="store_true", help="replace an existing report")
    report.set_defaults(func=_cmd_prior_report)

    export = sub.add_parser("export-vae", help="write a compact float16 copy of a trained VAE")
    export.add_argument("checkpoint", type=Path, help="training checkpoint")
    export.add_argument("output", type=Path, help="output .pt file")
    export.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    export.set_defaults(func=_cmd_export_vae)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``geoinv`` command; returns the exit status.

    0 success; 2 bad input (a geoinv error, a file-system error, or argparse's
    usage error), with one message and no traceback; 3 a batch finished but
    some panels failed (the others' results are written; the failures are
    listed); 4 ``prior-report --strict`` found a statistic that misses its
    goal; 1 an unexpected error (a bug: rerun with ``--debug`` for the
    traceback); 130/143 interrupted by SIGINT/SIGTERM, after cleaning up
    temporary files.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interruptible():
            status = args.func(args) or 0
            check()  # a signal swallowed on the way still ends the run as interrupted
    except GeoinvError as exc:
        return _fail(args, f"error: {exc}", 2)
    except Interrupted as exc:
        return _fail(args, f"interrupted by {exc}; finished files are complete, unfinished ones were not "
                     "written", 128 + exc.signum)
    except KeyboardInterrupt:
        return _fail(args, "interrupted; finished files are complete, unfinished ones were not written", 130)
    except OSError as exc:  # disk full, permissions, a vanished folder: the user's to fix
        return _fail(args, f"error: {exc.strerror or exc} ({exc.filename or 'file system'})", 2)
    except Exception as exc:  # no raw traceback reaches a user unless asked for
        return _fail(args, f"internal error: {type(exc).__name__}: {exc}. This is a bug in geoinv: rerun "
                     "with --debug for the traceback and report it", 1)
    return status


def _fail(args: argparse.Namespace, message: str, status: int) -> int:
    if getattr(args, "debug", False):
        import traceback

        traceback.print_exc()
    print(f"geoinv: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
