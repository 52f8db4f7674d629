"""How well can the prior fit each held-out crop at all? The best fit near the truth's own projection.

For the comparison benchmark's held-out training-image crops, noise draws and
σ (``pygimli_comparison.py``'s), with the data's forward (default eikonal):
the VAE encoder's mean of the *true* crop is decoded and re-simulated (the
projection's σ), then latent Gauss-Newton (χ² + ‖z‖², ``--iterations``) runs
from it. No search can know the truth; this run does, so its σ is the fit
the prior's manifold offers near the right structure. A search whose best
candidate is as good (or better) than this was not the limit on that crop: the
prior was. Reported per crop: the projection's σ and model RMSE, the
finish's σ and model RMSE, and the latent norm of the projection.

Run: ``python -m benchmarks manifold_fit [--truths 5] [--forward eikonal] [--vae CHECKPOINT] [--quick]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json
from pygimli_comparison import make_truths

from geoinv import FaciesVelocity, Grid2D, LatentSGD, LatentSGDConfig, Survey, forward
from geoinv.prior import default_vae, load_vae
from geoinv.solvers import Stage


def fit_near_truth(problem, vae, truth: torch.Tensor, iterations: int) -> dict:
    """σ and model RMSE of the truth's encoder projection and of Gauss-Newton from it."""
    with torch.no_grad():
        projection = vae.encode(truth[None, None].float())[0].reshape(1, -1)
        sigma = problem.misfits(problem.forward(projection), problem.targets())[1].reshape(-1)[0]
    config = LatentSGDConfig(n_starts=1, progress=False).with_stages((Stage.gauss_newton(iterations),))
    finished = LatentSGD(config).solve(problem, initial=projection[None])
    return {"projection_sigma": float(sigma),
            "projection_model_rmse": float((vae.decode(projection)[0] - truth).pow(2).mean().sqrt()),
            "projection_norm": float(projection.norm()),
            "sigma": float(finished.normalised_misfit[0, 0]),
            "model_rmse": float((finished.models[0, 0] - truth).pow(2).mean().sqrt())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truths", type=int, default=5)
    parser.add_argument("--forward", default="eikonal")
    parser.add_argument("--iterations", type=int, default=20, help="Gauss-Newton iterations from the projection")
    parser.add_argument("--seed", type=int, default=0, help="crops and noise as pygimli_comparison.py --seed")
    parser.add_argument("--name", default="manifold_fit")
    parser.add_argument("--vae", type=Path, help="a prior checkpoint to measure instead of the shipped one (trained "
                        "on the shipped training image, so that the crops stay held out)")
    parser.add_argument("--quick", action="store_true", help="1 crop, straight ray, 2 iterations")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.forward, args.iterations = 1, "straight-ray", 2
    vae = (load_vae(args.vae) if args.vae else default_vae()).frozen()
    grid, survey, petrophysics = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    operator = forward(args.forward, grid=grid, survey=survey)
    rows = []
    for index, truth in enumerate(make_truths("held-out", grid, args.truths, args.seed, vae)):
        began = time.perf_counter()
        problem = synthetic_problem(operator, vae, petrophysics, truth, args.seed + 100 + index)
        row = {"truth": index, **fit_near_truth(problem, vae, truth, args.iterations),
               "seconds": time.perf_counter() - began}
        rows.append(row)
        print(row, flush=True)
    print()
    print_table(rows, [("truth", "crop", "d"), ("projection_sigma", "projection σ", ".2f"),
                       ("projection_model_rmse", "its model RMSE", ".3f"), ("projection_norm", "‖z‖", ".2f"),
                       ("sigma", "GN from it σ", ".2f"), ("model_rmse", "its model RMSE", ".3f"),
                       ("seconds", "s", ".0f")])
    write_json(args.name, {"noise_ns": NOISE_NS, "forward": args.forward, "rows": rows,
                           "args": {**vars(args), "vae": str(args.vae) if args.vae else None}})


if __name__ == "__main__":
    main()
