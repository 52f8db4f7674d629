"""How wide is the true basin, and does a local method converge inside it? (issue: inversions that reach the noise)

For decoder-sample truths (on the manifold, σ = 0.25 ns noise, reference
survey) and each forward: the median normalised RMSE of latent vectors
``z_true + ε·n`` (n standard normal, 8 draws) for growing ε; and, for the
nonlinear forwards, latent Gauss-Newton (exact chained Jacobian, 10
iterations) from 4 starts at ε = 0.1. If Gauss-Newton converges from inside the
basin, a failing search failed to *find* the basin (a global problem), not to
converge in it. JSON in results/.

Run: ``python -m benchmarks basin_width [--truths 3] [--quick]``.
"""

from __future__ import annotations

import argparse

import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json

from geoinv import FaciesVelocity, Grid2D, Survey, forward
from geoinv.prior import default_vae
from geoinv.solvers.gauss_newton import LatentGaussNewton

EPSILONS = (0.02, 0.05, 0.1, 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truths", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="truths as latent_sgd_study.py --seed draws them")
    parser.add_argument("--quick", action="store_true", help="1 truth, 2 Gauss-Newton iterations")
    args = parser.parse_args()
    iterations = 2 if args.quick else 10
    if args.quick:
        args.truths = 1
    prior = default_vae().frozen()
    grid, survey, petrophysics = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    latents = prior.sample_latent(args.truths, torch.Generator().manual_seed(1000 + args.seed))
    rows = []
    for name in ("straight-ray", "eikonal"):
        operator = forward(name, grid=grid, survey=survey)
        for k, latent in enumerate(latents):
            truth = prior.decode(latent[None])[0]
            problem = synthetic_problem(operator, prior, petrophysics, truth, args.seed + 7 + k)
            row = {"forward": name, "truth": k}
            with torch.no_grad():
                for epsilon in EPSILONS:
                    noise = torch.randn(8, latent.numel(), generator=torch.Generator().manual_seed(1))
                    moved = latent + epsilon * noise
                    misfit = problem.misfits(problem.forward(moved), problem.targets())[1]
                    row[f"sigma_at_{epsilon}"] = float(misfit.median())
            if not operator.linear:
                starts = latent + 0.1 * torch.randn(4, latent.numel(), generator=torch.Generator().manual_seed(2))
                solver = LatentGaussNewton(max_iterations=iterations, min_dphi=0.1)
                polished = solver.solve(problem, initial=starts[None])
                row["gauss_newton_from_0.1"] = polished.normalised_misfit[0].tolist()
                row["gauss_newton_accepted"] = f"{int(polished.accepted[0].sum())}/4"
            rows.append(row)
            print(row, flush=True)
    print()
    print_table(rows, [("forward", "forward", ""), ("truth", "truth", "")]
                + [(f"sigma_at_{e}", f"σ at ε={e}", ".2f") for e in EPSILONS]
                + [("gauss_newton_accepted", "GN from ε=0.1", "")])
    write_json("basin_width", {"noise_ns": NOISE_NS, "epsilons": EPSILONS, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
