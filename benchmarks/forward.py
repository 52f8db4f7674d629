"""Speed and accuracy of the forward operators on the reference crosshole problem.

Run: ``python benchmarks/forward.py [--quick] [--skip-pygimli]``. Times are
medians of repeats on this machine, measured side by side in one run, so the
ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import median_time, print_table, write_json

from geoinv import Eikonal, FaciesVelocity, Grid2D, StraightRay, Survey
from geoinv.prior import PatchSampler, default_training_image


def _homogeneous_error(simulate, survey: Survey) -> tuple[float, float]:
    velocity = 0.07e9
    times = simulate(np.full(Grid2D.crosshole().shape, 1 / velocity))
    exact = survey.distances / velocity
    relative = (times - exact) / exact
    return float(np.mean(relative)), float(np.max(np.abs(relative)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--skip-pygimli", action="store_true", help="leave out pyGIMLi (about 30 s)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    grid = Grid2D.crosshole()
    survey = Survey.crosshole()
    # sensors off the grid nodes for the accuracy columns (on-node sensors flatter interpolation)
    off_node = Survey.crosshole(0.0, 6.5, np.arange(25) * 0.5 + 0.43)
    facies = PatchSampler(default_training_image()).test_batch(100, torch.Generator().manual_seed(0)).double()
    slowness = FaciesVelocity().slowness(facies)
    rows = []

    seconds = median_time(lambda: StraightRay(grid, survey), repeats)
    rows.append({"operation": "straight-ray matrix assembly", "seconds": seconds})
    straight = StraightRay(grid, survey)
    for batch in (1, 100):
        models = slowness[:batch].clone().requires_grad_(True)

        def forward_backward(models=models):
            straight(models).sum().backward()

        seconds = median_time(forward_backward, repeats)
        rows.append({"operation": f"straight-ray forward+backward B={batch}", "seconds": seconds,
                     "per_model_ms": 1e3 * seconds / batch})

    for refine in (1, 2):
        eikonal = Eikonal(grid, survey, refine=refine)
        model = slowness[:1].clone()
        forward_s = median_time(lambda eikonal=eikonal, model=model: eikonal(model), repeats)
        models = model.clone().requires_grad_(True)

        def eikonal_step(eikonal=eikonal, models=models):
            eikonal(models).sum().backward()

        both_s = median_time(eikonal_step, repeats)
        mean_err, max_err = _homogeneous_error(lambda s, r=refine: Eikonal(grid, off_node, refine=r)
                                               .simulate_numpy(s)[0], off_node)
        rows.append({"operation": f"eikonal forward (refine={refine})", "seconds": forward_s})
        rows.append({"operation": f"eikonal forward+gradient (refine={refine})", "seconds": both_s,
                     "mean_error_pct": 100 * mean_err, "max_error_pct": 100 * max_err})

    # the latent-SGD step on one source's data: forward + backward, gradient by adjoint state vs rays
    one_source = np.flatnonzero(survey.pairs[:, 0] == 12)
    step_seconds = {}
    for gradient in ("adjoint", "rays"):
        eikonal = Eikonal(grid, survey, gradient=gradient)
        models = slowness[:4].clone().requires_grad_(True)

        def source_step(eikonal=eikonal, models=models):
            eikonal(models, one_source).sum().backward()

        step_seconds[gradient] = median_time(source_step, repeats)
        rows.append({"operation": f"eikonal one-source forward+gradient B=4 ({gradient})",
                     "seconds": step_seconds[gradient], "per_model_ms": 1e3 * step_seconds[gradient] / 4})
    rows.append({"operation": "ratio rays / adjoint, one-source forward+gradient",
                 "ratio": step_seconds["rays"] / step_seconds["adjoint"]})

    # several models at once (chains, starts): one process against worker processes, same batch
    batch_seconds: dict[tuple[str, int], float] = {}
    latent_tangents = np.random.default_rng(0).normal(size=(8, grid.n_cells, 20))
    for workers in (1, 2):
        eikonal = Eikonal(grid, survey, workers=workers)
        models = slowness[:8].clone().requires_grad_(True)

        def batch_step(eikonal=eikonal, models=models):
            eikonal(models).sum().backward()

        def jacobians(eikonal=eikonal, models=models):  # Gauss-Newton's kernels of 8 candidates
            eikonal.jacobians(models.detach())

        def jacobian_products(eikonal=eikonal, models=models):  # the same, times 20 latent tangents each
            eikonal.jacobian_products(models.detach(), latent_tangents)

        batch_step()  # starts the workers outside the timing
        for operation, step in (("forward+gradient", batch_step), ("Jacobians", jacobians),
                                ("Jacobian products (k=20)", jacobian_products)):
            seconds = batch_seconds[operation, workers] = median_time(step, repeats)
            rows.append({"operation": f"eikonal {operation} B=8, workers={workers}", "seconds": seconds,
                         "per_model_ms": 1e3 * seconds / 8})
        eikonal.close()
    for operation in ("forward+gradient", "Jacobians", "Jacobian products (k=20)"):
        rows.append({"operation": f"speed-up workers=2 / workers=1, B=8 {operation}",
                     "ratio": batch_seconds[operation, 1] / batch_seconds[operation, 2]})

    if not args.skip_pygimli:
        from geoinv.forward.pygimli import PyGimliShortestPath

        pygimli = PyGimliShortestPath(grid, survey, secondary_nodes=3)
        model = slowness[0].numpy()
        response_s = median_time(lambda: pygimli.response(model), 1, warmup=0)
        jacobian_s = median_time(lambda: pygimli.jacobian(model), 1, warmup=0)
        mean_err, max_err = _homogeneous_error(pygimli.response, survey)
        rows.append({"operation": "pyGIMLi Dijkstra forward (secNodes=3)", "seconds": response_s})
        rows.append({"operation": "pyGIMLi Dijkstra forward+Jacobian (secNodes=3)",
                     "seconds": response_s + jacobian_s, "mean_error_pct": 100 * mean_err,
                     "max_error_pct": 100 * max_err})
        ours = {row["operation"]: row["seconds"] for row in rows if "seconds" in row}
        for refine in (1, 2):
            rows.append({"operation": f"ratio pyGIMLi / eikonal (refine={refine}), forward+gradient",
                         "ratio": (response_s + jacobian_s) / ours[f"eikonal forward+gradient (refine={refine})"]})

    print(f"reference problem: grid {grid.shape} at 0.1 m, {survey.n_data} rays, channelized held-out model; "
          f"torch threads {torch.get_num_threads()}")
    print("accuracy: homogeneous medium, sensors off grid nodes (pyGIMLi: on nodes, it snaps them)\n")
    print_table(rows, [("operation", "operation", ""), ("seconds", "median s", ".4f"),
                       ("per_model_ms", "ms/model", ".3f"), ("mean_error_pct", "mean err %", "+.4f"),
                       ("max_error_pct", "max |err| %", ".4f"), ("ratio", "ratio", ".2f")])
    write_json("forward", {"args": vars(args), "rows": rows, "repeats": repeats})


if __name__ == "__main__":
    main()
