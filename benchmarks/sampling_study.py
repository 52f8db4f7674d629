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
  channels in the true model, pooled over truths; the largest gap to the diagonal over bins
  holding at least 20 cells (also in binomial standard errors), the cell-weighted mean gap
  (ECE), and predicted against observed over the cells between the extreme bins;
* cost: the optimiser's and the sampler's wall time.

Run: ``python -m benchmarks sampling_study [--quick] [--forward straight-ray]``.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from _common import NOISE_NS, figure_path, print_table, synthetic_problem, write_json
from scipy.stats import chi2

from geoinv import FaciesVelocity, Grid2D, LatentMCMC, LatentSGD, Survey, forward
from geoinv.plot import reliability_figure
from geoinv.prior import default_vae
from geoinv.sampling import (
    LatentPosterior,
    inference_data,
    interval_coverage,
    laplace_starts,
    mixing,
    reliability_curve,
)

#: bins with fewer cells than this are too noisy to judge calibration on
MIN_BIN_CELLS = 20


def run_truth(operator, vae, petrophysics, latent_truth, noise_seed: int, args) -> dict:
    truth = vae.decode(latent_truth[None])[0].detach()
    problem = synthetic_problem(operator, vae, petrophysics, truth, noise_seed)
    optimiser = LatentSGD.for_operator(operator, n_starts=args.starts, seed=args.seed,
                                       epochs=2 if args.quick else None)
    if not optimiser.is_fitted:  # amortized proposals (nonlinear default): the cached network, one-off
        optimiser.fit(problem)
    optimiser_cpu = time.process_time()
    worker_cpu = _worker_cpu(operator)
    optima = optimiser.solve(problem)
    optimiser_cpu = time.process_time() - optimiser_cpu
    sampler = LatentMCMC(n_chains=args.chains, n_temperatures=args.temperatures, n_warmup=args.warmup,
                         n_draws=args.draws, n_samples=args.samples, seed=args.seed, approach_steps=0,
                         progress=args.progress, independence=args.independence,
                         delayed_acceptance=args.surrogate_steps > 0, surrogate_steps=max(args.surrogate_steps, 1),
                         leapfrog_steps=getattr(args, "leapfrog_steps", 1),
                         random_walk=getattr(args, "random_walk", False),
                         preconditioner=getattr(args, "preconditioner", "gauss-newton"),
                         reset_outliers=getattr(args, "reset_outliers", False),
                         differential_evolution=getattr(args, "differential_evolution", 0),
                         line_directions=getattr(args, "line_directions", 0))
    if args.start == "laplace":
        starts = laplace_starts(problem, optima.parameters[0, 0], args.chains, 1.5,
                                torch.Generator().manual_seed(args.seed))[None]
    else:
        starts = optima.parameters[:, :args.chains]
    sampler_cpu = time.process_time()
    samples = sampler.solve(problem, initial=starts)
    sampler_cpu = time.process_time() - sampler_cpu
    worker_cpu = _worker_cpu(operator) - worker_cpu
    report = mixing(samples, warn=False)
    if args.save_draws:  # the chains themselves, for a look at why they did (not) mix
        inference_data(samples).to_netcdf(case_path(args.name, args.only).with_suffix(".nc"))
    channels = (truth > 0.5).numpy()
    used = optima.accepted[0] if optima.accepted[0].any() else torch.ones(optima.n_candidates, dtype=torch.bool)
    chains = np.asarray(samples.history["chain_latent"])[:, 0].reshape(-1, latent_truth.numel())
    draws = torch.as_tensor(chains, dtype=torch.float64)
    deviation = latent_truth.double() - draws.mean(0)
    mahalanobis = float(deviation @ torch.linalg.solve(torch.cov(draws.T), deviation))
    with torch.no_grad():
        truth_sigma = float(problem.misfits(problem.forward(latent_truth[None]), problem.targets()[0])[1][0])
    hpd_level = truth_hpd_level(problem, latent_truth, np.asarray(samples.history["chain_log_posterior"])[:, 0])
    return {
        "optimiser_s": optima.wall_time, "sampler_s": samples.wall_time,
        "optimiser_cpu_s": optimiser_cpu, "sampler_cpu_s": sampler_cpu, "start": args.start,
        "workers": getattr(operator, "workers", 1), "worker_cpu_s": worker_cpu,
        "best_sigma_optima": float(optima.normalised_misfit[0, 0]), "truth_sigma": truth_sigma,
        # squared Mahalanobis distance of the true latent vector under the draws' mean and covariance:
        # χ² with latent_dim degrees of freedom if the truth is a draw of the posterior
        "truth_mahalanobis": mahalanobis,
        "truth_in_mode_region": mahalanobis <= float(chi2.ppf(0.99, latent_truth.numel())),
        # the same question without a Gaussian's ellipsoid: the fraction of draws whose log posterior
        # exceeds the truth's (uniform over truths when the chains sample the posterior)
        "truth_hpd_level": hpd_level,
        "accepted_optima": int(optima.accepted[0].sum()), "optima": optima.n_candidates,
        "rhat_max": float(report.rhat.max()), "ess_bulk_min": float(report.ess_bulk.min()),
        "ess_tail_min": float(report.ess_tail.min()), "acceptance": float(report.acceptance[0]),
        "swap_rate": report.swap_rate[0].tolist(),
        "independence_rate": float(samples.history.get("independence_rate", [float("nan")])[0]),
        "screen_rate": float(samples.history.get("screen_rate", [float("nan")])[0]),
        "evolution_rate": float(samples.history.get("evolution_rate", [float("nan")])[0]),
        "line_rate": float(samples.history.get("line_rate", [float("nan")])[0]),
        "evaluations": int(samples.history["evaluations"]),
        "reset_chains": int(samples.history.get("reset_chains", [0])[0]),
        # a chain far below the others in ℓ sits in a region of little mass (stuck), not merely unconverged
        "chain_mean_log_likelihood": np.asarray(samples.history["chain_log_likelihood"])[:, 0].mean(axis=0).tolist(),
        "best_sigma_samples": float(samples.normalised_misfit[0, 0]),
        "median_sigma_samples": float(samples.normalised_misfit[0].median()),
        "covered_sampler": interval_coverage(chains, latent_truth, 0.9).tolist(),
        "covered_optima": (interval_coverage(optima.parameters[0, used], latent_truth, 0.9).tolist()
                           if int(used.sum()) >= 2 else [False] * latent_truth.numel()),
        "model_rmse_mean_sampler": float((samples.posterior()["mean"][0] - truth).pow(2).mean().sqrt()),
        "model_rmse_mean_optima": float((optima.posterior()["mean"][0] - truth).pow(2).mean().sqrt()),
        "_maps": {"sampler": samples.posterior()["channel_probability"][0].numpy(),
                  "optima": optima.posterior()["channel_probability"][0].numpy(), "truth": channels},
    }


def truth_hpd_level(problem, latent_truth: torch.Tensor, chain_log_posterior: np.ndarray) -> float:
    """The smallest highest-posterior-density region of the draws that holds the truth, as the fraction
    of the β = 1 draws (``(D, C)`` log posteriors) whose log posterior exceeds the truth's."""
    posterior = LatentPosterior(problem, problem.targets()[:1])
    point = latent_truth.reshape(1, 1, 1, -1)
    truth = posterior.likelihood(point, torch.ones(1, 1, 1, dtype=torch.bool)).log_target(torch.ones(1))
    return float((chain_log_posterior > float(truth.reshape(-1)[0])).mean())


def _worker_cpu(operator) -> float:
    """CPU s of the operator's worker processes so far (stopped, so the OS has counted them)."""
    if getattr(operator, "workers", 1) > 1:
        operator.close()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pooled_reliability(cases: list[dict], source: str) -> dict:
    curve = reliability_curve(np.stack([c["_maps"][source] for c in cases]),
                              np.stack([c["_maps"]["truth"] for c in cases]))
    return {key: value.tolist() for key, value in curve.items()}


def calibration_summary(curve: dict) -> dict:
    """Gaps to the diagonal: the largest over bins of at least MIN_BIN_CELLS cells (and over the middle ones, in
    binomial standard errors), the cell-weighted mean gap (ECE), and predicted against observed over the
    cells between the extreme bins (where the uncertainty is)."""
    count, predicted, observed = (np.asarray(curve[key], dtype=float) for key in ("count", "predicted", "observed"))
    gap = np.abs(observed - predicted)
    populated = count >= MIN_BIN_CELLS
    error = np.sqrt(np.clip(predicted * (1 - predicted), 1e-12, None) / np.maximum(count, 1))
    middle = slice(1, len(count) - 1)
    cells = count[middle].sum()
    # in standard errors over the middle bins only: at a predicted 0 or 1 the binomial error vanishes
    inner = populated.copy()
    inner[[0, -1]] = False
    in_se = float(np.nanmax((gap / error)[inner])) if inner.any() else float("nan")
    return {"max_gap": float(np.nanmax(gap[populated])), "max_gap_in_se": in_se,
            "ece": float(np.nansum(count * np.nan_to_num(gap)) / count.sum()), "middle_cells": int(cells),
            "middle_predicted": float(np.nansum(count[middle] * predicted[middle]) / max(cells, 1)),
            "middle_observed": float(np.nansum(count[middle] * observed[middle]) / max(cells, 1))}


def report(cases: list[dict], curves: dict, args, run_args: dict | None = None) -> None:
    """Tables, the reliability figure and the JSON of one run (or of a saved run's cases and curves)."""
    rows = []
    for source in ("sampler", "optima"):
        covered = np.concatenate([c[f"covered_{source}"] for c in cases])
        rows.append({"maps": source, "coverage_90": float(covered.mean()), "pairs": int(covered.size),
                     **calibration_summary(curves[source]),
                     "model_rmse_mean": float(np.median([c[f"model_rmse_mean_{source}"] for c in cases])),
                     "seconds": float(np.mean([c["sampler_s" if source == "sampler" else "optimiser_s"]
                                               for c in cases]))})
    print_table(rows, [("maps", "maps", "s"), ("coverage_90", "90 % coverage", ".2f"), ("pairs", "pairs", "d"),
                       ("max_gap", f"max gap (bins ≥ {MIN_BIN_CELLS} cells)", ".3f"),
                       ("max_gap_in_se", "middle bins, in SE", ".1f"), ("ece", "ECE", ".4f"),
                       ("middle_cells", "cells 0.1–0.9", "d"), ("middle_predicted", "predicted", ".3f"),
                       ("middle_observed", "observed", ".3f"), ("model_rmse_mean", "RMSE of mean", ".3f"),
                       ("seconds", "s per truth", ".0f")])
    nan = float("nan")
    mixing_rows = [{"truth": c.get("truth", k), "rhat": c["rhat_max"], "ess": c["ess_bulk_min"],
                    "ess_tail": c["ess_tail_min"], "acceptance": c["acceptance"],
                    "independence": c.get("independence_rate", nan), "moved": c.get("screen_rate", nan),
                    "evaluations": c.get("evaluations", 0),
                    "accepted_optima": f"{c['accepted_optima']}/{c['optima']}", "sampler_s": c["sampler_s"],
                    "cpu_min": (c.get("optimiser_cpu_s", nan) + c.get("sampler_cpu_s", nan)
                                + c.get("worker_cpu_s", 0.0)) / 60,
                    "wall_min": (c["optimiser_s"] + c["sampler_s"]) / 60, "workers": c.get("workers", 1),
                    "best_optimum": c.get("best_sigma_optima", nan), "truth_sigma": c.get("truth_sigma", nan),
                    "mahalanobis": c.get("truth_mahalanobis", nan), "hpd": c.get("truth_hpd_level", nan),
                    "coverage": float(np.mean(c["covered_sampler"]))} for k, c in enumerate(cases)]
    print_table(mixing_rows, [("truth", "truth", "d"), ("rhat", "R-hat max", ".3f"), ("ess", "bulk ESS min", ".0f"),
                              ("ess_tail", "tail ESS min", ".0f"), ("acceptance", "acceptance", ".2f"),
                              ("independence", "independence acc.", ".2f"),
                              ("moved", "moved on surrogate", ".2f"), ("evaluations", "exact evaluations", "d"),
                              ("accepted_optima", "optima accepted", "s"), ("sampler_s", "sampler s", ".0f"),
                              ("cpu_min", "CPU min (both, workers incl.)", ".1f"),
                              ("wall_min", "wall min", ".1f"), ("workers", "workers", "d"),
                              ("best_optimum", "best optimum σ", ".2f"),
                              ("truth_sigma", "truth σ", ".2f"), ("mahalanobis", "truth Mahalanobis²", ".1f"),
                              ("hpd", "truth's HPD level", ".3f"), ("coverage", "90 % coverage", ".2f")])
    labelled = {f"{row['maps']} (ECE {row['ece']:.4f}; max gap {row['max_gap']:.2f} = {row['max_gap_in_se']:.1f} SE)":
                curves[row["maps"]] for row in rows}
    reliability_figure(labelled, figure_path(args.name), title=f"{args.forward}, {len(cases)} on-manifold truths")
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "per_truth": cases, "args": run_args or vars(args),
                           "reliability": curves})


def saved_run(path: str) -> tuple[list[dict], dict, argparse.Namespace, dict]:
    """The cases and reliability curves of a JSON this script wrote (curves keyed 'sampler'/'optima', or by
    a label that starts with it, as before the key was fixed)."""
    import json

    saved = json.loads(Path(path).read_text())
    curves = {source: next(curve for label, curve in saved["reliability"].items() if label.startswith(source))
              for source in ("sampler", "optima")}
    run_args = {**saved["args"], "resummarised_from": str(path)}
    return saved["per_truth"], curves, argparse.Namespace(**{**saved["args"], "name": None}), run_args


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
    parser.add_argument("--start", choices=("optima", "laplace"), default="optima",
                        help="chain starts: the best optima, or the best one dispersed by its Laplace covariance")
    parser.add_argument("--only", type=int, metavar="K", help="run truth K alone and keep its case beside the "
                        "results (processes side by side, one core each); --combine pools them")
    parser.add_argument("--combine", action="store_true", help="pool the cases that --only runs kept")
    parser.add_argument("--independence", type=float, default=0.0, help="independence moves from the widened "
                        "Laplace approximation after warm-up (LatentMCMCConfig.independence; 0: off)")
    parser.add_argument("--surrogate-steps", type=int, default=0, help="delayed acceptance with this many MALA "
                        "moves on the linearised surrogate per exact accept (LatentMCMCConfig.surrogate_steps; "
                        "0: plain MALA)")
    parser.add_argument("--leapfrog-steps", type=int, default=1, help="HMC moves of this many leapfrog steps "
                        "(LatentMCMCConfig.leapfrog_steps; 1: MALA). --warmup and --draws count moves")
    parser.add_argument("--random-walk", action="store_true", help="random-walk Metropolis moves, forwards only "
                        "(LatentMCMCConfig.random_walk)")
    parser.add_argument("--preconditioner", choices=("gauss-newton", "pooled-gauss-newton", "widened-gauss-newton",
                                                       "covariance"),
                        default="gauss-newton",
                        help="how warm-up sets the proposal's covariance (LatentMCMCConfig.preconditioner)")
    parser.add_argument("--reset-outliers", action="store_true", help="warm-up moves chains stuck far below the "
                        "others to the best one (LatentMCMCConfig.reset_outliers)")
    parser.add_argument("--differential-evolution", type=int, default=0, metavar="K", help="a differential-"
                        "evolution move after every K-th step (LatentMCMCConfig.differential_evolution; 0: off)")
    parser.add_argument("--line-directions", type=int, default=0, metavar="M", help="a random-walk move along one "
                        "of the M broadest directions after every step (LatentMCMCConfig.line_directions; 0: off)")
    parser.add_argument("--workers", type=int, default=1, help="processes solving the chains' (and starts') "
                        "models in parallel (the eikonal's workers option)")
    parser.add_argument("--progress", action="store_true", help="the sampler's progress bar")
    parser.add_argument("--save-draws", action="store_true", help="with --only K: the chains as ArviZ NetCDF "
                        "beside the case (NAME.truthK.nc)")
    parser.add_argument("--resummarise", metavar="JSON", help="re-make the tables, figure and summary of a "
                        "saved run (its per-truth results and reliability curves) without sampling")
    args = parser.parse_args()
    if args.resummarise:
        cases, curves, saved_args, run_args = saved_run(args.resummarise)
        saved_args.name = args.name
        report(cases, curves, saved_args, run_args)
        return
    if args.combine:
        kept = [torch.load(path, weights_only=False) for path in sorted(case_path(args.name).parent.glob(
            f"{args.name}.truth*.pt"))]
        if not kept:
            raise SystemExit(f"no cases kept under the name {args.name!r}: run with --only K first")
        report_cases([case for case, _ in kept], args, kept[0][1])
        return
    if args.save_draws and args.only is None:
        parser.error("--save-draws keeps one truth's chains: give --only K")
    if args.quick:
        args.truths, args.starts, args.warmup, args.draws, args.samples = 1, 4, 20, 40, 40
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    options = {"workers": args.workers} if getattr(args, "workers", 1) > 1 else {}
    operator = forward(args.forward, grid=grid, survey=survey, **options)
    latent_truths = vae.sample_latent(args.truths, torch.Generator().manual_seed(args.truth_seed))
    cases = []
    for k, latent in enumerate(latent_truths):
        if args.only is not None and k != args.only:
            continue
        started = time.perf_counter()
        cases.append(run_truth(operator, vae, FaciesVelocity(), latent, args.truth_seed + 1 + k, args))
        case = cases[-1]
        case["truth"] = k
        print(f"truth {k}: R-hat {case['rhat_max']:.3f}, ESS bulk {case['ess_bulk_min']:.0f}, coverage "
              f"{np.mean(case['covered_sampler']):.2f} (optima {np.mean(case['covered_optima']):.2f}), "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        if args.only is not None:
            torch.save((case, vars(args)), case_path(args.name, k))
            return
    report_cases(cases, args)


def case_path(name: str, truth: int = 0) -> Path:
    return Path(figure_path(name)).with_name(f"{name}.truth{truth}.pt")


def report_cases(cases: list[dict], args, run_args: dict | None = None) -> None:
    curves = {source: pooled_reliability(cases, source) for source in ("sampler", "optima")}
    for case in cases:
        del case["_maps"]
    report(cases, curves, args, run_args)


if __name__ == "__main__":
    main()
