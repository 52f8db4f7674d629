"""The torch fast-sweeping eikonal against scikit-fmm's fast marching: accuracy, derivatives, speed, temperature.

Side by side in one run, on the reference grid and survey (129 × 65 cells of 0.1 m,
25 × 25 sensors) with decoder-sample models of the shipped prior at the reference
velocities:

1. **Accuracy**: relative traveltime errors against scikit-fmm on 4 × 4 nodes per cell
   (the reference), for fast marching on the cell nodes and for sweeping of second
   and first order.
2. **Derivatives**: :func:`geoinv.testing.check_forward`'s central finite differences
   against each operator's exact derivative, on a small panel.
3. **Speed**: forward and forward + backward for one model and a batch, with the
   ratio sweeping / marching (the same process, the same cores).
4. **Temperature**: on a two-path model (a slow channel under the direct path) the
   traveltime to one receiver and its derivative as the channel's slowness moves
   across the switch of first arrivals: how far each temperature (up to its bound)
   moves the times and how much it softens the derivative's jump at the switch.

Run: ``python -m benchmarks sweeping_eikonal [--models 3] [--batch 10] [--quick]``; on a GPU machine
``--device cuda --speed-only`` times the sweeping there beside the CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import print_table, write_json

from geoinv import Eikonal, FaciesVelocity, Grid2D, Survey, SweepingEikonal
from geoinv.prior import default_vae
from geoinv.testing import check_forward


def _models(count: int, seed: int) -> torch.Tensor:
    prior = default_vae()
    with torch.no_grad():
        facies = prior.decode(prior.sample_latent(count, torch.Generator().manual_seed(seed)))
    return FaciesVelocity().slowness(facies.double())


def _relative_errors(times: torch.Tensor, reference: torch.Tensor) -> dict:
    error = ((times - reference) / reference).abs().reshape(-1)
    return {"median": float(error.median()), "p95": float(error.quantile(0.95)), "max": float(error.max())}


def accuracy(models: torch.Tensor, grid: Grid2D, survey: Survey) -> list[dict]:
    reference = Eikonal(grid, survey, refine=4)(models)
    operators = {"fast marching (scikit-fmm, order 2)": Eikonal(grid, survey),
                 "sweeping, order 2": SweepingEikonal(grid, survey),
                 "sweeping, order 1": SweepingEikonal(grid, survey, order=1)}
    return [{"operator": name, **_relative_errors(operator(models), reference)}
            for name, operator in operators.items()]


def derivatives(seed: int) -> list[dict]:
    grid = Grid2D((40, 24), 0.1)
    survey = Survey.crosshole(0.0, 2.3, np.array([0.5, 1.5, 2.5, 3.5]))
    rows = []
    for name, operator in (("fast marching (scikit-fmm, order 2)", Eikonal(grid, survey)),
                           ("sweeping, order 2", SweepingEikonal(grid, survey))):
        errors = check_forward(operator, generator=torch.Generator().manual_seed(seed))
        rows.append({"operator": name, "fd_error": errors["jvp vs finite differences"],
                     "dot_test": errors["derivative dot test"]})
    return rows


def _seconds(operator, models: torch.Tensor, backward: bool) -> float:
    model = models.clone().requires_grad_(backward)
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    began = time.perf_counter()
    times = operator(model)
    if backward:
        times.sum().backward()
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)  # queued kernels count once they are done
    return time.perf_counter() - began


def speed(models: torch.Tensor, grid: Grid2D, survey: Survey, batch: int, device: str) -> list[dict]:
    """Seconds of fast marching (CPU; skipped where scikit-fmm is not installed) and of sweeping on the
    CPU and, with a device, there (its first call warms the device up and is not counted)."""
    marching, sweeping = Eikonal(grid, survey), SweepingEikonal(grid, survey)
    try:
        import skfmm  # noqa: F401
    except ImportError:
        marching = None
    if device != "cpu":
        _seconds(sweeping, models[:1].to(device), True)
    rows = []
    for size in sorted({1, batch}):
        chosen = models[:size]
        for backward in (False, True):
            row = {"models": size, "pass": "forward + backward" if backward else "forward",
                   "marching_s": None if marching is None else _seconds(marching, chosen, backward),
                   "sweeping_s": _seconds(sweeping, chosen, backward)}
            row["ratio"] = None if marching is None else row["sweeping_s"] / row["marching_s"]
            if device != "cpu":
                row["sweeping_device_s"] = _seconds(sweeping, chosen.to(device), backward)
                row["device_speedup"] = row["sweeping_s"] / row["sweeping_device_s"]
            rows.append(row)
    jacobian = {"models": 1, "pass": "jacobian (one model, sparse)"}
    for key, operator in (("marching_s", marching), ("sweeping_s", sweeping)):
        if operator is not None:
            began = time.perf_counter()
            operator.jacobian(models[0])
            jacobian[key] = time.perf_counter() - began
    jacobian["ratio"] = jacobian["sweeping_s"] / jacobian["marching_s"] if marching is not None else None
    return [*rows, jacobian]


def temperature(steps: int) -> list[dict]:
    """A slow matrix (0.07 m/ns) with a faster channel 1 m under a 7.9 m direct path."""
    grid = Grid2D((20, 80), 0.1)
    survey = Survey(np.array([[0.05, 0.5]]), np.array([[7.95, 0.5]]))
    matrix = 1 / 0.07e9
    factors = torch.linspace(0.6, 0.9, steps, dtype=torch.float64)  # channel slowness / matrix slowness
    models = torch.full((steps, *grid.shape), matrix, dtype=torch.float64)
    models[:, 14:16] = factors[:, None, None] * matrix
    direction = torch.zeros(steps, *grid.shape, dtype=torch.float64)
    direction[:, 14:16] = matrix
    crossing = float(factors.min()) * matrix * 0.1 * 1e9  # ns: the fastest cell's crossing time
    rows, exact = [], None
    for fraction in (0.0, 0.08, 0.16, 0.24):  # up to the bound, 0.25
        operator = SweepingEikonal(grid, survey, temperature=fraction * crossing * 1e-9)
        times = operator(models)[:, 0] * 1e9
        slope = operator.jvp(models, direction)[:, 0] * 1e9  # ns per unit of the slowness factor
        exact = times if exact is None else exact
        rows.append({"temperature_ns": fraction * crossing, "fraction_of_crossing": fraction,
                     "largest_shift_ns": float((times - exact).abs().max()),
                     "largest_slope_jump": float(slope.diff().abs().max()),
                     "slope_before_after": [float(slope[0]), float(slope[-1])],
                     "factor_step": float(factors[1] - factors[0])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=3, help="decoder-sample models for the accuracy")
    parser.add_argument("--batch", type=int, default=10, help="models of the batched timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=31, help="slowness steps across the switch of arrivals")
    parser.add_argument("--quick", action="store_true", help="a small panel, 1 model, 5 steps: checks the script")
    parser.add_argument("--name", default="sweeping_eikonal")
    parser.add_argument("--device", default="cpu", help="also time the sweeping there (e.g. cuda)")
    parser.add_argument("--speed-only", action="store_true", help="only the timing (a GPU machine without "
                        "scikit-fmm)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.batch, args.steps = 1, 1, 5
        grid, survey = Grid2D((40, 20), 0.1), Survey.crosshole(0.0, 1.9, np.array([0.5, 2.0, 3.5]))
        models = torch.full((1, *grid.shape), 1 / 0.07e9, dtype=torch.float64)
        models[:, 10:20] = 1 / 0.08e9
    else:
        grid, survey = Grid2D.crosshole(), Survey.crosshole()
        models = _models(max(args.models, args.batch), 5000 + args.seed)
    payload = {"args": vars(args), "threads": torch.get_num_threads()}
    if not args.speed_only:
        payload["accuracy"] = accuracy(models[:args.models], grid, survey)
        print("traveltime errors against scikit-fmm on 4 × 4 nodes per cell (relative):")
        print_table(payload["accuracy"], [("operator", "operator", ""), ("median", "median", ".5f"),
                                          ("p95", "95 %", ".5f"), ("max", "max", ".5f")])
        payload["derivatives"] = derivatives(args.seed)
        print("\nexact derivative against central finite differences (check_forward):")
        print_table(payload["derivatives"], [("operator", "operator", ""), ("fd_error", "FD gap", ".2e"),
                                             ("dot_test", "dot test", ".1e")])
    payload["speed"] = speed(models, grid, survey, args.batch, args.device)
    print(f"\nseconds on {torch.get_num_threads()} CPU thread(s), side by side:")
    columns = [("models", "models", "d"), ("pass", "pass", ""), ("marching_s", "marching", ".2f"),
               ("sweeping_s", "sweeping", ".2f"), ("ratio", "ratio", ".1f")]
    if args.device != "cpu":
        columns += [("sweeping_device_s", f"sweeping on {args.device}", ".3f"), ("device_speedup", "speed-up", ".1f")]
    print_table(payload["speed"], columns)
    if args.speed_only:
        write_json(args.name, payload)
        return
    payload["temperature"] = temperature(args.steps)
    print("\ntemperature on a two-path model (switch of first arrivals):")
    print_table(payload["temperature"], [("temperature_ns", "τ (ns)", ".3f"),
                                         ("fraction_of_crossing", "τ / s h", ".2f"),
                                         ("largest_shift_ns", "shift (ns)", ".3f"),
                                         ("largest_slope_jump", "slope jump (ns)", ".1f")])
    write_json(args.name, payload)


if __name__ == "__main__":
    main()
