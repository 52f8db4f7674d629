"""Posterior sampling in a latent space: the tempered target, MALA, HMC and swap moves, the engine, diagnostics.

The solver users call is :class:`geoinv.solvers.LatentMCMC` (``latent-mcmc``); this package holds its
parts, and the checks a user runs on its output (:func:`mixing`, :func:`inference_data`,
:mod:`geoinv.sampling.calibration`).
"""

from .calibration import interval_coverage, reliability_curve
from .diagnostics import (
    RHAT_LIMIT,
    MixingReport,
    MixingWarning,
    PrincipalMixing,
    inference_data,
    mixing,
    principal_mixing,
)
from .engine import (
    ChainRecord,
    adaptation_windows,
    approach,
    broad_directions,
    gauss_newton_hessian,
    independence_proposal,
    laplace_covariance,
    laplace_starts,
    outlier_chains,
    run_replica_exchange,
    temperature_ladder,
    widened_factor,
)
from .moves import (
    differential_evolution_step,
    hamiltonian_step,
    independence_step,
    langevin_proposal,
    line_step,
    local_metric_factor,
    mala_step,
    manifold_mala_step,
    random_walk_step,
    swap_step,
)
from .rto import RTOConfig, RTODraws, independence_chains, rto_draws
from .target import ChainState, LatentPosterior

__all__ = [
    "RHAT_LIMIT",
    "ChainRecord",
    "ChainState",
    "LatentPosterior",
    "MixingReport",
    "MixingWarning",
    "PrincipalMixing",
    "RTOConfig",
    "RTODraws",
    "adaptation_windows",
    "approach",
    "broad_directions",
    "differential_evolution_step",
    "gauss_newton_hessian",
    "hamiltonian_step",
    "independence_chains",
    "independence_proposal",
    "independence_step",
    "inference_data",
    "interval_coverage",
    "langevin_proposal",
    "laplace_covariance",
    "laplace_starts",
    "line_step",
    "local_metric_factor",
    "mala_step",
    "manifold_mala_step",
    "mixing",
    "outlier_chains",
    "principal_mixing",
    "random_walk_step",
    "reliability_curve",
    "rto_draws",
    "run_replica_exchange",
    "swap_step",
    "temperature_ladder",
    "widened_factor",
]
