"""pyGIMLi's smoothness inversion vs latent Gauss-Newton vs latent SGD on held-out channelized truths.

Truths are training-image crops the VAE never saw (``--truths``, default 5;
``--kind decoder``: decoder samples, on the prior's manifold) on
the reference crosshole survey (25 × 25 rays, 129 × 65 cells of 0.1 m), each
with its own noise draw, σ = 0.25 ns. For every forward (``--forwards``,
default straight ray and eikonal) the data are simulated with that forward
and inverted by:

* ``pygimli-smooth`` — pyGIMLi's ``TravelTimeManager`` (Dijkstra, log slowness,
  smoothness, λ cooled towards χ² = 1); only on eikonal data (first arrivals:
  where its forward applies);
* ``latent-gauss-newton`` — pyGIMLi's Gauss-Newton in the VAE's latent space;
* ``latent-sgd`` — geoinv's default schedule.

Reported per method and forward: model RMSE in facies units (the smooth model
mapped to facies by the petrophysics and clipped to [0, 1]; latent solvers:
their best candidate; ``refined``: latent SGD's best model refined beyond the
manifold at the noise), the fraction of cells on the right side of 0.5 (RMSE
rewards a smooth model's hedging between facies; this does not), normalised
data RMSE re-simulated with the data's forward, accepted starts, wall time.
Medians over truths.

    python benchmarks/pygimli_comparison.py                # ≈ 1 h on 2 cores
    python -m benchmarks pygimli_comparison --quick     # checks the script in minutes

Rows are cached in ``results/<name>.partial.json`` as they finish, so an
interrupted run resumes where it stopped (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from _common import NOISE_NS, RESULTS, figure_path, print_table, synthetic_data, write_json

import geoinv
from geoinv import Grid2D, Survey, make_solver
from geoinv.prior import PatchSampler, default_training_image, default_vae
from geoinv.solvers.proposals import ProposalConfig
from geoinv.workflows import representative_crop

METHODS = ("pygimli-smooth", "latent-gauss-newton", "latent-sgd")


def make_truths(kind: str, grid: Grid2D, count: int, seed: int, vae) -> list[torch.Tensor]:
    """Held-out training-image crops (off the prior's manifold) or decoder samples (on it)."""
    if kind == "decoder":
        return list(vae.sample(count, torch.Generator().manual_seed(1000 + seed)))
    sampler = PatchSampler(default_training_image(), grid.shape)
    return [representative_crop(sampler, seed + k) for k in range(count)]


def run_one(method: str, forward_name: str, truth: torch.Tensor, noise_seed: int, starts: int, vae,
            smooth_iterations: int, search_rounds: int | None = None, small_network: bool = False) -> dict:
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    petrophysics = geoinv.FaciesVelocity()
    operator = geoinv.forward(forward_name, grid=grid, survey=survey)
    data = synthetic_data(operator, petrophysics, truth, noise_seed)
    solver = make_solver(method, operator, n_starts=starts, seed=noise_seed)
    if method == "pygimli-smooth":
        solver.config.max_iterations = smooth_iterations
    if search_rounds is not None and solver.name == "refill":  # the bent-ray default's searches
        solver.config = replace(solver.config, rounds=search_rounds)
    if small_network and solver.name == "refill" and solver.search_solver.name == "proposals":
        # --quick checks the path: a network of 128 pairs, not the default's 8192 (minutes of eikonal solves)
        proposals = solver.search_solver
        proposals.config = replace(proposals.config, n_pairs=128,
                                   network_config=ProposalConfig(hidden=(32,), epochs=2, members=1))
    started = time.perf_counter()
    solutions = geoinv.invert(data, vae, operator, solver, petrophysics, n_candidates=starts,
                              refine="default" if method == "latent-sgd" else None)
    seconds = time.perf_counter() - started
    row = {"method": method, "forward": forward_name, "seconds": seconds,
           "model_rmse": float((solutions.models[0, 0] - truth).pow(2).mean().sqrt()),
           "sigma": float(solutions.normalised_misfit[0, 0]), "rmse_ns": float(solutions.misfit[0, 0]),
           "accepted": int(solutions.accepted[0].sum()), "candidates": solutions.n_candidates,
           "model": solutions.models[0, 0].numpy().tolist()}
    if method == "pygimli-smooth":
        chi2 = solutions.history["pygimli_chi2"][:, 0]
        row["iterations"] = int(np.isfinite(chi2).sum()) - 1
        row["pygimli_chi2"] = float(chi2[np.isfinite(chi2)][-1])
    if "round_best_misfit" in solutions.history:  # the eikonal default's searches: what each round reached
        row["round_best_sigma"] = [float(value) for value in solutions.history["round_best_misfit"][0]]
    if solutions.refined is not None:
        row["refined_model_rmse"] = float((solutions.refined["models"][0, 0] - truth).pow(2).mean().sqrt())
        row["refined_sigma"] = float(solutions.refined["normalised_misfit"][0, 0])
    return row


def summarise(rows: list[dict], forward_name: str, method: str) -> dict | None:
    mine = [r for r in rows if r["forward"] == forward_name and r["method"] == method]
    if not mine:
        return None
    summary = {"forward": forward_name, "method": method, "truths": len(mine),
               "model_rmse": float(np.median([r["model_rmse"] for r in mine])),
               "sigma": float(np.median([r["sigma"] for r in mine])),
               "cells_right": float(np.median([r["cells_right"] for r in mine])),
               "accepted": f"{sum(r['accepted'] for r in mine)}/{sum(r['candidates'] for r in mine)}",
               "seconds": float(np.mean([r["seconds"] for r in mine])),
               "per_truth_model_rmse": [r["model_rmse"] for r in mine]}
    if "refined_model_rmse" in mine[0]:
        summary["refined_model_rmse"] = float(np.median([r["refined_model_rmse"] for r in mine]))
        summary["refined_sigma"] = float(np.median([r["refined_sigma"] for r in mine]))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--truths", type=int, default=5)
    parser.add_argument("--starts", type=int, default=10, help="starts of the latent solvers")
    parser.add_argument("--eikonal-starts", type=int, default=5, help="starts of the latent solvers (eikonal)")
    parser.add_argument("--forwards", nargs="+", default=["straight-ray", "eikonal"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--kind", choices=("held-out", "decoder"), default="held-out",
                        help="truths: held-out training-image crops (default) or decoder samples (on the manifold)")
    parser.add_argument("--smooth-iterations", type=int, default=12,
                        help="pyGIMLi iterations of pygimli-smooth (each ≈ 15–25 s on the reference grid)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="pygimli_comparison")
    parser.add_argument("--fresh", action="store_true", help="ignore cached rows of an earlier run")
    parser.add_argument("--search-rounds", type=int, default=None,
                        help="searches of the eikonal default for a crop with nothing accepted (default: its own)")
    parser.add_argument("--quick", action="store_true",
                        help="1 truth, 1 start, 1 search round, a 128-pair proposal network, every method on eikonal "
                        "data, 1 smoothness iteration")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.starts, args.eikonal_starts, args.forwards = 1, 1, 1, ["eikonal"]
        args.smooth_iterations, args.fresh, args.name = 1, True, f"{args.name}_quick"
        args.search_rounds = 1

    torch.set_num_threads(1)  # the eikonal and pyGIMLi are single-threaded here; fair wall times
    vae = default_vae()
    grid = Grid2D.crosshole()
    truths = make_truths(args.kind, grid, args.truths, args.seed, vae)
    cache = RESULTS / f"{args.name}.partial.json"
    rows = [] if args.fresh or not cache.exists() else json.loads(cache.read_text())
    done = {(r["method"], r["forward"], r["truth"]) for r in rows}
    for forward_name in args.forwards:
        for method in args.methods:
            if method == "pygimli-smooth" and forward_name != "eikonal":
                continue  # Dijkstra first arrivals: compared on first-arrival data only
            starts = args.eikonal_starts if forward_name.startswith("eikonal") else args.starts
            for index, truth in enumerate(truths):
                if (method, forward_name, index) in done:
                    continue
                row = run_one(method, forward_name, truth, args.seed + 100 + index, starts, vae,
                              args.smooth_iterations, args.search_rounds, small_network=args.quick)
                row["truth"] = index
                rows.append(row)
                RESULTS.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(rows))
                print(f"{forward_name:12s} {method:20s} truth {index}: model RMSE {row['model_rmse']:.3f}, "
                      f"{row['sigma']:.2f} σ, {row['accepted']}/{row['candidates']} accepted, "
                      f"{row['seconds']:.0f} s", flush=True)

    for row in rows:  # binary agreement: model RMSE rewards a smooth model's hedging, this does not
        truth = truths[row["truth"]].numpy() > 0.5
        row["cells_right"] = float(np.mean((np.asarray(row["model"]) > 0.5) == truth))
    summaries = [s for f in args.forwards for m in args.methods if (s := summarise(rows, f, m)) is not None]
    print()
    print_table(summaries, [("forward", "forward", ""), ("method", "method", ""), ("truths", "truths", "d"),
                            ("model_rmse", "model RMSE", ".3f"), ("refined_model_rmse", "refined", ".3f"),
                            ("cells_right", "cells right", ".3f"), ("sigma", "best σ", ".2f"),
                            ("accepted", "accepted", ""),
                            ("seconds", "s/truth", ".0f")])
    smooth = next((s for s in summaries if s["method"] == "pygimli-smooth"), None)
    for summary in summaries:
        if smooth is not None and summary["method"] != "pygimli-smooth":
            summary["model_rmse_vs_smooth_pct"] = 100 * (summary["model_rmse"] / smooth["model_rmse"] - 1)
    write_json(args.name, {"noise_ns": NOISE_NS, "kind": args.kind, "truths": args.truths,
                           "smooth_iterations": args.smooth_iterations, "starts": args.starts,
                           "eikonal_starts": args.eikonal_starts, "summaries": summaries,
                           "rows": [{k: v for k, v in r.items() if k != "model"} for r in rows]})
    _figure(grid, truths, rows, figure_path(args.name))


def _figure(grid: Grid2D, truths, rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = sorted({(r["forward"], r["method"]) for r in rows}, key=lambda c: (c[0], METHODS.index(c[1])))
    count = len(truths)
    figure, axes = plt.subplots(count, len(columns) + 1, figsize=(1.6 * (len(columns) + 1), 2.9 * count),
                                squeeze=False)
    for index, truth in enumerate(truths):
        axes[index, 0].imshow(truth.numpy(), cmap="gray_r", vmin=0, vmax=1, extent=grid.extent)
        axes[index, 0].set_title("truth" if index == 0 else "", fontsize=8)
        for k, (forward_name, method) in enumerate(columns, start=1):
            row = next((r for r in rows if r["truth"] == index and r["forward"] == forward_name
                        and r["method"] == method), None)
            axis = axes[index, k]
            if row is not None:
                axis.imshow(np.asarray(row["model"]), cmap="gray_r", vmin=0, vmax=1, extent=grid.extent)
                axis.set_xlabel(f"{row['model_rmse']:.3f}, {row['sigma']:.1f}σ", fontsize=7)
            if index == 0:
                axis.set_title(f"{method}\n{forward_name}", fontsize=7)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
