"""From how far does Gauss-Newton reach the noise? The convergence radius of the true basin, per forward.

For decoder-sample truths (the study's, σ = 0.25 ns noise, reference survey):
geoinv's Gauss-Newton stage (exact chained Jacobian, χ² + ‖z‖², stopping at the
noise) from starts at latent distance r from the true latent vector (4 random
directions per r), with full steps and with each step capped at ``--max-step``
latent units (a trust radius). A start counts if it ends at normalised RMSE ≤
1.1. The radius tells how close a search must land for the finish to work
(a typical prior draw lies about 4.4 from any other point). JSON in results/.

Run: ``python -m benchmarks basin_radius [--truths 2 4] [--forwards straight-ray eikonal] [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json

from geoinv import FaciesVelocity, Grid2D, LatentSGD, LatentSGDConfig, Survey, forward
from geoinv.prior import default_vae
from geoinv.solvers import Stage

RADII = (0.5, 1.0, 2.0, 3.0)
DIRECTIONS = 4


def starts_at(latent: torch.Tensor, radius: float, seed: int) -> torch.Tensor:
    """``DIRECTIONS`` points at distance ``radius`` from ``latent`` in random directions."""
    directions = torch.randn(DIRECTIONS, latent.numel(), generator=torch.Generator().manual_seed(seed))
    return latent[None] + radius * directions / directions.norm(dim=1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truths", type=int, nargs="+", default=[2, 4],
                        help="indices of latent_sgd_study.py's on-manifold truths (5 drawn)")
    parser.add_argument("--forwards", nargs="+", default=["straight-ray", "eikonal"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max-step", type=float, default=0.25, help="trust radius compared with full steps")
    parser.add_argument("--seed", type=int, default=0, help="truths as latent_sgd_study.py --seed draws them")
    parser.add_argument("--name", default="basin_radius")
    parser.add_argument("--quick", action="store_true", help="1 truth, straight ray, 1 radius, 2 iterations")
    args = parser.parse_args()
    radii = RADII[:1] if args.quick else RADII
    if args.quick:
        args.truths, args.forwards, args.iterations = args.truths[:1], ["straight-ray"], 2
    prior = default_vae().frozen()
    grid, survey, petrophysics = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    latents = prior.sample_latent(5, torch.Generator().manual_seed(1000 + args.seed))
    rows = []
    for name in args.forwards:
        operator = forward(name, grid=grid, survey=survey)
        for k in args.truths:
            truth = prior.decode(latents[k][None])[0]
            problem = synthetic_problem(operator, prior, petrophysics, truth, args.seed + 7 + k)
            for max_step in (None, args.max_step):
                row = {"forward": name, "truth": k, "steps": "full" if max_step is None else f"≤ {max_step}"}
                begin = time.perf_counter()
                for radius in radii:
                    stage = Stage.gauss_newton(args.iterations, max_step=max_step)
                    config = LatentSGDConfig(n_starts=DIRECTIONS, progress=False).with_stages((stage,))
                    solutions = LatentSGD(config).solve(problem, initial=starts_at(latents[k], radius, 5))
                    row[f"accepted_at_{radius}"] = f"{int(solutions.accepted[0].sum())}/{DIRECTIONS}"
                    row[f"sigma_at_{radius}"] = solutions.normalised_misfit[0].tolist()
                row["seconds_per_start"] = (time.perf_counter() - begin) / (DIRECTIONS * len(radii))
                rows.append(row)
                print(row, flush=True)
    print()
    print_table(rows, [("forward", "forward", ""), ("truth", "truth", ""), ("steps", "steps", "")]
                + [(f"accepted_at_{r}", f"r = {r}", "") for r in radii]
                + [("seconds_per_start", "s/start", ".1f")])
    write_json(args.name, {"noise_ns": NOISE_NS, "radii": radii, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
