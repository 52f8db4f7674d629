"""Which latent-search levers reach the noise with the shipped prior? (issue: inversions that reach the noise)

Truths: ``--truths`` decoder samples (on the manifold) and as many held-out
training-image crops (off it), each with its own noise draw (σ = 0.25 ns), on
the reference crosshole survey, for each forward in ``--forwards``. Every lever
(a latent-SGD configuration) inverts every truth from ``--starts`` starts.

Reported per forward × truth kind × lever, over all truths: accepted fraction
(normalised RMSE ≤ 1.1), best and median normalised RMSE (median over truths of
each truth's best / median), model RMSE of the best (median over truths), s per
start, and "still improving": the best start's relative misfit drop over the
last 10 % of recorded steps (> 1 % = unconverged, not stuck); and the model
RMSE after refining the best candidate beyond the manifold (``refine_models``,
stopped at 1 σ). JSON first, then a figure.

Run: ``python benchmarks/latent_sgd_study.py [--quick] [--levers NAME ...] [--forwards ...]``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from _common import NOISE_NS, figure_path, print_table, synthetic_problem, write_json

from geoinv import (
    ACCEPTANCE,
    Eikonal,
    FaciesVelocity,
    Grid2D,
    LatentSGD,
    LatentSGDConfig,
    Survey,
    forward,
)
from geoinv.prior import PatchSampler, default_training_image, default_vae
from geoinv.solvers import RefineConfig, Stage, refine_models
from geoinv.solvers.gauss_newton import LatentGaussNewton
from geoinv.workflows import representative_crop


def _polish(epochs: int, temperature: float = 1.0, minibatch: str = "random") -> Stage:
    return Stage.polish(epochs, minibatch, temperature=temperature)


@dataclass(frozen=True)
class GaussNewtonPolish:
    """A latent-SGD schedule whose end points pyGIMLi's latent Gauss-Newton then polishes."""

    sgd: LatentSGDConfig
    iterations: int = 10


def levers(forward_name: str, starts: int, seed: int) -> dict[str, LatentSGDConfig | GaussNewtonPolish]:
    """The levers compared, by name (baselines first)."""
    common = {"progress": False, "seed": seed, "n_starts": starts}
    if forward_name == "straight-ray":
        reference = LatentSGDConfig.reference_linear(**common)
        return {
            "plain GD": LatentSGDConfig.plain_gd(**common),
            "Adam": LatentSGDConfig.adam(**common),
            "reference": reference,
            "reference + polish": LatentSGDConfig.reference_linear(then=(_polish(1000),), **common),
            "continuation T4→2→1": LatentSGDConfig.reference_linear(
                temperature=4.0, then=(_polish(1000, 2.0), _polish(1000)), **common),
            "continuation T4→1 SGD + polish": LatentSGDConfig.reference_linear(
                temperature=4.0, then=(Stage(step_size=5e-3, epochs=40, reg_weight=1.0), _polish(1000)), **common),
            "Adam + polish": LatentSGDConfig.adam(then=(_polish(1000),), **common),
            "scheduled Adam (minibatch, ring) + polish": LatentSGDConfig.reference_linear(
                optimizer="adam", step_size=3e-2, then=(_polish(1000),), **common),
            # the default before 0.7 (LatentSGDConfig.sgd_linear) is "reference + polish"
            "reference + polish + GN polish": GaussNewtonPolish(LatentSGDConfig.sgd_linear(**common)),
            # keep the best of many: 4 × starts through the reference stage, the best quarter polished
            "reference + polish, explore 4": LatentSGDConfig.sgd_linear(explore=4, **common),
            # Gauss-Newton on a cooling decoder (T 32 → 1) from 5 × starts draws, the best kept (0.7 default)
            "default": LatentSGDConfig.default_linear(**common),
            "GN continuation, no exploring": LatentSGDConfig.gauss_newton_continuation(explore=1, **common),
        }
    reference = LatentSGDConfig.reference_nonlinear(minibatch="source", **common)
    return {
        "Adam": LatentSGDConfig.adam(steps=200, **common),
        "reference": reference,
        "reference + polish": LatentSGDConfig.reference_nonlinear(
            minibatch="source", then=(_polish(12, minibatch="source"),), **common),
        "continuation T4→2→1": LatentSGDConfig.reference_nonlinear(
            minibatch="source", temperature=4.0,
            then=(_polish(6, 2.0, minibatch="source"), _polish(6, minibatch="source")), **common),
        "default": LatentSGDConfig.default_nonlinear(**common),
        # "reference + polish" is the default before 0.6 (LatentSGDConfig.source_nonlinear)
        "reference + polish + GN polish": GaussNewtonPolish(LatentSGDConfig.source_nonlinear(**common)),
        # the linear reference schedule on the eikonal linearised at each start (ray kernel), refreshed
        # every k epochs (the bent-ray iteration), then an exact-eikonal polish
        "relinearized every 10 + polish": LatentSGDConfig.reference_linear(
            relinearize=10, then=(_polish(6, minibatch="source"),), **common),
        "relinearized every 2 + polish": LatentSGDConfig.reference_linear(
            relinearize=2, then=(_polish(6, minibatch="source"),), **common),
        # the same on the straight-ray kernel with the exact eikonal times as offset (a first-order
        # model-error correction of the straight-ray search), then latent Gauss-Newton
        "straight kernel every 10 + polish + GN": GaussNewtonPolish(LatentSGDConfig.reference_linear(
            relinearize=10, kernel="straight-ray", then=(_polish(6, minibatch="source"),), **common)),
        # the same with geoinv's own Gauss-Newton stage (torch, exact chained Jacobian) instead of pyGIMLi's
        "straight kernel every 10 + polish + GN stage": LatentSGDConfig.reference_linear(
            relinearize=10, kernel="straight-ray", then=(_polish(6, minibatch="source"), Stage.gauss_newton(10)),
            **common),
        "straight kernel every 10 + polish + GN stage, explore 4": LatentSGDConfig.reference_linear(
            relinearize=10, kernel="straight-ray", then=(_polish(6, minibatch="source"), Stage.gauss_newton(10)),
            explore=4, **common),
        # the 0.7 default explores 2 × starts to the exact polish, the best half goes on to Gauss-Newton;
        # the 0.6 default explored nothing
        "0.6 default (no exploring)": LatentSGDConfig.default_nonlinear(explore=1, **common),
        "default, explore 2 to the polish": LatentSGDConfig.default_nonlinear(explore=2, explore_stages=2, **common),
        "default, explore 3 to the polish": LatentSGDConfig.default_nonlinear(explore=3, explore_stages=2, **common),
        "default, explore 2 to GN at T = 2": LatentSGDConfig.default_nonlinear(explore=2, explore_stages=3, **common),
        "default, explore 2 to the end": LatentSGDConfig.default_nonlinear(explore=2, explore_stages=None, **common),
        # the default's search on the decoder at temperature 2 (a smoother map), the rest unchanged
        "default, search at T = 2": LatentSGDConfig.default_nonlinear(temperature=2.0, **common),
        # the default with each Gauss-Newton iteration's step capped at 0.25 latent units (a trust radius):
        # the same draws, search and polish as "default", only the finish differs
        "default, GN steps ≤ 0.25": LatentSGDConfig.default_nonlinear(then=(
            Stage.polish(6, "source"), Stage.gauss_newton(5, temperature=2.0, max_step=0.25),
            Stage.gauss_newton(10, max_step=0.25)), **common),
        "GN continuation": LatentSGDConfig.gauss_newton_continuation(**common),
        "GN continuation, no exploring": LatentSGDConfig.gauss_newton_continuation(explore=1, **common),
        # a portfolio: the default beside the GN continuation from ½ × starts draws of its own, the best
        # starts of both kept (the two reach different truths' basins; the default's draws are its own)
        "default + GN continuation portfolio": LatentSGDConfig.default_nonlinear(
            portfolio=((0.5, LatentSGDConfig.gauss_newton_continuation(explore=1, **common)),), **common),
    }


def truths(vae, grid: Grid2D, count: int, seed: int) -> list[tuple[str, torch.Tensor]]:
    sampler = PatchSampler(default_training_image(), grid.shape)
    on = vae.sample(count, torch.Generator().manual_seed(1000 + seed))
    off = [representative_crop(sampler, seed + k) for k in range(count)]
    return [("on", model) for model in on] + [("off", model) for model in off]


def still_improving(solutions) -> float:
    """Relative drop of the best start's misfit over the last 10 % of records."""
    if "data_rmse" not in solutions.history:  # Gauss-Newton: the χ² history of every start
        chi2 = np.asarray(solutions.history["chi2"])[:, 0, :]
        curve = np.sqrt(np.nanmin(np.where(np.isnan(chi2), np.inf, chi2), axis=1))
        curve = curve[np.isfinite(curve)]
        return float((curve[-2] - curve[-1]) / curve[-2]) if len(curve) > 1 else 0.0
    curve = np.asarray(solutions.history["data_rmse"])[:, 0, :].min(axis=1)
    tail = max(2, len(curve) // 10)
    return float((curve[-tail] - curve[-1]) / curve[-tail])


def run_case(operator, vae, petrophysics, truth, noise_seed: int, config: LatentSGDConfig) -> dict:
    problem = synthetic_problem(operator, vae, petrophysics, truth, noise_seed)
    start = time.perf_counter()
    if isinstance(config, GaussNewtonPolish):
        searched = LatentSGD(config.sgd).solve(problem)
        polish = LatentGaussNewton(max_iterations=config.iterations, min_dphi=0.1)
        solutions = polish.solve(problem, initial=searched.parameters)
        before = {"best_sigma_before_gn": float(searched.normalised_misfit[0, 0]),
                  "accepted_before_gn": int(searched.accepted[0].sum())}
    else:
        solutions, before = LatentSGD(config).solve(problem), {}
    seconds = time.perf_counter() - start
    model_rmse = (solutions.models[0] - truth).pow(2).mean(dim=(1, 2)).sqrt()
    refined = refine_models(problem, solutions, RefineConfig(n_models=1))
    refined_rmse = (refined["models"][0, 0] - truth).pow(2).mean().sqrt()
    return {"model_rmse_refined": float(refined_rmse), "refined_sigma": float(refined["normalised_misfit"][0, 0]),
            "accepted": int(solutions.accepted[0].sum()), "starts": solutions.n_candidates,
            "best_sigma": float(solutions.normalised_misfit[0, 0]),
            "median_sigma": float(solutions.normalised_misfit[0].median()),
            "best_ns": float(solutions.misfit[0, 0]), "model_rmse_best": float(model_rmse[0]),
            "seconds_per_start": seconds / solutions.n_candidates, "still_improving": still_improving(solutions),
            "solutions": solutions, **before}


def summarise(cases: list[dict]) -> dict:
    accepted = sum(c["accepted"] for c in cases)
    starts = sum(c["starts"] for c in cases)
    return {"accepted": f"{accepted}/{starts}", "accepted_fraction": accepted / starts,
            "best_sigma": float(np.median([c["best_sigma"] for c in cases])),
            "median_sigma": float(np.median([c["median_sigma"] for c in cases])),
            "best_ns": float(np.median([c["best_ns"] for c in cases])),
            "model_rmse_best": float(np.median([c["model_rmse_best"] for c in cases])),
            "model_rmse_refined": float(np.median([c["model_rmse_refined"] for c in cases])),
            "refined_sigma": float(np.median([c["refined_sigma"] for c in cases])),
            "seconds_per_start": float(np.mean([c["seconds_per_start"] for c in cases])),
            "still_improving_pct": 100 * float(np.median([c["still_improving"] for c in cases])),
            "per_truth_accepted": [c["accepted"] for c in cases],
            "per_truth_best_sigma": [c["best_sigma"] for c in cases],
            **({"per_truth_best_sigma_before_gn": [c["best_sigma_before_gn"] for c in cases],
                "accepted_before_gn": sum(c["accepted_before_gn"] for c in cases)}
               if "best_sigma_before_gn" in cases[0] else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="the default lever, 2 epochs, 2 starts, 1 truth: checks the script")
    parser.add_argument("--truths", type=int, default=5, help="truths of each kind (on and off the manifold)")
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--forwards", nargs="+", default=["straight-ray", "eikonal"],
                        help="registered forwards; 'eikonal-rays' is the eikonal forward with the ray-traced gradient")
    parser.add_argument("--levers", nargs="*", help="lever names (default all)")
    parser.add_argument("--kinds", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="latent_sgd_study", help="name of the JSON and PNG in results/")
    args = parser.parse_args()
    if args.quick:  # the default lever on each forward, one truth on the manifold
        args.truths, args.starts, args.kinds = 1, 2, ["on"]
        args.levers = args.levers or ["default"]

    vae = default_vae().frozen()
    grid, survey = Grid2D.crosshole(), Survey.crosshole()
    petrophysics = FaciesVelocity()
    cases = [(kind, model) for kind, model in truths(vae, grid, args.truths, args.seed) if kind in args.kinds]
    rows, examples = [], {}
    for forward_name in args.forwards:
        operator = (Eikonal(grid, survey, gradient="rays") if forward_name == "eikonal-rays"
                    else forward(forward_name, grid=grid, survey=survey))
        for lever, config in levers(forward_name, args.starts, args.seed).items():
            if args.levers and lever not in args.levers:
                continue
            if args.quick:
                config = (GaussNewtonPolish(config.sgd.with_epochs(2), 2) if isinstance(config, GaussNewtonPolish)
                          else config.with_epochs(2))
            for kind in args.kinds:
                results = [run_case(operator, vae, petrophysics, model, args.seed + 7 + k, config)
                           for k, (case_kind, model) in enumerate(cases) if case_kind == kind]
                row = {"forward": forward_name, "truths": kind, "lever": lever, **summarise(results),
                       "config": asdict(config)}
                rows.append(row)
                examples[(forward_name, kind, lever)] = (cases[0 if kind == "on" else -1][1], results[0]["solutions"])
                print(f"{forward_name:12s} {kind:3s} {lever:32s} accepted {row['accepted']:>7s} best "
                      f"{row['best_sigma']:.2f} σ median {row['median_sigma']:.2f} σ "
                      f"model {row['model_rmse_best']:.3f} "
                      f"{row['seconds_per_start']:.1f} s/start", flush=True)
    print()
    print_table(rows, [("forward", "forward", ""), ("truths", "truths", ""), ("lever", "lever", ""),
                       ("accepted", "accepted", ""), ("best_sigma", "best σ", ".2f"),
                       ("median_sigma", "median σ", ".2f"), ("best_ns", "best ns", ".3f"),
                       ("model_rmse_best", "model RMSE", ".3f"), ("model_rmse_refined", "refined", ".3f"),
                       ("seconds_per_start", "s/start", ".1f"),
                       ("still_improving_pct", "last-10% drop %", ".2f")])
    print(f"\n{args.truths} truths per kind × {args.starts} starts; σ = {NOISE_NS} ns; "
          f"accepted: normalised RMSE ≤ {ACCEPTANCE}; best/median σ and model RMSE are medians over truths")
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args),
                           "vae_training": vae.metadata.get("training", {})})
    _figure(grid, examples, figure_path(args.name))


def _figure(grid, examples: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from geoinv.plot import plot_model

    keys = list(examples)
    fig, axes = plt.subplots(len(keys), 3, figsize=(10, 3.4 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        truth, solutions = examples[key]
        plot_model(axes[row, 0], grid, truth.numpy(), None, f"{key[0]}, {key[1]}-manifold truth", "gray_r",
                   vmin=0, vmax=1)
        plot_model(axes[row, 1], grid, solutions.models[0, 0].numpy(), None,
                   f"{key[2]}\nbest {solutions.normalised_misfit[0, 0]:.2f} σ", "gray_r", vmin=0, vmax=1)
        if "data_rmse" in solutions.history:
            steps = np.asarray(solutions.history["step"])
            curves = np.asarray(solutions.history["data_rmse"])[:, 0, :] / NOISE_NS
            axes[row, 2].set_xlabel("step")
        else:  # Gauss-Newton polish: normalised RMSE per iteration
            curves = np.sqrt(np.asarray(solutions.history["chi2"])[:, 0, :])
            steps = np.arange(len(curves))
            axes[row, 2].set_xlabel("Gauss-Newton iteration")
        axes[row, 2].semilogy(steps, curves, lw=0.6, alpha=0.6)
        axes[row, 2].axhline(ACCEPTANCE, color="k", ls="--", lw=1)
        axes[row, 2].set_ylabel("data RMSE / σ")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
