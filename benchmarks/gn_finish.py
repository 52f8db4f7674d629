"""Finishing stages compared from the same searched points (eikonal, decoder-sample truths).

The default nonlinear schedule's search (straight-ray-kernel stage relinearised
every 10 epochs + exact Adam polish) runs once per truth; each finishing
variant then starts from its end points, so the table isolates the finish:

- ``gn10``: 10 Gauss-Newton iterations (T = 1);
- ``rays2+gn``: a ray-kernel stage relinearised every 2 epochs (20 epochs), then ``gn10``;
- ``T2gn+gn``: 5 Gauss-Newton iterations at decoder temperature 2, then ``gn10`` (the default's finish);
- ``T4gn+T2gn+gn``: 5 iterations at T = 4 first; ``T2gn10+gn``: 10 at T = 2.

Usage::

    python -m benchmarks gn_finish [--truths 5] [--starts 5] [--finishes gn10 T2gn+gn] [--quick]

Writes ``results/gn_finish.json``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import NOISE_NS, print_table, synthetic_problem, write_json
from latent_sgd_study import truths

from geoinv import FaciesVelocity, Grid2D, LatentSGD, LatentSGDConfig, Survey, forward
from geoinv.prior import default_vae
from geoinv.solvers import Stage

FINISHES = {
    "gn10": (Stage.gauss_newton(10),),
    "rays2+gn": (Stage(step_size=2e-3, step_decay=0.9, epochs=20, relinearize=2, reg_weight=1.0),
                 Stage.gauss_newton(10)),
    "T2gn+gn": (Stage.gauss_newton(5, temperature=2.0), Stage.gauss_newton(10)),
    "T4gn+T2gn+gn": (Stage.gauss_newton(5, temperature=4.0), Stage.gauss_newton(5, temperature=2.0),
                     Stage.gauss_newton(10)),
    "T2gn10+gn": (Stage.gauss_newton(10, temperature=2.0), Stage.gauss_newton(10)),
}


def run(problem, stages, n_starts: int, initial):
    config = LatentSGDConfig(n_starts=n_starts, progress=False).with_stages(stages)
    return LatentSGD(config).solve(problem, initial=initial)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truths", type=int, default=5)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--finishes", nargs="+", default=["gn10", "rays2+gn", "T2gn+gn"], choices=list(FINISHES))
    parser.add_argument("--name", default="gn_finish", help="name of the JSON in results/")
    parser.add_argument("--quick", action="store_true", help="1 truth, 1 start, 1 epoch per search stage, one finish")
    args = parser.parse_args()
    if args.quick:
        args.truths, args.starts, args.finishes = 1, 1, ["gn10"]
    vae = default_vae().frozen()
    grid, survey, petro = Grid2D.crosshole(), Survey.crosshole(), FaciesVelocity()
    operator = forward("eikonal", grid=grid, survey=survey)
    models = [model for kind, model in truths(vae, grid, args.truths, 0) if kind == "on"]
    search = LatentSGDConfig.default_nonlinear().stages[:2]
    if args.quick:
        search = tuple(replace(stage, epochs=1) for stage in search)
    rows = []
    for index, truth in enumerate(models):
        problem = synthetic_problem(operator, vae, petro, truth, 7 + index)
        searched = run(problem, search, args.starts, None).parameters[0]
        for name in args.finishes:
            started = time.perf_counter()
            solutions = run(problem, FINISHES[name], args.starts, searched)
            model_rmse = (solutions.models[0, 0] - truth).pow(2).mean().sqrt()
            rows.append({"truth": index, "finish": name, "accepted": int(solutions.accepted[0].sum()),
                         "sigma": [float(x) for x in solutions.normalised_misfit[0]],
                         "model_rmse_best": float(model_rmse),
                         "seconds_per_start": (time.perf_counter() - started) / args.starts})
            print(f"truth {index}  {name:9s} accepted {rows[-1]['accepted']}/{args.starts}  "
                  f"σ {' '.join(f'{x:.2f}' for x in rows[-1]['sigma'])}  model {float(model_rmse):.3f}  "
                  f"{rows[-1]['seconds_per_start']:.1f} s/start", flush=True)
    summary = [{"finish": name, "accepted": f"{sum(r['accepted'] for r in rows if r['finish'] == name)}/"
                f"{args.starts * len(models)}",
                "per_truth": "/".join(str(r["accepted"]) for r in rows if r["finish"] == name),
                "seconds_per_start": sum(r["seconds_per_start"] for r in rows if r["finish"] == name) / len(models)}
               for name in args.finishes]
    print()
    print_table(summary, [("finish", "finish", ""), ("accepted", "accepted", ""), ("per_truth", "per truth", ""),
                          ("seconds_per_start", "s/start (finish only)", ".1f")])
    write_json(args.name, {"args": vars(args), "noise_ns": NOISE_NS, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
