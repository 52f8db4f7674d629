"""How well a preconditioner fixed at the end of warm-up suits where the chains go next (issue 27).

Offline, from a run's saved chains (``sampling_study --save-draws``: ArviZ NetCDF): every chain's
preconditioner is set at its first recorded draw, as warm-up leaves it, and the step size ε is tuned
there (bisection on the chains' mean acceptance towards MALA's 0.574). Then, at later draws of the
same chains, MALA's acceptance probability and expected squared jump distance (ESJD, α·|z′ − z|² in
the units of the draws' covariance) are estimated from ``--proposals`` proposals per chain. Four
preconditioners: each chain's own Gauss-Newton covariance (``preconditioner='gauss-newton'``, the
default), the inverse of the chains' mean Gauss-Newton Hessian (``'pooled-gauss-newton'``), the
covariance of all the draws (what a long run would learn; ``'covariance'`` estimates it from a
warm-up window), and the pooled Gauss-Newton covariance widened to the draws' where they spread more
(:func:`geoinv.sampling.widened_factor`; ``'widened-gauss-newton'`` takes a warm-up window's draws).
Besides the ESJD over all directions, ``esjd_widest`` is α·((z′ − z)·v₀)²/λ₀ along the draws' widest
principal direction v₀ (variance λ₀), where long runs mix slowest.
Only forwards and gradients at given points: minutes, not a run.

The truth and noise are rebuilt as ``sampling_study`` made them (decoder sample ``--truth`` of
``--truths`` drawn with ``--truth-seed``, noise seed ``truth_seed + 1 + truth``, σ = 0.25 ns).

Run: ``python -m benchmarks preconditioner_drift --chains RUN.truthK.nc --truth-seed SEED --truth K``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _common import NOISE_NS, print_table, synthetic_problem, write_json

from geoinv import FaciesVelocity, Grid2D, LatentMCMC, Survey, forward
from geoinv.prior import default_vae
from geoinv.sampling import LatentPosterior, widened_factor
from geoinv.sampling.engine import MALA_TARGET_ACCEPTANCE, _gauss_newton_factor
from geoinv.sampling.moves import langevin_proposal

PRECONDITIONERS = ("gauss-newton", "pooled-gauss-newton", "draws' covariance", "widened pooled-gauss-newton")



def estimate(posterior, state, log_step, chol, precision, widest, generator, proposals: int):
    """Per chain: mean acceptance probability, ESJD and ESJD along ``widest`` = v₀/√λ₀ (in λ₀) over
    ``proposals`` MALA proposals from ``state``."""
    beta = torch.ones(1)
    acceptance, jump, along = [], [], []
    for _ in range(proposals):
        proposed, log_ratio = langevin_proposal(posterior.evaluate, state, beta, log_step, chol, generator)
        alpha = torch.nan_to_num(log_ratio.exp().clamp(max=1), nan=0.0)[0, 0].double()
        moved = (proposed.latent - state.latent)[0, 0].double()
        acceptance.append(alpha)
        jump.append(alpha * torch.einsum("ci,ij,cj->c", moved, precision, moved))
        along.append(alpha * (moved @ widest).pow(2))
    return (torch.stack(acceptance).mean(0).numpy(), torch.stack(jump).mean(0).numpy(),
            torch.stack(along).mean(0).numpy())


def tune(posterior, state, chol, precision, widest, generator, proposals: int) -> torch.Tensor:
    """log ε with the chains' mean acceptance at ``state`` near MALA's target (bisection)."""
    low, high = -4.0, 1.5
    for _ in range(8):
        middle = (low + high) / 2
        acceptance, *_ = estimate(posterior, state, torch.full((1, 1), middle), chol, precision, widest, generator,
                                  proposals)
        low, high = (middle, high) if acceptance.mean() >= MALA_TARGET_ACCEPTANCE else (low, middle)
    return torch.full((1, 1), (low + high) / 2)


def drift(problem, draws: np.ndarray, n_times: int, proposals: int, seed: int) -> list[dict]:
    """Rows of acceptance and ESJD per preconditioner and draw index; ``draws`` of shape (chains, draws, n)."""
    n_chains, n_draws, n = draws.shape
    posterior = LatentPosterior(problem, problem.observed.reshape(1, -1))
    generator = torch.Generator().manual_seed(seed)
    covariance = torch.as_tensor(np.cov(draws.reshape(-1, n).T))
    covariance += 1e-6 * covariance.diagonal().mean() * torch.eye(n, dtype=covariance.dtype)  # short quick runs
    precision = torch.linalg.inv(covariance)
    variance, vectors = torch.linalg.eigh(covariance)
    widest = vectors[:, -1] / variance[-1].sqrt()

    def state_at(index: int):
        return posterior.evaluate(torch.as_tensor(draws[:, index], dtype=torch.float32)[None, None])

    first = state_at(0)
    beta = torch.ones(1)
    pooled = _gauss_newton_factor(posterior, first, beta, pooled=True)
    factors = {"gauss-newton": _gauss_newton_factor(posterior, first, beta),
               "pooled-gauss-newton": pooled,
               "draws' covariance": torch.linalg.cholesky(covariance).float().expand(1, 1, n_chains, n, n),
               "widened pooled-gauss-newton": widened_factor(pooled, covariance)}
    times = np.unique(np.linspace(0, n_draws - 1, n_times).astype(int))
    states = {int(index): state_at(int(index)) for index in times}
    rows = []
    for name in PRECONDITIONERS:
        log_step = tune(posterior, first, factors[name], precision, widest, generator, max(proposals // 2, 1))
        for index, state in states.items():
            acceptance, jump, along = estimate(posterior, state, log_step, factors[name], precision, widest,
                                               generator, proposals)
            rows.append({"preconditioner": name, "draw": index, "step": float(log_step.exp()),
                         "acceptance": float(acceptance.mean()), "acceptance_min": float(acceptance.min()),
                         "acceptance_max": float(acceptance.max()), "acceptance_per_chain": acceptance.tolist(),
                         "esjd": float(jump.mean()), "esjd_widest": float(along.mean())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short straight-ray run of its own: checks the script")
    parser.add_argument("--chains", help="the run's chains (ArviZ NetCDF of sampling_study --save-draws)")
    parser.add_argument("--forward", default="eikonal")
    parser.add_argument("--truths", type=int, default=3)
    parser.add_argument("--truth-seed", type=int, default=9393)
    parser.add_argument("--truth", type=int, default=1)
    parser.add_argument("--times", type=int, default=5, help="draw indices, evenly spread, from the first on")
    parser.add_argument("--proposals", type=int, default=3, help="proposals per chain and draw index")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="preconditioner_drift")
    args = parser.parse_args()
    if args.quick:
        args.forward, args.truths, args.truth, args.times, args.proposals, args.workers = "straight-ray", 1, 0, 2, 1, 1
    elif args.chains is None:
        parser.error("--chains is required (a sampling_study run's NetCDF chains)")
    torch.set_num_threads(1)
    vae = default_vae().frozen()
    options = {"workers": args.workers} if args.workers > 1 else {}
    operator = forward(args.forward, grid=Grid2D.crosshole(), survey=Survey.crosshole(), **options)
    latent = vae.sample_latent(args.truths, torch.Generator().manual_seed(args.truth_seed))[args.truth]
    truth = vae.decode(latent[None])[0].detach()
    problem = synthetic_problem(operator, vae, FaciesVelocity(), truth, args.truth_seed + 1 + args.truth)
    if args.quick:
        spread = 0.1 * torch.randn(4, latent.numel(), generator=torch.Generator().manual_seed(args.seed))
        run = LatentMCMC(n_chains=4, n_temperatures=1, n_warmup=30, n_draws=60, n_samples=60, approach_steps=0,
                         seed=args.seed).solve(problem, initial=latent + spread)
        draws = np.moveaxis(run.history["chain_latent"][:, 0], 0, 1)  # (chains, draws, n)
    else:
        import arviz as az

        draws = az.from_netcdf(args.chains).posterior["latent"].values[:, :, 0]
    rows = drift(problem, draws, args.times, args.proposals, args.seed)
    print_table(rows, [("preconditioner", "preconditioner", "s"), ("draw", "draw", "d"), ("step", "step", ".3f"),
                       ("acceptance", "acceptance", ".2f"), ("acceptance_min", "min", ".2f"),
                       ("acceptance_max", "max", ".2f"), ("esjd", "ESJD", ".3f"),
                       ("esjd_widest", "along v₀", ".4f")])
    write_json(args.name, {"noise_ns": NOISE_NS, "rows": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
