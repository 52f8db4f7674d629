"""End-to-end workflows behind the ``geoinv demo`` and ``geoinv invert`` commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .forward import forward as build_forward
from .grid import Grid2D
from .petrophysics import FaciesVelocity
from .problem import InverseProblem
from .solvers import LatentSGDConfig, Solutions
from .solvers import solver as build_solver
from .survey import Survey

__all__ = ["DemoReport", "invert_survey", "representative_crop", "run_demo"]


def representative_crop(sampler, seed: int, proportion=(0.18, 0.36)) -> torch.Tensor:
    """A held-out crop whose channel proportion is typical (some crops are all matrix)."""
    crops = sampler.test_batch(64, torch.Generator().manual_seed(seed))
    fractions = crops.mean(dim=(1, 2))
    typical = ((fractions >= proportion[0]) & (fractions <= proportion[1])).nonzero()
    return crops[int(typical[0]) if len(typical) else int(fractions.argmax())]


def default_solver_config(forward_name: str, n_starts: int, seed: int, progress: bool = True,
                          epochs: int | None = None):
    """The reference schedule for the operator: linear for straight rays, nonlinear otherwise.

    The nonlinear schedule uses one source per step (one eikonal solve per start
    and step) rather than 25 random data, which would need up to 25 solves.
    """
    overrides = {"n_starts": n_starts, "seed": seed, "progress": progress}
    if epochs is not None:
        overrides["epochs"] = epochs
    if forward_name == "straight-ray":
        return LatentSGDConfig.reference_linear(**overrides)
    return LatentSGDConfig.reference_nonlinear(minibatch="source", **overrides)


def _frozen(vae):
    for parameter in vae.parameters():
        parameter.requires_grad_(False)
    return vae


@dataclass
class DemoReport:
    """What ``geoinv demo`` measured."""

    forward: str
    n_starts: int
    noise_std_ns: float
    best_data_rmse_ns: float
    median_data_rmse_ns: float
    accepted: int
    best_model_rmse: float
    best_pixel_accuracy: float
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"forward operator        {self.forward}",
            f"starts                  {self.n_starts}",
            f"noise σ                 {self.noise_std_ns:.3f} ns",
            f"data RMSE best / median {self.best_data_rmse_ns:.3f} / {self.median_data_rmse_ns:.3f} ns",
            f"accepted (≤ 1.1 σ)      {self.accepted} / {self.n_starts}",
            f"model RMSE of best      {self.best_model_rmse:.3f} (facies units)",
            f"pixels right, best      {100 * self.best_pixel_accuracy:.1f} %",
            f"inversion time          {self.seconds:.1f} s",
        ]


def run_demo(output: Path, forward_name: str = "straight-ray", n_starts: int = 10, seed: int = 0,
             noise_std_ns: float = 0.25, progress: bool = True, vae=None,
             epochs: int | None = None) -> tuple[DemoReport, Solutions]:
    """Synthetic inversion of a held-out channelized model with the shipped VAE.

    Simulates noisy traveltimes on the reference crosshole survey, inverts them
    with latent SGD from ``n_starts`` random starts, writes ``demo.png`` and
    ``demo.h5`` to ``output`` and returns the report and the solutions.
    """
    from .io import write_survey
    from .plot import inversion_figure
    from .prior import PatchSampler, default_training_image, default_vae

    vae = _frozen(vae or default_vae())
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    truth = representative_crop(PatchSampler(default_training_image(), grid.shape), seed)
    operator = build_forward(forward_name, grid=grid, survey=survey)
    petrophysics = FaciesVelocity()
    with torch.no_grad():
        clean = 1e9 * operator(petrophysics.slowness(truth.double()))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=clean.dtype)
    observed = clean + noise_std_ns * noise
    problem = InverseProblem.latent_tomography(vae, petrophysics, operator, observed, noise_std_ns)
    solver = build_solver("latent-sgd", default_solver_config(forward_name, n_starts, seed, progress, epochs))
    solutions = solver.solve(problem)
    models = solutions.models[0]
    report = DemoReport(
        forward=forward_name, n_starts=n_starts, noise_std_ns=noise_std_ns,
        best_data_rmse_ns=float(solutions.misfit[0, 0]), median_data_rmse_ns=float(solutions.misfit[0].median()),
        accepted=int(solutions.accepted[0].sum()),
        best_model_rmse=float((models[0] - truth).pow(2).mean().sqrt()),
        best_pixel_accuracy=float(((models[0] > 0.5).float() == truth).float().mean()),
        seconds=solutions.wall_time)
    output.mkdir(parents=True, exist_ok=True)
    result = output / "demo.h5"
    write_survey(result, survey.with_data(observed.numpy() * 1e-9, noise_std_ns * 1e-9), grid)
    solutions.to_hdf5(result, mode="a")
    import h5py

    with h5py.File(result, "a") as handle:
        handle.create_dataset("truth", data=truth.numpy())
        handle.attrs["report"] = json.dumps(report.__dict__)
    inversion_figure(grid, solutions, output / "demo.png", truth.numpy(), survey,
                     f"latent SGD, {forward_name} forward, {n_starts} starts")
    return report, solutions


def invert_survey(path: Path, output: Path, forward_name: str = "straight-ray", solver_name: str = "latent-sgd",
                  n_starts: int = 20, seed: int = 0, preset: str | None = None, vae_path: Path | None = None,
                  progress: bool = True, epochs: int | None = None) -> Solutions:
    """Invert the traveltimes of an HDF5 survey file with the shipped (or given) VAE."""
    from .io import read_survey
    from .plot import inversion_figure
    from .prior import default_vae, load_vae

    survey, grid = read_survey(path)
    if survey.traveltimes is None:
        raise ConfigError(f"{path} holds no traveltimes to invert")
    vae = _frozen(load_vae(vae_path) if vae_path else default_vae())
    grid = grid or Grid2D.crosshole()
    if tuple(vae.model_shape) != grid.shape:
        raise ConfigError(f"the VAE makes {vae.model_shape} models but the survey's grid is {grid.shape}; "
                          "train a VAE for this grid (geoinv train-vae --nz --nx) and pass --vae")
    noise = float(np.mean(survey.errors)) * 1e9 if survey.errors is not None else None
    operator = build_forward(forward_name, grid=grid, survey=survey)
    problem = InverseProblem.latent_tomography(vae, FaciesVelocity(), operator, survey.traveltimes * 1e9, noise)
    if solver_name == "latent-sgd":
        if preset:
            overrides = {"n_starts": n_starts, "seed": seed, "progress": progress}
            config = LatentSGDConfig.named(preset, **overrides, **({"epochs": epochs} if epochs else {}))
        else:
            config = default_solver_config(forward_name, n_starts, seed, progress, epochs)
        method = build_solver(solver_name, config)
    else:  # a learned solver: trained on prior draws of this very problem first
        if preset:
            raise ConfigError("--preset applies to latent-sgd only")
        method = build_solver(solver_name, seed=seed, progress=progress).fit(problem)
    solutions = method.solve(problem)
    output.parent.mkdir(parents=True, exist_ok=True)
    solutions.to_hdf5(output, mode="w")
    inversion_figure(grid, solutions, output.with_suffix(".png"), survey=survey,
                     title=f"{solver_name}, {forward_name} forward")
    return solutions
