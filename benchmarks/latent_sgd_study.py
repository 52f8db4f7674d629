"""Does scheduled SGD escape the local minima of the VAE manifold? (seed 002's claim)

For two true models -- a held-out training-image crop (off the manifold) and a
decoder sample (on it) -- noisy traveltimes (σ = 0.25 ns) on the reference
crosshole survey are inverted with the shipped VAE from R random starts by:
plain full-batch GD, full-batch Adam and scheduled SGD, for the straight-ray and
the eikonal forward. Reports accepted starts, data and model RMSE, time per
start and whether a baseline was still improving at its end; writes a figure
and JSON.

Run: ``python benchmarks/latent_sgd_study.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import figure_path, print_table, write_json

from geoinv import FaciesVelocity, Grid2D, LatentSGD, LatentSGDConfig, Survey, build_problem, forward, ns_to_s
from geoinv.prior import PatchSampler, default_training_image, default_vae
from geoinv.workflows import representative_crop

NOISE_NS = 0.25


def _truths(vae, grid: Grid2D, seed: int) -> dict[str, torch.Tensor]:
    sampler = PatchSampler(default_training_image(), grid.shape)
    with torch.no_grad():
        on_manifold = vae.decode(torch.randn(1, vae.latent_dim, generator=torch.Generator().manual_seed(seed)))[0]
    return {"off-manifold (TI crop)": representative_crop(sampler, seed), "on-manifold (decoder sample)": on_manifold}


def _methods(forward_name: str, args) -> dict[str, LatentSGDConfig]:
    common = {"progress": False, "seed": args.seed}
    if forward_name == "straight-ray":
        starts = args.starts
        gd_steps = args.gd_steps
        methods = {"scheduled SGD": LatentSGDConfig.reference_linear(n_starts=starts, **common)}
    else:
        starts = args.eikonal_starts
        gd_steps = args.eikonal_gd_steps
        methods = {
            "scheduled SGD (one source/step)": LatentSGDConfig.reference_nonlinear(
                n_starts=starts, minibatch="source", **common),
            "scheduled SGD (25 random data/step)": LatentSGDConfig.reference_nonlinear(n_starts=starts, **common),
        }
    methods["plain GD"] = LatentSGDConfig.plain_gd(steps=gd_steps, n_starts=starts, **common)
    methods["Adam"] = LatentSGDConfig.adam(steps=gd_steps, n_starts=starts, **common)
    if args.quick:
        methods = {name: _shorten(config) for name, config in methods.items()}
    return methods


def _shorten(config: LatentSGDConfig) -> LatentSGDConfig:
    from dataclasses import replace

    return replace(config, epochs=max(1, config.epochs // 20), n_starts=min(config.n_starts, 4))


def _still_improving(solutions) -> float:
    """Relative misfit drop of the best start over the last 10 % of recorded steps."""
    curve = np.asarray(solutions.history["data_rmse"])[:, 0, :].min(axis=1)
    tail = max(2, len(curve) // 10)
    return float((curve[-tail] - curve[-1]) / curve[-tail])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few epochs and starts, to check the script")
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--gd-steps", type=int, default=3000)
    parser.add_argument("--eikonal-starts", type=int, default=20)
    parser.add_argument("--eikonal-gd-steps", type=int, default=200,
                        help="full-batch eikonal steps cost 25 solves per start: fewer than the linear case")
    parser.add_argument("--forwards", nargs="+", default=["straight-ray", "eikonal"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    vae = default_vae().frozen()
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    petrophysics = FaciesVelocity()
    truths = _truths(vae, grid, args.seed)
    rows, figures = [], []
    for forward_name in args.forwards:
        operator = forward(forward_name, grid=grid, survey=survey)
        for truth_name, truth in truths.items():
            field = operator.make_synthetic_data(petrophysics.slowness(truth.double()), ns_to_s(NOISE_NS),
                                                 torch.Generator().manual_seed(args.seed + 7))
            problem = build_problem(field, vae, operator, petrophysics)
            results = {}
            for method, config in _methods(forward_name, args).items():
                start = time.perf_counter()
                solutions = LatentSGD(config).solve(problem)
                seconds = time.perf_counter() - start
                results[method] = solutions
                model_rmse = (solutions.models[0] - truth).pow(2).mean(dim=(1, 2)).sqrt()
                rows.append({"forward": forward_name, "truth": truth_name, "method": method,
                             "starts": solutions.n_candidates, "steps": len(solutions.history["step_size"]),
                             "best_rmse_ns": float(solutions.misfit[0, 0]),
                             "median_rmse_ns": float(solutions.misfit[0].median()),
                             "model_rmse_best": float(model_rmse[0]), "model_rmse_median": float(model_rmse.median()),
                             "seconds_per_start": seconds / solutions.n_candidates,
                             "still_improving_pct": 100 * _still_improving(solutions),
                             "final_misfits": solutions.misfit[0].tolist()})
                print(f"{forward_name:12s} {truth_name:30s} {method:36s} best {solutions.misfit[0, 0]:.3f} ns "
                      f"({seconds:.0f} s)", flush=True)
            _accept(rows, forward_name, truth_name, "on-manifold" in truth_name)
            figures.append((forward_name, truth_name, truth, results))
    print()
    print_table(rows, [("forward", "forward", ""), ("truth", "truth", ""), ("method", "method", ""),
                       ("accepted", "accepted", ""), ("best_rmse_ns", "best RMSE ns", ".3f"),
                       ("median_rmse_ns", "median RMSE ns", ".3f"), ("model_rmse_best", "model RMSE best", ".3f"),
                       ("model_rmse_median", "model RMSE med.", ".3f"), ("seconds_per_start", "s/start", ".1f"),
                       ("still_improving_pct", "last-10% drop %", ".2f")])
    print("\naccepted: on-manifold truth: data RMSE ≤ 1.1 σ; off-manifold: within 10 % of the best misfit "
          "any method reached for that truth and forward")
    write_json("latent_sgd_study", {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args),
                                    "vae_training": vae.metadata.get("training", {})})
    _figure(grid, survey, figures, figure_path("latent_sgd_study"))


def _accept(rows: list[dict], forward_name: str, truth_name: str, on_manifold: bool) -> None:
    group = [r for r in rows if r["forward"] == forward_name and r["truth"] == truth_name]
    best_any = min(min(r["final_misfits"]) for r in group)
    threshold = 1.1 * NOISE_NS if on_manifold else 1.1 * best_any
    for row in group:
        misfits = np.asarray(row.pop("final_misfits"))
        row["accepted_fraction"] = float(np.mean(misfits <= threshold))
        row["accepted"] = f"{int(np.sum(misfits <= threshold))}/{len(misfits)}"
        row["threshold_ns"] = threshold


def _figure(grid, survey, figures, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geoinv.plot import plot_model

    n_methods = max(len(results) for *_, results in figures)
    fig, axes = plt.subplots(len(figures), 2 * n_methods + 2, figsize=(2.0 * (2 * n_methods + 2) + 3,
                                                                       3.6 * len(figures)), squeeze=False)
    for row, (forward_name, truth_name, truth, results) in enumerate(figures):
        plot_model(axes[row, 0], grid, truth.numpy(), None, f"{forward_name}\n{truth_name}", "gray_r", vmin=0, vmax=1)
        for k, (method, solutions) in enumerate(results.items()):
            median = solutions.n_candidates // 2
            for j, (index, label) in enumerate(((0, "best"), (median, "median"))):
                ax = axes[row, 1 + 2 * k + j]
                plot_model(ax, grid, solutions.models[0, index].numpy(), None,
                           f"{method}\n{label} {solutions.misfit[0, index]:.2f} ns", "gray_r", vmin=0, vmax=1)
                ax.set_ylabel("")
        ax = axes[row, -1]
        for (method, solutions), color in zip(results.items(), ("C0", "C1", "C2", "C3")):
            steps = np.asarray(solutions.history["step"])
            curves = np.asarray(solutions.history["data_rmse"])[:, 0, :]
            ax.semilogy(steps, curves, color=color, lw=0.5, alpha=0.5)
            ax.plot([], [], color=color, label=method)
        ax.axhline(NOISE_NS, color="k", ls="--", lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("data RMSE (ns)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
