"""Randomize-then-optimize on eikonal data: do weighted independent draws mix where MALA chains do not? (issue 27)

The truths, noise draws and σ of ``sampling_study`` (decoder samples drawn with ``--truth-seed``,
noise seed ``truth_seed + 1 + k``, σ = 0.25 ns). Per truth: a centre in the basin (``--center
optimiser``: the forward's default search, its best candidate, as a user would have it;
``--center truth``: Gauss-Newton from the true latent vector, which only a benchmark can do, to
measure the sampler apart from the search), then ``--draws`` RTO draws
(:func:`geoinv.sampling.rto_draws`, solved in batches of ``--batch``) dealt to ``--chains``
independence Metropolis-Hastings chains. Reported: acceptance, split R-hat and bulk/tail ESS
(ArviZ) over the latent coordinates, the spread of the log weights, converged solves, the
truth's coverage by the 90 % intervals and its squared Mahalanobis distance, and the CPU time.

Run: ``python -m benchmarks rto_study [--forward eikonal] [--truths 3] [--draws 200] [--only K]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json
from scipy.stats import chi2
from tqdm.auto import tqdm

from geoinv import FaciesVelocity, Grid2D, LatentSGD, Survey, forward
from geoinv.prior import default_vae
from geoinv.sampling import RTODraws, independence_chains, interval_coverage, rto_draws
from geoinv.solvers.gauss_newton_step import GaussNewtonStep


def centre(problem, latent_truth: torch.Tensor, args) -> tuple[torch.Tensor, float]:
    """A point in the posterior's basin and the CPU seconds it took."""
    started = time.process_time()
    if args.center == "optimiser":
        optimiser = LatentSGD.for_operator(problem.operator, n_starts=args.starts, seed=args.seed,
                                           epochs=2 if args.quick else None)
        if not optimiser.is_fitted:
            optimiser.fit(problem)
        point = optimiser.solve(problem).parameters[0, 0].float()
    else:
        point = latent_truth.clone()[None].float()
        step = GaussNewtonStep(problem, problem.targets(), "origin", 1.0, stop_at_noise=False)
        for _ in range(2 if args.quick else 10):
            step(point)
        point = point[0]
    return point, time.process_time() - started


def run_truth(operator, vae, latent_truth: torch.Tensor, noise_seed: int, args) -> dict:
    petrophysics = FaciesVelocity()
    truth = vae.decode(latent_truth[None])[0].detach()
    problem = synthetic_problem(operator, vae, petrophysics, truth, noise_seed)
    point, centre_cpu = centre(problem, latent_truth, args)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.process_time()
    parts = [rto_draws(problem, point, min(args.batch, args.draws - done), generator)
             for done in tqdm(range(0, args.draws, args.batch), desc="RTO batches", disable=not args.progress)]
    draws = RTODraws(torch.cat([p.latent for p in parts]), torch.cat([p.log_weight for p in parts]),
                     torch.cat([p.converged for p in parts]), max(p.iterations for p in parts))
    draws_cpu = time.process_time() - started
    chains, acceptance = independence_chains(draws, args.chains, torch.Generator().manual_seed(args.seed + 1))
    import arviz as az

    dataset = az.convert_to_dataset(chains.numpy().astype(np.float64))
    flat = chains.reshape(-1, chains.shape[-1]).double()
    deviation = latent_truth.double() - flat.mean(0)
    # needs more draws than coordinates (a full-rank covariance)
    mahalanobis = (float(deviation @ torch.linalg.solve(torch.cov(flat.T), deviation))
                   if flat.shape[0] > 2 * flat.shape[1] else float("nan"))
    finite = draws.log_weight[torch.isfinite(draws.log_weight)]
    with torch.no_grad():
        centre_sigma = float(problem.misfits(problem.forward(point[None]), problem.targets()[0])[1][0])
    return {"center": args.center, "centre_sigma": centre_sigma, "centre_cpu_s": centre_cpu,
            "draws": args.draws, "draws_cpu_s": draws_cpu, "cpu_s_per_draw": draws_cpu / args.draws,
            "converged": float(draws.converged.float().mean()), "newton_iterations": draws.iterations,
            "log_weight_std": float(finite.std()) if finite.numel() > 1 else float("nan"),
            "acceptance": acceptance.tolist(), "acceptance_mean": float(acceptance.mean()),
            "rhat_max": float(az.rhat(dataset)["x"].values.max()),
            "ess_bulk_min": float(az.ess(dataset, method="bulk")["x"].values.min()),
            "ess_tail_min": float(az.ess(dataset, method="tail")["x"].values.min()),
            "covered": interval_coverage(flat.numpy(), latent_truth, 0.9).tolist(),
            "truth_mahalanobis": mahalanobis,
            "truth_in_mode_region": mahalanobis <= float(chi2.ppf(0.99, latent_truth.numel()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 truth, straight ray, 16 draws: checks the script")
    parser.add_argument("--forward", default="eikonal")
    parser.add_argument("--truths", type=int, default=3)
    parser.add_argument("--truth-seed", type=int, default=6047, help="sampling_study's s34 truths by default")
    parser.add_argument("--center", choices=("optimiser", "truth"), default="optimiser")
    parser.add_argument("--starts", type=int, default=6, help="starts of the optimiser that finds the centre")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20, help="draws solved as one batch")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--only", type=int, nargs="+", help="run only these truths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--name", default="rto_study")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.draws, args.batch, args.forward, args.center = 1, 16, 8, "straight-ray", "truth"
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    operator = forward(args.forward, grid=Grid2D.crosshole(), survey=Survey.crosshole())
    rows = []
    for k, latent in enumerate(vae.sample_latent(args.truths, torch.Generator().manual_seed(args.truth_seed))):
        if args.only is not None and k not in args.only:
            continue
        rows.append({"truth": k, **run_truth(operator, vae, latent, args.truth_seed + 1 + k, args)})
        row = rows[-1]
        print(f"truth {k}: acceptance {row['acceptance_mean']:.2f}, R-hat {row['rhat_max']:.3f}, ESS bulk "
              f"{row['ess_bulk_min']:.0f}, {row['cpu_s_per_draw']:.1f} CPU s per draw", flush=True)
    print_table(rows, [("truth", "truth", "d"), ("centre_sigma", "centre σ", ".2f"),
                       ("acceptance_mean", "acceptance", ".2f"), ("rhat_max", "R-hat max", ".3f"),
                       ("ess_bulk_min", "ESS bulk", ".0f"), ("ess_tail_min", "ESS tail", ".0f"),
                       ("log_weight_std", "log w std", ".2f"), ("converged", "converged", ".2f"),
                       ("cpu_s_per_draw", "CPU s/draw", ".1f"), ("truth_mahalanobis", "truth Mahal.²", ".1f")])
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
