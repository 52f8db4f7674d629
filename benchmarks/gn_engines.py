"""geoinv's batched Gauss-Newton against pyGIMLi's inversion, from the same starts (``latent-gauss-newton``).

Both engines minimise ``‖(F(z) − d)/σ‖² + ‖z‖²`` with the same stopping rules
(χ²/N ≤ 1, ``min_dphi`` percent, ``--iterations``); geoinv's takes every start
in one batch (:class:`~geoinv.solvers.gauss_newton_step.GaussNewtonStep`),
pyGIMLi's runs one ``pg.Inversion`` per start. Truths are decoder samples of
the shipped VAE (``--truth-seed``), σ = 0.25 ns, starts are prior draws; both
engines run in one process on one thread, one after the other per truth.

Per forward and engine: accepted starts (≤ 1.1 σ), median end σ, Jacobians per
start, seconds per start; and how far apart the two engines' end points are
(latent units) — the same basin or not.

Run: ``python -m benchmarks gn_engines [--quick] [--forwards straight-ray eikonal]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json

from geoinv import FaciesVelocity, Grid2D, Survey, forward, solver
from geoinv.prior import default_vae

ENGINES = ("geoinv", "pygimli")


def run_truth(operator, vae, petrophysics, truth, starts: torch.Tensor, iterations: int, noise_seed: int) -> dict:
    """Both engines from the same ``starts`` on one truth's data."""
    problem = synthetic_problem(operator, vae, petrophysics, truth, noise_seed)
    result, ends = {}, {}
    for engine in ENGINES:
        method = solver("latent-gauss-newton", max_iterations=iterations, engine=engine)
        started = time.perf_counter()
        solutions = method.solve(problem, initial=starts)
        seconds = time.perf_counter() - started
        order = torch.as_tensor(solutions.history["order"][0])
        ends[engine] = torch.empty_like(solutions.parameters[0])
        ends[engine][order] = solutions.parameters[0]  # back to start order
        sigma = solutions.normalised_misfit[0]
        result[engine] = {"accepted": int(solutions.accepted[0].sum()), "best_sigma": float(sigma.min()),
                          "median_sigma": float(sigma.median()),
                          "jacobians_per_start": float(np.mean(solutions.history["jacobians"])),
                          "seconds_per_start": seconds / len(starts)}
    distance = (ends["geoinv"] - ends["pygimli"]).norm(dim=1)
    result["end_distance_median"] = float(distance.median())
    result["same_end"] = int((distance < 0.1).sum())
    return result


def summarise(forward_name: str, cases: list[dict], n_starts: int) -> dict:
    row = {"forward": forward_name, "truths": len(cases), "starts": n_starts * len(cases)}
    for engine in ENGINES:
        row[f"{engine}_accepted"] = sum(case[engine]["accepted"] for case in cases)
        for key in ("median_sigma", "jacobians_per_start", "seconds_per_start"):
            row[f"{engine}_{key}"] = float(np.median([case[engine][key] for case in cases]))
    row["speedup"] = row["pygimli_seconds_per_start"] / row["geoinv_seconds_per_start"]
    row["same_end"] = sum(case["same_end"] for case in cases)
    row["end_distance_median"] = float(np.median([case["end_distance_median"] for case in cases]))
    row["per_truth"] = cases
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 truth, 2 starts, 2 iterations: checks the script")
    parser.add_argument("--forwards", nargs="+", default=["straight-ray", "eikonal"],
                        choices=["straight-ray", "eikonal"])
    parser.add_argument("--truths", type=int, default=3)
    parser.add_argument("--starts", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--truth-seed", type=int, default=3141)
    parser.add_argument("--name", default="gn_engines", help="name of the JSON in results/")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.starts, args.iterations = 1, 2, 2
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    grid, survey, petrophysics = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    truths = vae.sample(args.truths, torch.Generator().manual_seed(args.truth_seed))
    rows = []
    for forward_name in args.forwards:
        operator = forward(forward_name, grid=grid, survey=survey)
        cases = []
        for k, truth in enumerate(truths):
            starts = torch.randn(args.starts, vae.latent_dim, generator=torch.Generator().manual_seed(
                args.truth_seed + 100 + k))
            case = run_truth(operator, vae, petrophysics, truth, starts, args.iterations, args.truth_seed + 7 + k)
            cases.append(case)
            print(f"{forward_name:12s} truth {k}: " + ", ".join(
                f"{engine} {case[engine]['accepted']}/{args.starts} accepted, median "
                f"{case[engine]['median_sigma']:.2f} σ, {case[engine]['seconds_per_start']:.1f} s/start"
                for engine in ENGINES) + f"; same end {case['same_end']}/{args.starts}", flush=True)
        rows.append(summarise(forward_name, cases, args.starts))
    print()
    print_table(rows, [("forward", "forward", ""), ("starts", "starts", "d"),
                       ("geoinv_accepted", "geoinv accepted", "d"), ("pygimli_accepted", "pyGIMLi accepted", "d"),
                       ("geoinv_median_sigma", "geoinv median σ", ".2f"),
                       ("pygimli_median_sigma", "pyGIMLi median σ", ".2f"),
                       ("geoinv_jacobians_per_start", "geoinv J/start", ".1f"),
                       ("pygimli_jacobians_per_start", "pyGIMLi J/start", ".1f"),
                       ("geoinv_seconds_per_start", "geoinv s/start", ".2f"),
                       ("pygimli_seconds_per_start", "pyGIMLi s/start", ".2f"), ("speedup", "speed-up", ".1f"),
                       ("same_end", "same end (< 0.1)", "d"), ("end_distance_median", "median end distance", ".3f")])
    print(f"\n{args.truths} decoder-sample truths (seed {args.truth_seed}) × {args.starts} prior starts, σ = "
          f"{NOISE_NS} ns, at most {args.iterations} iterations; medians over truths; one thread.")
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
