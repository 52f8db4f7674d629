"""Batch throughput on Dask: surveys per minute with 1 and 2 local workers, per forward.

A synthetic campaign of ``--surveys`` panels (default 50) on the reference
crosshole geometry (decoder-sample truths, 0.25 ns noise) is inverted by
``geoinv.batch.run_batch`` with a LocalCluster of 1 and of 2 worker processes
(one thread each), for the straight-ray and the eikonal forward, and — since
every panel here shares one geometry — grouped: ``--group`` panels solved as
one batch tensor (surveys × starts) in one process, without Dask. The solver
settings are light on purpose (``--starts``, ``--epochs``): this measures the
engine's scaling, not accuracy. Scaling efficiency = speed-up / workers.

    python benchmarks/batch.py                       # ≈ 15 min on 2 cores
    python -m benchmarks batch --quick                   # checks the script
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from _common import print_table, synthetic_data, write_json

import geoinv
from geoinv.batch import BatchSettings, run_batch
from geoinv.io.campaign import CampaignSurvey, write_campaign


def synthetic_campaign(path: Path, count: int, forward_name: str, seed: int) -> Path:
    grid, survey = geoinv.Grid2D.crosshole(), geoinv.Survey.crosshole()
    prior = geoinv.default_vae()
    petrophysics = geoinv.FaciesVelocity()
    operator = geoinv.forward(forward_name, grid=grid, survey=survey)
    truths = prior.sample(count, torch.Generator().manual_seed(seed))
    panels = []
    for index, truth in enumerate(truths):
        data = synthetic_data(operator, petrophysics, truth, seed + index)
        panels.append(CampaignSurvey(f"panel{index:04d}", data, grid, petrophysics, {"truth_seed": seed}))
    return write_campaign(path, panels)


def grouped_rate(campaign_path: Path, settings: BatchSettings, group: int) -> tuple[float, int]:
    """Surveys per minute when ``group`` panels of one geometry are solved as one batch tensor
    (S surveys × R starts in one latent-SGD run, one process), without Dask."""
    import time

    from geoinv.core import build_problem, make_solver
    from geoinv.io.campaign import read_campaign

    campaign = read_campaign(campaign_path)
    prior = geoinv.default_vae().frozen()
    first = campaign.surveys[0]
    operator = geoinv.forward(settings.forward, grid=first.grid, survey=first.survey)
    solver = make_solver(settings.solver, operator, n_starts=settings.n_starts, seed=settings.seed,
                         epochs=settings.epochs)
    started, count = time.perf_counter(), 0
    for offset in range(0, len(campaign.surveys), group):
        chunk = campaign.surveys[offset:offset + group]
        problem = build_problem(first.survey, prior, operator, first.petrophysics)
        observed = torch.stack([torch.as_tensor(geoinv.s_to_ns(p.survey.traveltimes)) for p in chunk]).float()
        solver.solve(problem, observed=observed)
        count += len(chunk)
    return 60 * count / (time.perf_counter() - started), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--surveys", type=int, default=50)
    parser.add_argument("--forwards", nargs="+", default=["straight-ray", "eikonal"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per stage of the default schedule")
    parser.add_argument("--group", type=int, default=10,
                        help="panels per batch tensor for the grouped measurement (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 straight-ray panels, 1 and 2 workers, 1 epoch")
    args = parser.parse_args()
    if args.quick:
        args.surveys, args.forwards, args.starts, args.epochs, args.group = 2, ["straight-ray"], 1, 1, 2

    rows = []
    folder = Path(tempfile.mkdtemp(prefix="geoinv-batch-bench-"))
    try:
        for forward_name in args.forwards:
            campaign = synthetic_campaign(folder / f"{forward_name}.h5", args.surveys, forward_name, args.seed)
            settings = BatchSettings(forward=forward_name, n_starts=args.starts, epochs=args.epochs, refine=False,
                                     seed=args.seed)
            baseline = None
            for workers in args.workers:
                output = folder / f"{forward_name}-{workers}.h5"
                summary = run_batch(campaign, output, settings, workers=workers, threads_per_worker=1,
                                    progress=False)
                per_minute = 60 * len(summary.inverted) / summary.seconds
                baseline = baseline or per_minute
                speedup = per_minute / baseline
                rows.append({"forward": forward_name, "workers": workers, "surveys": len(summary.inverted),
                             "failed": len(summary.failed), "seconds": summary.seconds,
                             "surveys_per_minute": per_minute, "speedup": speedup,
                             "efficiency": speedup / (workers / args.workers[0])})
                print(f"{forward_name:12s} {workers} worker(s): {per_minute:.1f} surveys/min", flush=True)
            if args.group:
                per_minute, count = grouped_rate(campaign, settings, args.group)
                rows.append({"forward": forward_name, "workers": f"grouped {args.group}", "surveys": count,
                             "failed": 0, "seconds": 60 * count / per_minute, "surveys_per_minute": per_minute,
                             "speedup": per_minute / baseline, "efficiency": None})
                print(f"{forward_name:12s} grouped by {args.group} (1 process): {per_minute:.1f} surveys/min",
                      flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print()
    print_table(rows, [("forward", "forward", ""), ("workers", "workers", ""), ("surveys", "surveys", "d"),
                       ("seconds", "s", ".1f"), ("surveys_per_minute", "surveys/min", ".1f"),
                       ("speedup", "speed-up", ".2f"), ("efficiency", "efficiency", ".2f")])
    write_json("batch", {"args": vars(args), "rows": rows,
                         "settings": {"surveys": args.surveys, "starts": args.starts, "epochs": args.epochs,
                                      "refine": False, "threads_per_worker": 1}})


if __name__ == "__main__":
    main()
