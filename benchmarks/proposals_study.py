"""Amortized proposals + a Gauss-Newton finish on eikonal data, beside the prior-draw default (issue 26).

A proposal network (data → latent Gaussian, :mod:`geoinv.solvers.proposals`) is
trained once for the reference survey, the shipped VAE and σ = 0.25 ns
(cached; its one-off cost is reported apart), then every truth is inverted by
each lever from ``--starts`` starts:

* ``proposals`` — the network's proposals (its members' means, then draws)
  seed Gauss-Newton (5 iterations at decoder temperature 2, then 10 at T = 1);
* ``proposals, k draws`` — k times the proposals through the same finish, the best ``--starts`` kept;
* ``proposals, k draws, screen m`` — m × k × starts proposals simulated once, the k × starts with the
  lowest misfit through the finish;
* ``proposals, k draws, refill`` — the same, then every candidate that is not accepted is
  replaced by a randomized-maximum-likelihood candidate started from an accepted one
  (:class:`~geoinv.solvers.rml.Refill`); the search's own counts are reported beside;
  ``..., refill, r rounds`` searches a truth with no accepted candidate again, up to r times;
* ``default`` — :meth:`LatentSGDConfig.default_nonlinear` (prior draws; the 0.8 default).

Truths: ``--truths`` decoder samples drawn with ``--truth-seed`` (on the
manifold; the latent-SGD study's truths are ``--truth-seed 1000``) and as many
held-out training-image crops (off it), each with its own noise draw. Reported
per lever and truth kind, and per truth: accepted, best and median σ, model
RMSE of the best (and refined beyond the prior), s per returned candidate, and
"still improving" (stuck versus unconverged).

Run: ``python benchmarks/proposals_study.py [--quick] [--levers ...] [--kinds on off]``. On several
cores, ``--only 0 1`` runs some truths (one process each, ``--name`` per part) and ``--combine
PART ... --name X`` merges the parts' JSON into one report.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict

import numpy as np
import torch
from _common import NOISE_NS, RESULTS, print_table, synthetic_problem, write_json
from latent_sgd_study import still_improving

from geoinv import FaciesVelocity, Grid2D, LatentSGD, LatentSGDConfig, Survey, forward
from geoinv.prior import PatchSampler, default_training_image, default_vae
from geoinv.solvers import Refill, RefineConfig, Stage, refine_models
from geoinv.solvers.proposals import ProposalConfig, Proposals
from geoinv.workflows import representative_crop

FINISH = (Stage.gauss_newton(5, temperature=2.0), Stage.gauss_newton(10))


def make_truths(vae, grid, count: int, seed: int, kinds) -> list[tuple[str, torch.Tensor]]:
    cases = []
    if "on" in kinds:
        cases += [("on", model) for model in vae.sample(count, torch.Generator().manual_seed(seed))]
    if "off" in kinds:
        sampler = PatchSampler(default_training_image(), grid.shape)
        cases += [("off", representative_crop(sampler, seed + k)) for k in range(count)]
    return cases


def lever_solver(lever: str, starts: int, seed: int, pairs: int, quick: bool):
    network = ProposalConfig(members=4, epochs=2 if quick else 60)
    finish = LatentSGDConfig(progress=False, n_starts=starts, seed=seed).with_stages(FINISH)
    if quick:
        finish = finish.with_epochs(1)
    if lever == "proposals":
        return Proposals(LatentSGD(finish), n_starts=starts, seed=seed, n_pairs=pairs, network_config=network)
    if lever.startswith("proposals, ") and lever.endswith(" draws, refill"):  # e.g. "proposals, 3 draws, refill"
        search = lever_solver(lever.removesuffix(", refill"), starts, seed, pairs, quick)
        return Refill(search, seed=seed)
    if lever.startswith("proposals, ") and ", refill, " in lever:  # e.g. "proposals, 2 draws, refill, 3 rounds"
        head, rounds = lever.rsplit(", ", 1)
        search = lever_solver(head.removesuffix(", refill"), starts, seed, pairs, quick)
        return Refill(search, seed=seed, rounds=int(rounds.split()[0]))
    if lever.startswith("proposals, ") and lever.endswith(" draws"):  # e.g. "proposals, 3 draws"
        draws = int(lever.split()[1])
        return Proposals(LatentSGD(finish), n_starts=starts, seed=seed, n_pairs=pairs, network_config=network,
                         draws_per_start=draws)
    if lever.startswith("proposals, ") and " draws, screen " in lever:  # e.g. "proposals, 3 draws, screen 10"
        words = lever.replace(",", "").split()
        return Proposals(LatentSGD(finish), n_starts=starts, seed=seed, n_pairs=pairs, network_config=network,
                         draws_per_start=int(words[1]), screen=int(words[4]))
    if lever == "default":
        config = LatentSGDConfig.default_nonlinear(n_starts=starts, seed=seed, progress=False)
        return LatentSGD(config.with_epochs(1) if quick else config)
    raise SystemExit(f"unknown lever {lever!r}")


def run_case(solver, operator, vae, petrophysics, truth, noise_seed: int) -> dict:
    problem = synthetic_problem(operator, vae, petrophysics, truth, noise_seed)
    one_off = {}
    if not solver.is_fitted or isinstance(solver, (Proposals, Refill)):
        started = time.perf_counter()
        solver.fit(problem)
        network = getattr(getattr(solver, "search_solver", solver), "network_info", {})
        one_off = {"fit_s": time.perf_counter() - started, **network}
    started = time.perf_counter()
    solutions = solver.solve(problem)
    seconds = time.perf_counter() - started
    model_rmse = (solutions.models[0] - truth).pow(2).mean(dim=(1, 2)).sqrt()
    refined = refine_models(problem, solutions, RefineConfig(n_models=1, steps=150))
    search = {}
    if "refilled" in solutions.history:  # the search's own result: the refilled candidates were not accepted
        refilled = torch.as_tensor(np.asarray(solutions.history["refilled"][0]))
        search = {"search_accepted": int((solutions.accepted[0] & ~refilled).sum()), "refilled": int(refilled.sum()),
                  "refilled_accepted": int(solutions.refilled_accepted()[0]),
                  "search_rounds": int(solutions.history["search_rounds"][0]),
                  "round_best_sigma": [float(value) for value in solutions.history["round_best_misfit"][0]]}
    return {**search, "accepted": int(solutions.accepted[0].sum()), "starts": solutions.n_candidates,
            "best_sigma": float(solutions.normalised_misfit[0, 0]),
            "median_sigma": float(solutions.normalised_misfit[0].median()),
            "model_rmse_best": float(model_rmse[0]),
            "model_rmse_refined": float((refined["models"][0, 0] - truth).pow(2).mean().sqrt()),
            "refined_sigma": float(refined["normalised_misfit"][0, 0]),
            "seconds_per_candidate": seconds / solutions.n_candidates,
            "still_improving": still_improving(solutions), "one_off": one_off}


def summarise(cases: list[dict]) -> dict:
    accepted, starts = sum(c["accepted"] for c in cases), sum(c["starts"] for c in cases)
    search = {}
    if all("search_accepted" in c for c in cases):
        searched = sum(c["search_accepted"] for c in cases)
        search = {"search_accepted": f"{searched}/{starts}", "refilled": sum(c["refilled"] for c in cases),
                  "refilled_accepted": sum(c["refilled_accepted"] for c in cases)}
    return {**search, "accepted": f"{accepted}/{starts}", "accepted_fraction": accepted / starts,
            "truths_reached": sum(c["best_sigma"] <= 1.1 for c in cases),
            "best_sigma": float(np.median([c["best_sigma"] for c in cases])),
            "worst_best_sigma": float(np.max([c["best_sigma"] for c in cases])),
            "median_sigma": float(np.median([c["median_sigma"] for c in cases])),
            "model_rmse_best": float(np.median([c["model_rmse_best"] for c in cases])),
            "model_rmse_refined": float(np.median([c["model_rmse_refined"] for c in cases])),
            "seconds_per_candidate": float(np.mean([c["seconds_per_candidate"] for c in cases])),
            "still_improving_pct": 100 * float(np.median([c["still_improving"] for c in cases])),
            "per_truth": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="1 truth, 2 starts, 256 pairs, the refill lever: checks the script")
    parser.add_argument("--truths", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--truth-seed", type=int, default=4242, help="not a seed used while developing")
    parser.add_argument("--pairs", type=int, default=8192, help="simulated training pairs of the network")
    parser.add_argument("--kinds", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--levers", nargs="+", default=["proposals", "proposals, 2 draws", "default"])
    parser.add_argument("--name", default="proposals_study")
    parser.add_argument("--only", type=int, nargs="+", help="run only these truths (indices per kind)")
    parser.add_argument("--combine", nargs="+", metavar="PART", help="merge these runs' JSON (names) into --name")
    args = parser.parse_args()
    if args.combine:
        return combine(args.combine, args.name)
    if args.quick:  # the default's path (proposals, draws, refill) on one truth on the manifold
        args.truths, args.starts, args.pairs, args.kinds = 1, 2, 256, ["on"]
        if args.levers == parser.get_default("levers"):
            args.levers = ["proposals, 2 draws, refill"]
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    grid, survey, petrophysics = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    operator = forward("eikonal", grid=grid, survey=survey)
    cases = make_truths(vae, grid, args.truths, args.truth_seed, args.kinds)
    rows = []
    for lever in args.levers:
        solver = lever_solver(lever, args.starts, args.truth_seed, args.pairs, args.quick)
        for kind in args.kinds:
            results = []
            for k, (case_kind, truth) in enumerate(cases):
                index = k if case_kind == "on" or "on" not in args.kinds else k - args.truths
                if case_kind != kind or (args.only is not None and index not in args.only):
                    continue
                result = {"truth": index, **run_case(solver, operator, vae, petrophysics, truth,
                                                     args.truth_seed + 7 + k)}
                results.append(result)
                print(f"{lever:20s} {kind:3s} truth {index}: accepted {result['accepted']}/"
                      f"{result['starts']}, best {result['best_sigma']:.2f} σ, median {result['median_sigma']:.2f} σ, "
                      f"model RMSE {result['model_rmse_best']:.3f} (refined {result['model_rmse_refined']:.3f}), "
                      f"{result['seconds_per_candidate']:.1f} s/candidate", flush=True)
            proposals = getattr(solver, "search_solver", solver)
            rows.append({"forward": "eikonal", "truths": kind, "lever": lever, **summarise(results),
                         "solver": solver.describe() if lever == "default" else
                         {**solver.describe(), "network_config": asdict(proposals.config.network_config)}})
    report(rows, args.truths, args.starts)
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args),
                           "vae_training": vae.metadata.get("training", {})})


def report(rows: list[dict], truths: int, starts: int) -> None:
    print()
    print_table(rows, [("truths", "truths", ""), ("lever", "lever", ""), ("accepted", "accepted", ""),
                       ("truths_reached", "truths ≤ 1.1 σ", "d"), ("best_sigma", "best σ", ".2f"),
                       ("worst_best_sigma", "worst best σ", ".2f"), ("median_sigma", "median σ", ".2f"),
                       ("model_rmse_best", "model RMSE", ".3f"), ("model_rmse_refined", "refined", ".3f"),
                       ("seconds_per_candidate", "s/candidate", ".1f"),
                       ("still_improving_pct", "last-10% drop %", ".2f")])
    print(f"\n{truths} truths per kind × {starts} candidates; σ = {NOISE_NS} ns; medians over truths; "
          "one-off network cost in each row's per_truth[0].one_off")
    if any("search_accepted" in row for row in rows):
        print_table(rows, [("truths", "truths", ""), ("lever", "lever", ""), ("search_accepted", "search accepted", ""),
                           ("refilled", "refilled", "d"), ("refilled_accepted", "refilled accepted", "d")])


def combine(parts: list[str], name: str) -> None:
    """Merge runs of some truths each (``--only``) into one report, rows matched by lever and truth kind."""
    loaded = [json.loads((RESULTS / f"{part}.json").read_text()) for part in parts]
    rows = []
    for row in loaded[0]["rows"]:
        cases = [case for run in loaded for other in run["rows"]
                 if (other["lever"], other["truths"]) == (row["lever"], row["truths"]) for case in other["per_truth"]]
        cases.sort(key=lambda case: case.get("truth", 0))
        rows.append({"forward": row["forward"], "truths": row["truths"], "lever": row["lever"], **summarise(cases),
                     "solver": row["solver"]})
    args = {**loaded[0]["args"], "only": None, "combined_from": parts}
    report(rows, len(rows[0]["per_truth"]), args["starts"])
    write_json(name, {"noise_ns": NOISE_NS, "rows": rows, "args": args,
                      "vae_training": loaded[0]["vae_training"]})


if __name__ == "__main__":
    main()
