"""Posterior sampling against the ensemble of optima: mixing, coverage and reliability (issue 27).

Every truth is a decoder sample (on the manifold) drawn with ``--truth-seed``,
with its own noise draw (σ = 0.25 ns). For each, the forward's default optimiser
(latent SGD) runs ``--starts`` starts: its accepted candidates give the
*ensemble-of-optima* maps, and its ``--chains`` best candidates start
``latent-mcmc`` (``--temperatures`` rungs, ``--warmup`` + ``--draws`` steps), whose
draws give the *sampler* maps. Reported per truth and pooled:

* mixing: max split R-hat and min bulk/tail ESS over the latent coordinates, acceptance, swap rates;
* coverage: the fraction of (truth, coordinate) pairs whose true latent value lies in the 90 %
  central credible interval (the sampler's draws; the ensemble's accepted candidates);
* reliability: per bin of predicted channel probability, the fraction of cells that are
  channels in the true model, pooled over truths, and the largest gap to the diagonal
  over bins holding at least 100 cells;
* cost: the optimiser's and the sampler's wall time.

Run: ``python -m benchmarks sampling_study [--quick] [--forward straight-ray]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import figure_path, print_table, write_json
from latent_sgd_study import NOISE_NS

from geoinv import FaciesVelocity, Grid2D, LatentMCMC, LatentSGD, Survey, build_problem, forward, ns_to_s
from geoinv.plot import reliability_figure
from geoinv.prior import default_vae
from geoinv.sampling import interval_coverage, mixing, reliability_curve

#: bins with fewer cells than this are too noisy to judge calibration on
MIN_BIN_CELLS = 100


def run_truth(operator, vae, petrophysics, latent_truth, noise_seed: int, args) -> dict:
    truth = vae.decode(latent_truth[None])[0].detach()
    field = operator.make_synthetic_data(petrophysics.slowness(truth.double()), ns_to_s(NOISE_NS),
                                         torch.Generator().manual_seed(noise_seed))
    problem = build_problem(field, vae, operator, petrophysics)
    optimiser = LatentSGD.for_operator(operator, n_starts=args.starts, seed=args.seed,
                                       epochs=2 if args.quick else None)
    optima = optimiser.solve(problem)
    sampler = LatentMCMC(n_chains=args.chains, n_temperatures=args.temperatures, n_warmup=args.warmup,
                         n_draws=args.draws, n_samples=args.samples, seed=args.seed, approach_steps=0)
    samples = sampler.solve(problem, initial=optima.parameters[:, :args.chains])
    report = mixing(samples, warn=False)
    channels = (truth > 0.5).numpy()
    used = optima.accepted[0] if optima.accepted[0].any() else torch.ones(optima.n_candidates, dtype=torch.bool)
    chains = np.asarray(samples.history["chain_latent"])[:, 0].reshape(-1, latent_truth.numel())
    return {
        "optimiser_s": optima.wall_time, "sampler_s": samples.wall_time,
        "accepted_optima": int(optima.accepted[0].sum()), "optima": optima.n_candidates,
        "rhat_max": float(report.rhat.max()), "ess_bulk_min": float(report.ess_bulk.min()),
        "ess_tail_min": float(report.ess_tail.min()), "acceptance": float(report.acceptance[0]),
        "swap_rate": report.swap_rate[0].tolist(), "best_sigma_samples": float(samples.normalised_misfit[0, 0]),
        "median_sigma_samples": float(samples.normalised_misfit[0].median()),
        "covered_sampler": interval_coverage(chains, latent_truth, 0.9).tolist(),
        "covered_optima": (interval_coverage(optima.parameters[0, used], latent_truth, 0.9).tolist()
                           if int(used.sum()) >= 2 else [False] * latent_truth.numel()),
        "model_rmse_mean_sampler": float((samples.posterior()["mean"][0] - truth).pow(2).mean().sqrt()),
        "model_rmse_mean_optima": float((optima.posterior()["mean"][0] - truth).pow(2).mean().sqrt()),
        "_maps": {"sampler": samples.posterior()["channel_probability"][0].numpy(),
                  "optima": optima.posterior()["channel_probability"][0].numpy(), "truth": channels},
    }


def pooled_reliability(cases: list[dict], source: str) -> dict:
    curve = reliability_curve(np.stack([c["_maps"][source] for c in cases]),
                              np.stack([c["_maps"]["truth"] for c in cases]))
    populated = curve["count"] >= MIN_BIN_CELLS
    gap = np.abs(curve["observed"] - curve["predicted"])[populated]
    return {**{key: value.tolist() for key, value in curve.items()}, "max_gap": float(gap.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 truth, short chains: checks the script")
    parser.add_argument("--forward", default="straight-ray")
    parser.add_argument("--truths", type=int, default=5)
    parser.add_argument("--truth-seed", type=int, default=2718, help="not a seed used while developing")
    parser.add_argument("--starts", type=int, default=20, help="optimiser starts (the ensemble of optima)")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--temperatures", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=1000, help="draws kept as candidates (maps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="sampling_study")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.starts, args.warmup, args.draws, args.samples = 1, 4, 20, 40, 40
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    operator = forward(args.forward, grid=grid, survey=survey)
    latent_truths = vae.sample_latent(args.truths, torch.Generator().manual_seed(args.truth_seed))
    cases = []
    for k, latent in enumerate(latent_truths):
        started = time.perf_counter()
        cases.append(run_truth(operator, vae, FaciesVelocity(), latent, args.truth_seed + 1 + k, args))
        case = cases[-1]
        print(f"truth {k}: R-hat {case['rhat_max']:.3f}, ESS bulk {case['ess_bulk_min']:.0f}, coverage "
              f"{np.mean(case['covered_sampler']):.2f} (optima {np.mean(case['covered_optima']):.2f}), "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for source in ("sampler", "optima"):
        covered = np.concatenate([c[f"covered_{source}"] for c in cases])
        rows.append({"maps": source, "coverage_90": float(covered.mean()), "pairs": int(covered.size),
                     "reliability_max_gap": pooled_reliability(cases, source)["max_gap"],
                     "model_rmse_mean": float(np.median([c[f"model_rmse_mean_{source}"] for c in cases])),
                     "seconds": float(np.mean([c[f"{'sampler' if source == 'sampler' else 'optimiser'}_s"]
                                               for c in cases]))})
    print_table(rows, [("maps", "maps", "s"), ("coverage_90", "90 % coverage", ".2f"), ("pairs", "pairs", "d"),
                       ("reliability_max_gap", "reliability gap", ".3f"), ("model_rmse_mean", "RMSE of mean", ".3f"),
                       ("seconds", "s per truth", ".0f")])
    mixing_rows = [{"truth": k, "rhat": c["rhat_max"], "ess": c["ess_bulk_min"], "ess_tail": c["ess_tail_min"],
                    "acceptance": c["acceptance"], "accepted_optima": f"{c['accepted_optima']}/{c['optima']}",
                    "sampler_s": c["sampler_s"]} for k, c in enumerate(cases)]
    print_table(mixing_rows, [("truth", "truth", "d"), ("rhat", "R-hat max", ".3f"), ("ess", "bulk ESS min", ".0f"),
                              ("ess_tail", "tail ESS min", ".0f"), ("acceptance", "acceptance", ".2f"),
                              ("accepted_optima", "optima accepted", "s"), ("sampler_s", "sampler s", ".0f")])
    curves = {f"{source} (max gap {row['reliability_max_gap']:.2f})": pooled_reliability(cases, source)
              for source, row in zip(("sampler", "optima"), rows)}
    reliability_figure(curves, figure_path(args.name), title=f"{args.forward}, {args.truths} on-manifold truths")
    for case in cases:
        del case["_maps"]
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "per_truth": cases, "args": vars(args),
                           "reliability": curves})


if __name__ == "__main__":
    main()
