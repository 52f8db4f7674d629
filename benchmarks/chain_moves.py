"""MALA against HMC in latent-mcmc at the same gradient budget per chain (issue 27).

The truths, noise draws and σ of ``sampling_study`` (decoder samples drawn with ``--truth-seed``,
noise seed ``truth_seed + 1 + k``, σ = 0.25 ns). Per truth: a centre in the basin by Gauss-Newton
from the true latent vector (``rto_study --center truth``: this measures the moves apart from the
search), Laplace starts around it (``--spread`` of the Laplace covariance), then each ``--moves``
entry ``L:WARMUP:DRAWS`` (L leapfrog steps per iteration; L = 1 is MALA; L = ``local``: simplified
manifold MALA, the Gauss-Newton metric at every point, ``preconditioner='local'``; L = ``cov``: MALA
whose warm-up windows estimate Σ from the chains' pooled draws, ``preconditioner='covariance'``;
``gnpool``: MALA whose warm-up windows give every chain the inverse of the chains' mean Gauss-Newton
Hessian, ``preconditioner='pooled-gauss-newton'``; ``gnwide``: that widened to the window's draws where
they spread further, ``preconditioner='widened-gauss-newton'``;
``rw`` and ``rwcov``: random-walk Metropolis, forwards only, with either preconditioner; ``de``: MALA and a
differential-evolution move each step, ``differential_evolution=1``; ``line``: MALA and a move along one of
the 3 broadest directions each step, ``line_directions=3``) runs the same
chains from the same starts with one temperature. Equal gradient budgets mean equal
``L · (WARMUP + DRAWS)``; a manifold step costs a Jacobian per chain besides and a random-walk step a
forward without its adjoint, so compare those by CPU time.
Reported per move: split R-hat, bulk and tail ESS (ArviZ, over the latent coordinates),
acceptance, the adapted step, CPU seconds and bulk ESS per CPU minute.

Run: ``python -m benchmarks chain_moves [--truths 3] [--only K] [--moves 1:500:750 5:100:150]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json
from rto_study import centre

from geoinv import FaciesVelocity, Grid2D, LatentMCMC, Survey, forward
from geoinv.prior import default_vae
from geoinv.sampling import adaptation_windows, laplace_starts, mixing

#: move kinds besides an integer L (MALA for 1, HMC of L leapfrog steps): (name, sampler settings)
MOVE_KINDS = {
    "local": ("manifold MALA", {"preconditioner": "local"}),
    "cov": ("MALA, pooled covariance", {"preconditioner": "covariance"}),
    "gnpool": ("MALA, pooled Gauss-Newton", {"preconditioner": "pooled-gauss-newton"}),
    "gnwide": ("MALA, widened pooled Gauss-Newton", {"preconditioner": "widened-gauss-newton"}),
    "rw": ("random walk", {"random_walk": True}),
    "rwcov": ("random walk, pooled covariance", {"random_walk": True, "preconditioner": "covariance"}),
    "de": ("MALA + differential evolution", {"differential_evolution": 1}),
    "line": ("MALA + line moves (3 directions)", {"line_directions": 3}),
}


def run_move(problem, starts: torch.Tensor, move: str, args) -> dict:
    kind, warmup, draws = (int(part) if part.isdigit() else part for part in move.split(":"))
    if kind in MOVE_KINDS:
        name, settings = MOVE_KINDS[kind]
        leapfrog = 1
    else:
        leapfrog = int(kind)
        name, settings = ("MALA" if leapfrog == 1 else f"HMC L={leapfrog}"), {"leapfrog_steps": leapfrog}
    started, wall = time.process_time(), time.perf_counter()
    solution = LatentMCMC(n_chains=args.chains, n_temperatures=1, n_warmup=warmup, n_draws=draws,
                          n_samples=args.chains * draws, seed=args.seed, approach_steps=0,
                          reset_outliers=args.reset_outliers, progress=args.progress,
                          **settings).solve(problem, initial=starts)
    cpu, wall = time.process_time() - started, time.perf_counter() - wall
    report = mixing(solution, warn=False)
    preconditioner = settings.get("preconditioner", "gauss-newton")
    jacobians = {"local": warmup + draws, "covariance": 0}.get(preconditioner, 3)
    gradients = 0 if settings.get("random_walk") else leapfrog * (warmup + draws)
    if settings.get("differential_evolution"):  # a forward and backward pass per move besides MALA's
        gradients += (warmup + draws) // settings["differential_evolution"]
    if settings.get("line_directions"):  # one line move per step once the first warm-up window has ended
        gradients += warmup + draws - adaptation_windows(warmup)[0][1]
    return {"move": name, "preconditioner": preconditioner, "leapfrog_steps": leapfrog,
            "random_walk": bool(settings.get("random_walk")), "jacobians_per_chain": jacobians,
            "warmup": warmup, "draws": draws, "gradients_per_chain": gradients,
            "cpu_s": cpu, "wall_s": wall, "rhat_max": float(report.rhat.max()),
            "ess_bulk_min": float(report.ess_bulk.min()),
            "ess_bulk_median": float(np.median(report.ess_bulk)), "ess_tail_min": float(report.ess_tail.min()),
            "acceptance": float(report.acceptance[0]), "reset_outliers": args.reset_outliers,
            "reset_chains": int(solution.history.get("reset_chains", [0])[0]),
            "evolution_rate": float(solution.history.get("evolution_rate", [float("nan")])[0]),
            "line_rate": float(solution.history.get("line_rate", [float("nan")])[0]),
            "step": float(np.asarray(solution.history["step_size"]).ravel()[0]),
            "ess_bulk_min_per_cpu_min": float(report.ess_bulk.min()) / (cpu / 60),
            "ess_bulk_min_per_wall_min": float(report.ess_bulk.min()) / (wall / 60)}


def run_truth(operator, vae, latent_truth: torch.Tensor, noise_seed: int, args) -> list[dict]:
    petrophysics = FaciesVelocity()
    truth = vae.decode(latent_truth[None])[0].detach()
    problem = synthetic_problem(operator, vae, petrophysics, truth, noise_seed)
    args.center = "truth"
    point, _ = centre(problem, latent_truth, args)
    starts = laplace_starts(problem, point, args.chains, args.spread, torch.Generator().manual_seed(args.seed))[None]
    return [run_move(problem, starts, move, args) for move in args.moves]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 truth, straight ray, short chains: checks the script")
    parser.add_argument("--forward", default="eikonal")
    parser.add_argument("--truths", type=int, default=3)
    parser.add_argument("--truth-seed", type=int, default=6047, help="sampling_study's s34 truths by default")
    parser.add_argument("--moves", nargs="+", default=["1:500:750", "5:100:150"],
                        help="L:WARMUP:DRAWS per move (L = 1: MALA; L = local: manifold MALA; L = cov: MALA, "
                             "pooled-covariance preconditioner; L = rw, rwcov: random-walk Metropolis; L = de: MALA "
                             "and differential evolution; L = line: MALA and line moves along 3 directions)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--spread", type=float, default=1.5, help="Laplace starts' scale of the covariance")
    parser.add_argument("--only", type=int, nargs="+", help="run only these truths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reset-outliers", action="store_true", help="every move with the warm-up's outlier "
                        "rule (LatentMCMCConfig.reset_outliers)")
    parser.add_argument("--workers", type=int, default=1, help="processes solving the chains' models (the "
                        "eikonal's workers option); CPU seconds then count the parent only, so compare wall seconds")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--name", default="chain_moves")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.forward, args.moves = 1, "straight-ray", ["1:20:30", "2:10:15", "local:10:15", "cov:20:30",
                                                                  "rwcov:20:30", "de:20:30",
                                                                  "line:20:30"]
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    options = {"workers": args.workers} if args.workers > 1 else {}
    operator = forward(args.forward, grid=Grid2D.crosshole(), survey=Survey.crosshole(), **options)
    rows = []
    for k, latent in enumerate(vae.sample_latent(args.truths, torch.Generator().manual_seed(args.truth_seed))):
        if args.only is None or k in args.only:
            rows += [{"truth": k, **row} for row in run_truth(operator, vae, latent, args.truth_seed + 1 + k, args)]
    print_table(rows, [("truth", "truth", "d"), ("move", "move", "s"), ("gradients_per_chain", "gradients", "d"),
                       ("acceptance", "acceptance", ".2f"), ("step", "step", ".3f"), ("rhat_max", "R-hat max", ".3f"),
                       ("ess_bulk_min", "ESS bulk", ".0f"), ("ess_tail_min", "ESS tail", ".0f"),
                       ("cpu_s", "CPU s", ".0f"), ("ess_bulk_min_per_cpu_min", "ESS/CPU min", ".2f"),
                       ("wall_s", "wall s", ".0f"), ("ess_bulk_min_per_wall_min", "ESS/wall min", ".2f")])
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
