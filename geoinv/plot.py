"""matplotlib figures for models, surveys and traveltimes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._atomic import atomic_path
from .errors import ConfigError
from .grid import Grid2D
from .solvers.base import ACCEPTANCE
from .survey import Survey
from .units import m_per_s_to_m_per_ns, s_to_ns

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

    from ._typing import PathType, TensorLike
    from .prior.quality import PriorReport
    from .solvers.base import Solutions


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: PathType, dpi: int = 110) -> None:
    """Save ``fig`` atomically (an interrupted save never leaves a partial image) and close it."""
    file_format = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=file_format)
    finally:
        _pyplot().close(fig)


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def plot_model(ax: Axes, grid: Grid2D, values: TensorLike, survey: Survey | None = None, title: str = "",
               cmap: str = "viridis", label: str = "", vmin: float | None = None,
               vmax: float | None = None) -> AxesImage:
    """Draw a ``(nz, nx)`` model on ``ax`` with depth downward, and the sensors if given."""
    image = ax.imshow(np.asarray(values), extent=grid.extent, cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest", aspect="equal")
    if survey is not None:
        ax.plot(survey.sources[:, 0], survey.sources[:, 1], "r*", ms=5, label="sources", clip_on=False)
        ax.plot(survey.receivers[:, 0], survey.receivers[:, 1], "wv", mec="k", ms=4, label="receivers",
                clip_on=False)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("depth (m)")
    ax.set_title(title)
    if label:
        ax.figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    return image


def plot_traveltime_comparison(ax: Axes, survey: Survey, traveltimes: dict, unit_scale: float = s_to_ns(1.0)) -> None:
    """Traveltimes (ns) of several operators against source–receiver offset."""
    offset = survey.receiver_positions[:, 1] - survey.source_positions[:, 1]
    for (name, times), marker in zip(traveltimes.items(), "o.x+"):
        ax.plot(offset, np.asarray(times) * unit_scale, marker, ms=3, label=name, alpha=0.7)
    ax.set_xlabel("receiver depth − source depth (m)")
    ax.set_ylabel("traveltime (ns)")
    ax.legend()


def simulation_figure(grid: Grid2D, survey: Survey, velocity: TensorLike, traveltimes: dict,
                      path: PathType) -> None:
    """Figure: the velocity model with sensors, and traveltimes per operator; saved to ``path``."""
    plt = _pyplot()
    fig, (ax_model, ax_times, ax_diff) = plt.subplots(1, 3, figsize=(14, 5.5), width_ratios=[1, 1.4, 1.4])
    plot_model(ax_model, grid, m_per_s_to_m_per_ns(np.asarray(velocity)), survey, "velocity model", "RdYlBu",
               "velocity (m/ns)")
    plot_traveltime_comparison(ax_times, survey, traveltimes)
    names = list(traveltimes)
    if len(names) >= 2:
        reference = np.asarray(traveltimes[names[0]])
        offset = survey.receiver_positions[:, 1] - survey.source_positions[:, 1]
        for name in names[1:]:
            ax_diff.plot(offset, s_to_ns(np.asarray(traveltimes[name]) - reference), ".", ms=3, label=name)
        ax_diff.axhline(0, color="k", lw=0.5)
        ax_diff.set_xlabel("receiver depth − source depth (m)")
        ax_diff.set_ylabel(f"traveltime − {names[0]} (ns)")
        ax_diff.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _misfit_text(solutions, index: int) -> str:
    unit = solutions.config.get("data_unit", "")
    text = f"RMSE {solutions.misfit[0, index]:.3g} {unit}".rstrip()
    if solutions.normalised_misfit is not None:
        text += f", {solutions.normalised_misfit[0, index]:.2f} σ"
    return text


def inversion_figure(grid: Grid2D, solutions: Solutions, path: PathType, truth: TensorLike | None = None,
                     survey: Survey | None = None,
                     title: str = "") -> None:
    """Truth (if known), best candidate, posterior maps, and the misfit curves of every start.

    Top row: the true model, the best candidate, the median start and (if
    refined) the best model refined beyond the prior; bottom
    row: the candidates' per-cell mean, standard deviation and channel
    probability (of the accepted candidates; of all, labelled so, when none is
    accepted), and the misfit curves.

    Parameters
    ----------
    grid : Grid2D
        Model grid.
    solutions : geoinv.Solutions
        Result of a solver run (first observed data set is shown).
    path : path-like
        Output image.
    truth : array_like, shape (nz, nx), optional
        True facies model.
    survey : Survey, optional
        Draws the sensors on the models.
    """
    plt = _pyplot()
    if solutions.models is None:
        raise ConfigError("inversion_figure draws decoded models; these solutions hold none")
    models = solutions.models[0].numpy()
    median_index = models.shape[0] // 2
    top = [] if truth is None else [("true model", np.asarray(truth))]
    top += [(f"best ({_misfit_text(solutions, 0)})", models[0]),
            (f"median start ({_misfit_text(solutions, median_index)})", models[median_index])]
    if solutions.refined is not None:
        top.append((f"best refined beyond the prior ({solutions.refined['normalised_misfit'][0, 0]:.2f} σ)",
                    solutions.refined["models"][0, 0].numpy()))
    posterior = solutions.posterior()
    if solutions.from_sampler:
        used = f"{int(posterior['n_used'][0])} posterior samples"
    else:
        used = (f"{int(posterior['n_used'][0])} accepted" if posterior["from_accepted"][0]
                else f"all {int(posterior['n_used'][0])}, none accepted")
    bottom = [(f"mean ({used})", posterior["mean"][0].numpy(), "gray_r", (0, 1), "facies"),
              ("standard deviation", posterior["std"][0].numpy(), "magma", (0, 0.5), "facies"),
              ("channel probability", posterior["channel_probability"][0].numpy(), "viridis", (0, 1), "")]
    columns = max(len(top), len(bottom))
    fig = plt.figure(figsize=(3.9 * columns + 5.5, 10))
    grid_spec = fig.add_gridspec(2, columns + 1, width_ratios=[1] * columns + [1.6])
    for k, (name, values) in enumerate(top):
        plot_model(fig.add_subplot(grid_spec[0, k]), grid, values, survey, name, "gray_r", vmin=0, vmax=1)
    for k, (name, values, cmap, (low, high), label) in enumerate(bottom):
        plot_model(fig.add_subplot(grid_spec[1, k]), grid, values, survey, name, cmap, label or "probability",
                   vmin=low, vmax=high)
    _misfit_curves(fig.add_subplot(grid_spec[:, -1]), solutions)
    estimates = _unknowns_text(solutions)
    if title or estimates:
        fig.suptitle("\n".join(line for line in (title, estimates) if line))
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _unknowns_text(solutions) -> str:
    """The estimated field unknowns (best, and mean ± std of the candidates the maps use), one line."""
    from .nuisance import display_unit

    parts = []
    for name, (best, mean, spread) in solutions.unknowns_summary().items():
        factor, unit = display_unit(name)
        parts.append(f"{name.replace('_', ' ')} {best * factor:.4g} {unit} ({mean * factor:.4g} ± "
                     f"{spread * factor:.2g})")
    return "estimated: " + ", ".join(parts) if parts else ""


def _misfit_curves(ax, solutions) -> None:
    history = solutions.history
    noise = solutions.config.get("noise_std")
    if "chain_log_likelihood" in history:
        _chain_traces(ax, solutions)
        return
    if "data_rmse" in history and len(history["data_rmse"]):
        curves = np.asarray(history["data_rmse"])[:, 0, :]
        ax.semilogy(history["step"], curves, lw=0.8, alpha=0.7)
        if noise:
            # the curves are plain RMSEs; acceptance is on residuals over each datum's σ, so with unequal
            # errors these lines (at the mean σ) are a guide, not the rule
            ax.axhline(noise, color="k", ls="--", lw=1, label="mean noise σ")
            ax.axhline(ACCEPTANCE * noise, color="k", ls=":", lw=1, label=f"≈ acceptance {ACCEPTANCE} σ")
            ax.legend()
    unit = solutions.config.get("data_unit", "")
    ax.set_xlabel("step")
    ax.set_ylabel(f"data RMSE ({unit})" if unit else "data RMSE")
    ax.set_title(f"misfit of {solutions.n_candidates} starts")


def _chain_traces(ax, solutions) -> None:
    """χ²/N of every β = 1 chain of data set 0, warm-up then draws: a trace a sampler's user reads."""
    n_data = solutions.data.shape[-1]
    warmup = -2 * np.asarray(solutions.history["warmup_log_likelihood"])[:, 0] / n_data
    draws = -2 * np.asarray(solutions.history["chain_log_likelihood"])[:, 0] / n_data
    steps = np.arange(len(warmup) + len(draws)) - len(warmup)
    ax.semilogy(steps, np.concatenate([warmup, draws]), lw=0.6, alpha=0.8)
    ax.axvline(0, color="k", lw=0.8, ls=":", label="end of warm-up")
    ax.axhline(ACCEPTANCE**2, color="k", ls="--", lw=1, label=f"χ²/N = {ACCEPTANCE}²")
    ax.legend()
    ax.set_xlabel("step (warm-up < 0)")
    ax.set_ylabel("χ²/N")
    ax.set_title(f"{draws.shape[1]} chains at β = 1")


def reliability_figure(curves: dict, path: PathType, title: str = "") -> None:
    """Reliability diagram: observed channel frequency against predicted channel probability.

    Parameters
    ----------
    curves : dict of str to dict
        Label → :func:`geoinv.sampling.reliability_curve` output (e.g. sampler and ensemble of optima).
    path : str or Path
        Where to save the figure.
    """
    plt = _pyplot()
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="calibrated")
    ax.fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="0.9", label="±0.1")
    centres = None
    for label, curve in curves.items():
        edges = np.asarray(curve["edges"])
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=label)
        counts.bar(centres, curve["count"], width=np.diff(edges) * 0.9, alpha=0.5, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="fraction of cells that are channels")
    ax.legend(loc="upper left")
    counts.set(yscale="log", xlabel="predicted channel probability", ylabel="cells")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def prior_report_figure(report: PriorReport, path: PathType | None = None) -> Figure | None:
    """A prior's quality report: samples above training crops, variograms and connectivity below.

    Parameters
    ----------
    report : geoinv.prior.quality.PriorReport
    path : str or Path, optional
        Where to save the figure (PNG, PDF, SVG); without it the figure is returned open.
    """
    plt = _pyplot()
    count = min(len(report.samples), len(report.crops))
    fig = plt.figure(figsize=(max(8.0, 1.1 * count), 7.5))
    grid = fig.add_gridspec(3, max(count, 4), height_ratios=[1, 1, 1.4])
    for row, (images, label) in enumerate(((report.samples, "prior\nsamples"), (report.crops, "training\ncrops"))):
        for k in range(count):
            ax = fig.add_subplot(grid[row, k])
            ax.imshow(images[k], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label)
    half = max(count, 4) // 2
    for column, axis in enumerate(("x", "z")):
        ax = fig.add_subplot(grid[2, column * half:(column + 1) * half])
        for which, style in (("training", "k-"), ("prior", "C1--")):
            ax.plot(report.curves[f"{which}_variogram_{axis}"], style, label=f"{which} variogram")
            ax.plot(report.curves[f"{which}_connectivity_{axis}"], style, alpha=0.45, label=f"{which} connectivity")
        check = report[f"variogram_{axis}_gap"]
        ax.set_title(f"along {axis}: largest variogram gap {check.value:.1%} "
                     f"({'ok' if check.passed else 'WARN'}, goal {check.goal})", fontsize=9)
        ax.set_xlabel(f"lag along {axis} (cells)")
        if column == 0:
            ax.legend(fontsize=7)
    verdict = "meets every goal" if report.passed else \
        "misses: " + ", ".join(check.name for check in report.failures)
    fig.suptitle(f"prior quality: {verdict}", fontsize=11)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
        return None
    return fig
