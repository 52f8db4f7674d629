"""Thin file-and-figure layers around :func:`geoinv.invert` for ``geoinv demo``, ``invert`` and ``simulate``."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._atomic import atomic_path
from ._typing import VelocityRange
from .canvas import DEFAULT_CELL_SIZE, describe_placement, place_on_canvas
from .core import invert, make_solver
from .errors import ConfigError
from .forward import forward as build_forward
from .grid import Grid2D
from .nuisance import FieldUnknowns
from .petrophysics import FaciesVelocity
from .solvers import ACCEPTANCE, Solutions, Solver
from .survey import RADAR_VELOCITY_RANGE, Survey
from .units import ns_to_s, s_to_ns

if TYPE_CHECKING:
    from .prior.base import Prior
    from .prior.images import PatchSampler

__all__ = ["DemoReport", "check_output", "check_output_folder", "check_survey", "inversion_check", "invert_file",
           "invert_survey", "representative_crop", "run_demo", "simulate_comparison"]


def representative_crop(sampler: PatchSampler, seed: int, proportion: tuple[float, float] = (0.18, 0.36)
                        ) -> torch.Tensor:
    """A held-out crop whose channel proportion is typical (some crops are all matrix)."""
    crops = sampler.test_batch(64, torch.Generator().manual_seed(seed))
    fractions = crops.mean(dim=(1, 2))
    typical = ((fractions >= proportion[0]) & (fractions <= proportion[1])).nonzero()
    return crops[int(typical[0]) if len(typical) else int(fractions.argmax())]


def check_output(path: Path, suffixes: tuple[str, ...], inputs: tuple = (), overwrite: bool | None = None,
                 figure: Path | None = None) -> Path:
    """Validate an output path before any work; raise :class:`ConfigError` naming the fix.

    Checks: the suffix, not a folder, not any of ``inputs`` (nor is ``figure``,
    the figure written beside it), the folder creatable and writable, and, when
    ``overwrite`` is False, that no file of that name exists yet (None: replace silently).
    """
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise ConfigError(f"output {str(path)!r} names no file; give a file name ending in {' or '.join(suffixes)}")
    if path.suffix.lower() not in suffixes:
        raise ConfigError(f"output {str(path)!r} has the suffix {path.suffix!r}; it must end in "
                          f"{' or '.join(suffixes)}")
    for target, what in ((path, "output"), (figure, "figure")):
        if target is None:
            continue
        if target.is_dir():
            raise ConfigError(f"{what} {str(target)!r} is a folder; give a file name")
        for source in inputs:
            if source is not None and Path(source).exists() and target.exists() and target.samefile(source):
                detail = "" if what == "output" else f" (the {what} {target.name} goes beside the results)"
                raise ConfigError(f"{what} {str(target)!r} is the input file {str(source)!r}{detail}; choose "
                                  "another output name")
    folder = path.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"cannot create the output folder {str(folder)!r}: {str(existing)!r} is a file")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"the output folder {str(existing)!r} is not writable; choose another --output")
    if overwrite is False:
        for target in (path, figure):
            if target is not None and target.exists():
                raise ConfigError(f"{str(target)!r} exists; pass --overwrite to replace it (or choose another "
                                  "output name)")
    return path


def check_output_folder(folder: Path, names: tuple[str, ...]) -> Path:
    """Validate an output folder (creatable, writable) and the files to be written in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {str(folder)!r} is a file, not a folder; give a folder name")
    for name in names:
        check_output(folder / name, (Path(name).suffix,))
    return folder


@dataclass
class DemoReport:
    """What ``geoinv demo`` measured."""

    forward: str
    n_starts: int
    noise_std_ns: float
    best_data_rmse_ns: float
    median_data_rmse_ns: float
    best_normalised_rmse: float
    median_normalised_rmse: float
    accepted: int
    best_model_rmse: float
    best_pixel_accuracy: float
    seconds: float
    refined_normalised_rmse: float | None = None
    refined_accepted: int | None = None
    refined_count: int | None = None
    refined_model_rmse: float | None = None
    #: one-off cost of the proposal network (simulating its pairs and training it), None when loaded or unused
    proposal_network_seconds: float | None = None
    #: accepted candidates made by randomized maximum likelihood from the search's accepted ones (Refill)
    refilled: int | None = None

    def lines(self) -> list[str]:
        return [
            f"forward operator        {self.forward}",
            f"starts                  {self.n_starts}",
            f"noise σ                 {self.noise_std_ns:.3f} ns",
            (f"data RMSE best / median {self.best_data_rmse_ns:.3f} / {self.median_data_rmse_ns:.3f} ns "
            f"({self.best_normalised_rmse:.2f} σ / {self.median_normalised_rmse:.2f} σ)"),
            f"accepted (≤ {ACCEPTANCE} σ)      {self.accepted} / {self.n_starts}"
            + ("" if not self.refilled else f" ({self.refilled} by RML refill)"),
            f"model RMSE of best      {self.best_model_rmse:.3f} (facies units)",
            f"pixels right, best      {100 * self.best_pixel_accuracy:.1f} %",
            f"inversion time          {self.seconds:.1f} s",
        ] + ([] if self.proposal_network_seconds is None else [
            f"proposal network        built in {self.proposal_network_seconds:.0f} s (once per geometry; cached)",
        ]) + ([] if self.refined_count is None else [
            (f"refined beyond prior    best {self.refined_normalised_rmse:.2f} σ, accepted {self.refined_accepted} / "
            f"{self.refined_count}, model RMSE {self.refined_model_rmse:.3f}"),
        ])


def _network_seconds(solutions: Solutions) -> float | None:
    network = solutions.config.get("proposals", {}).get("network", {})
    return None if not network or network.get("cached") else network["simulate_s"] + network["train_s"]


def _refined_report(refined: dict, truth: torch.Tensor) -> dict:
    if not refined:
        return {}
    return {"refined_normalised_rmse": float(refined["normalised_misfit"][0, 0]),
            "refined_accepted": int(refined["accepted"][0].sum()), "refined_count": int(refined["accepted"].shape[1]),
            "refined_model_rmse": float((refined["models"][0, 0] - truth).pow(2).mean().sqrt())}


def run_demo(output: Path, forward_name: str = "straight-ray", n_starts: int = 10, seed: int = 0,
             noise_std_ns: float = 0.25, progress: bool = True, prior: Prior | None = None,
             epochs: int | None = None, petrophysics: FaciesVelocity | None = None,
             refine: bool = True) -> tuple[DemoReport, Solutions]:
    """Synthetic inversion of a held-out channelized model with the shipped VAE.

    Simulates noisy traveltimes on the reference crosshole survey, inverts them
    with latent SGD from ``n_starts`` random starts, refines the best decoded
    models beyond the prior (the truth is not a decoder output), writes ``demo.png`` and
    ``demo.h5`` (survey, solutions and truth in one atomic file) to ``output``
    and returns the report and the solutions.
    """
    from .io import write_result
    from .plot import inversion_figure
    from .prior import PatchSampler, default_training_image, default_vae

    output = check_output_folder(output, ("demo.h5", "demo.png"))
    result, figure = output / "demo.h5", output / "demo.png"
    prior = (prior or default_vae()).frozen()
    petrophysics = petrophysics or FaciesVelocity()
    grid = Grid2D.crosshole()
    truth = representative_crop(PatchSampler(default_training_image(), grid.shape), seed)
    operator = build_forward(forward_name, grid=grid, survey=Survey.crosshole())
    survey = operator.make_synthetic_data(petrophysics.slowness(truth.double()), ns_to_s(noise_std_ns),
                                          torch.Generator().manual_seed(seed + 1))
    method = make_solver("latent-sgd", operator, n_starts=n_starts, seed=seed, progress=progress, epochs=epochs)
    solutions = invert(survey, prior, operator, method, petrophysics, refine="default" if refine else None)
    assert solutions.models is not None and solutions.normalised_misfit is not None  # latent tomography, with noise
    models = solutions.models[0]
    refined = solutions.refined or {}
    report = DemoReport(
        forward=forward_name, n_starts=n_starts, noise_std_ns=noise_std_ns,
        best_data_rmse_ns=float(solutions.misfit[0, 0]), median_data_rmse_ns=float(solutions.misfit[0].median()),
        best_normalised_rmse=float(solutions.normalised_misfit[0, 0]),
        median_normalised_rmse=float(solutions.normalised_misfit[0].median()),
        accepted=int(solutions.accepted[0].sum()),
        best_model_rmse=float((models[0] - truth).pow(2).mean().sqrt()),
        best_pixel_accuracy=float(((models[0] > 0.5).float() == truth).float().mean()),
        seconds=solutions.wall_time, proposal_network_seconds=_network_seconds(solutions),
        refilled=None if (refilled := solutions.refilled_accepted()) is None else int(refilled[0]),
        **_refined_report(refined, truth))
    write_result(result, solutions, survey, grid, {"truth": truth.numpy()}, {"report": asdict(report)})
    inversion_figure(grid, solutions, figure, truth.numpy(), survey,
                     f"latent SGD, {forward_name} forward, {n_starts} starts")
    return report, solutions


def check_survey(model_shape: tuple[int, int], spacing: float = DEFAULT_CELL_SIZE) -> tuple[Survey, Grid2D]:
    """A crosshole survey across a prior's canvas (boreholes at its side edges, sensors every 0.5 m)."""
    depth, width = model_shape[0] * spacing, model_shape[1] * spacing
    depths = np.arange(0.5, depth - 0.25, 0.5) if depth > 1.0 else np.array([0.25 * depth, 0.75 * depth])
    survey = Survey.crosshole(0.0, width, depths)
    return survey, place_on_canvas(survey, model_shape, spacing, label="the check survey")


def inversion_check(prior: Prior, image: np.ndarray, n_crops: int = 20, n_candidates: int = 5, noise_ns: float = 0.25,
                    seed: int = 0, petrophysics: FaciesVelocity | None = None, refine: bool = True,
                    progress: bool = False) -> dict:
    """What a prior does in use: invert held-out crops of its training image with straight-ray data.

    The crops come from the rows of ``image`` that training keeps apart; each is
    simulated on a crosshole survey across the prior's canvas (boreholes at its
    side edges, sensors every 0.5 m, cells of 0.1 m) with Gaussian noise of
    ``noise_ns`` and inverted by geoinv's default solver from ``n_candidates`` starts.
    With ``refine``, the best candidates are also refined beyond the prior's manifold,
    as :func:`geoinv.invert` does by default (the refined best is what its figure shows).
    ``progress`` shows a bar over the crops (about 30 s each on one core with the shipped prior).

    Returns
    -------
    dict
        Per crop the best candidate's model RMSE (facies 0/1) and normalised data
        misfit (σ), and their medians (``median_model_rmse``, ``median_sigma``); with
        ``refine``, the same of the refined model (``median_refined_rmse``,
        ``median_refined_sigma``); ``median_model_rmse_se``, the bootstrap standard
        error of the marked median over the crops.
    """
    from tqdm.auto import tqdm

    from .prior import PatchSampler

    if n_crops < 1 or n_candidates < 1:
        raise ConfigError("n_crops and n_candidates must be >= 1")
    prior = prior.frozen()
    petrophysics = petrophysics or FaciesVelocity()
    nz, nx = prior.model_shape
    survey, grid = check_survey((nz, nx))
    sampler = PatchSampler(np.asarray(image), grid.shape)
    operator = build_forward("straight-ray", grid=grid, survey=survey)
    rows = []
    for crop in tqdm(range(n_crops), desc="inversion check", unit="crop", disable=not progress):
        truth = representative_crop(sampler, seed + crop)
        data = operator.make_synthetic_data(petrophysics.slowness(truth.double()), ns_to_s(noise_ns),
                                            torch.Generator().manual_seed(seed + 1000 + crop))
        solutions = invert(data, prior, operator, petrophysics=petrophysics, n_candidates=n_candidates,
                           seed=seed + crop, refine="default" if refine else None)
        assert solutions.models is not None and solutions.normalised_misfit is not None
        row = {"model_rmse": float((solutions.models[0, 0] - truth).pow(2).mean().sqrt()),
               "sigma": float(solutions.normalised_misfit[0, 0]), "seconds": solutions.wall_time}
        if solutions.refined is not None:
            row["refined_model_rmse"] = float((solutions.refined["models"][0, 0] - truth).pow(2).mean().sqrt())
            row["refined_sigma"] = float(solutions.refined["normalised_misfit"][0, 0])
        rows.append(row)
    medians = {f"median_{name}": float(np.median([row[key] for row in rows]))
               for name, key in (("model_rmse", "model_rmse"), ("sigma", "sigma"),
                                 ("refined_rmse", "refined_model_rmse"), ("refined_sigma", "refined_sigma"))
               if key in rows[0]}
    spread = median_standard_error([row["model_rmse"] for row in rows], seed)
    return {"crops": rows, **medians, "median_model_rmse_se": spread, "noise_ns": noise_ns,
            "n_candidates": n_candidates, "refine": refine,
            "survey": f"{survey.n_data} straight-ray picks across the canvas"}


def median_standard_error(values: Sequence[float], seed: int = 0, resamples: int = 2000) -> float:
    """Bootstrap standard error of the median of ``values`` (how much another set of crops could move it)."""
    observed = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).choice(observed, (resamples, observed.size))
    return float(np.median(draws, axis=1).std())


def invert_file(path: Path, output: Path, forward_name: str = "straight-ray", solver_name: str = "latent-sgd",
                n_starts: int = 20, seed: int = 0, preset: str | None = None, prior_path: Path | None = None,
                progress: bool = True, epochs: int | None = None,
                petrophysics: FaciesVelocity | None = None, refine: bool = True,
                absolute_error: float | None = None, relative_error: float | None = None,
                overwrite: bool | None = None, solver_settings: dict | None = None, *,
                columns: str | Sequence[str] | None = None, time_unit: str | None = None,
                velocity_range: VelocityRange = RADAR_VELOCITY_RANGE,
                unknowns: FieldUnknowns | None = None, cell_size: float = DEFAULT_CELL_SIZE,
                workers: int = 1) -> Solutions:
    """Invert the traveltimes of a survey file (``.h5``, pyGIMLi ``.sgt`` or a column file); write results
    (``.h5``) and a figure (``.png``).

    The output paths are checked before any work. The survey is inverted on the prior's canvas
    (:func:`~geoinv.canvas.place_on_canvas`): its own grid if it has the prior's shape, else a canvas
    at its grid's origin, or centred on the sensors when the file has no grid; the placement is in
    ``solutions.config["canvas"]``. ``absolute_error`` (s) and ``relative_error`` are the error model
    of files without an ``err`` column; ``columns`` and ``time_unit`` describe column files;
    ``velocity_range`` (m/s) bounds the picks' apparent velocities (None: unchecked); ``unknowns``
    estimates facies velocities and a time zero (``petrophysics`` is then their start);
    ``overwrite`` False refuses an existing results file (None replaces it). ``solver_settings``
    replace single fields of the solver's config (e.g. ``{"n_samples": 2000}`` for ``latent-mcmc``,
    ``{"rounds": 1}`` for the bent-ray default's searches). ``workers`` > 1 solves the eikonal's models
    (starts, chains) in that many processes.
    """
    from .io import read_survey, write_result
    from .plot import inversion_figure
    from .prior import load_prior

    figure = Path(output).with_suffix(".png") if Path(output).suffix else None  # no suffix: refused below
    output = check_output(output, (".h5", ".hdf5"), inputs=(path, prior_path), overwrite=overwrite, figure=figure)
    survey, grid = read_survey(path, absolute_error=absolute_error, relative_error=relative_error,
                               velocity_range=velocity_range, columns=columns, time_unit=time_unit)
    prior = load_prior(prior_path).frozen()
    canvas = place_on_canvas(survey, prior.model_shape, cell_size, grid, label=Path(path).name)
    operator = build_forward(forward_name, grid=canvas, survey=survey, **_worker_option(forward_name, workers))
    method = make_solver(solver_name, operator, n_starts=n_starts, seed=seed, progress=progress,
                         epochs=epochs, preset=preset)
    if solver_settings:
        method.config = configured(method, solver_settings)
    try:
        solutions = invert(survey, prior, operator, method, petrophysics,
                           n_candidates=method.candidates_for(n_starts),
                           refine="default" if refine else None, unknowns=unknowns)
    finally:
        operator.close()
    solutions.config["canvas"] = describe_placement(canvas)
    write_result(output, solutions, survey, canvas)
    inversion_figure(canvas, solutions, output.with_suffix(".png"), survey=survey,
                     title=f"{solver_name}, {forward_name} forward")
    return solutions


def _worker_option(forward_name: str, workers: int) -> dict:
    """``{"workers": workers}`` for a forward whose models are solved in processes; refused for the others."""
    from .forward import FORWARDS
    from .forward.numpy_kernel import NumpyKernelOperator

    if workers == 1:
        return {}
    operator_class = FORWARDS.get(forward_name)
    if not (isinstance(operator_class, type) and issubclass(operator_class, NumpyKernelOperator)
            and "workers" in inspect.signature(operator_class).parameters):
        raise ConfigError(f"--workers solves the eikonal forward's models in parallel processes; the "
                          f"{forward_name!r} forward does not take it, so leave --workers out")
    return {"workers": workers}


def configured(method: Solver, settings: dict) -> Any:
    """``method``'s config with ``settings`` replaced; a :class:`ConfigError` names a setting it does not have."""
    if "rounds" in settings and method.name != "refill":
        raise ConfigError(f"--search-rounds sets the bent-ray default search (latent-sgd with a nonlinear forward, "
                          f"without --preset or --epochs); these options run {method.name!r}, which searches once")
    names = {item.name for item in fields(method.config)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ConfigError(f"the {method.name} solver has no setting(s) {unknown}; its settings are {sorted(names)}")
    return replace(method.config, **settings)


#: the name of :func:`invert_file` before geoinv 0.2 (kept as an alias)
invert_survey = invert_file


def simulate_comparison(output: Path, seed: int = 0) -> list[str]:
    """Straight-ray and eikonal traveltimes of a held-out model: table lines, ``simulation.npz`` and a figure."""
    from .forward import Eikonal, StraightRay
    from .plot import simulation_figure
    from .prior import PatchSampler, default_training_image

    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    facies = representative_crop(PatchSampler(default_training_image(), grid.shape), seed).double()
    petro = FaciesVelocity()
    slowness = petro.slowness(facies)
    lines = [f"held-out channelized model {grid.shape}, {survey.n_data} source-receiver pairs",
             f"{'operator':<14}{'time (s)':>10}{'min (ns)':>10}{'max (ns)':>10}{'mean (ns)':>11}"]
    times = {}
    for name, operator in (("straight ray", StraightRay(grid, survey)), ("eikonal", Eikonal(grid, survey))):
        start = time.perf_counter()
        times[name] = operator(slowness).numpy()
        values = s_to_ns(times[name])
        lines.append(f"{name:<14}{time.perf_counter() - start:>10.3f}{values.min():>10.2f}{values.max():>10.2f}"
                     f"{values.mean():>11.2f}")
    difference = s_to_ns(times["eikonal"] - times["straight ray"])
    lines.append(f"eikonal − straight ray: mean {difference.mean():.3f} ns, range [{difference.min():.3f}, "
                 f"{difference.max():.3f}] ns (bent rays find faster paths; positives are discretisation error)")
    output = check_output_folder(output, ("simulation.png", "simulation.npz"))
    output.mkdir(parents=True, exist_ok=True)
    simulation_figure(grid, survey, petro.velocity(facies).numpy(), times, output / "simulation.png")
    with atomic_path(output / "simulation.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, facies=facies.numpy(), **{k.replace(" ", "_"): v for k, v in times.items()})
    return lines
