"""Inversion methods behind one interface: ``fit(problem)`` then ``solve(problem, observed)``."""

from __future__ import annotations

from typing import Any

from .._registry import Registry
from .._typing import PathType
from ._learned import EnsembleMLP, LearnedSolver, NetworkConfig
from .base import ACCEPTANCE, Solutions, Solver
from .callbacks import Callback, EarlyStopping, Monitor, ProgressBar, RunInfo
from .encoder_decoder import (
    EncoderDecoder,
    EncoderDecoderConfig,
    InverseMisfit,
    InverseMisfitConfig,
    Tandem,
    TandemConfig,
)
from .latent_sgd import LatentSGD, expected_latent_norm
from .mcmc import LatentMCMC, LatentMCMCConfig
from .neural_adjoint import NeuralAdjoint, NeuralAdjointConfig
from .refine import RefineConfig, refine_models
from .rml import Refill, RefillConfig, rml_samples
from .schedule import LatentSGDConfig, Stage

__all__ = [
    "ACCEPTANCE",
    "SOLVERS",
    "Callback",
    "EarlyStopping",
    "EncoderDecoder",
    "EncoderDecoderConfig",
    "EnsembleMLP",
    "InverseMisfit",
    "InverseMisfitConfig",
    "LatentMCMC",
    "LatentMCMCConfig",
    "LatentSGD",
    "LatentSGDConfig",
    "LearnedSolver",
    "Monitor",
    "NetworkConfig",
    "NeuralAdjoint",
    "NeuralAdjointConfig",
    "ProgressBar",
    "Refill",
    "RefillConfig",
    "RefineConfig",
    "RunInfo",
    "Solutions",
    "Solver",
    "Stage",
    "Tandem",
    "TandemConfig",
    "expected_latent_norm",
    "load_solver",
    "refine_models",
    "rml_samples",
    "solver",
]

SOLVERS = Registry("geoinv.solvers", "solver")


def solver(name: str, config: Any = None, **overrides: Any) -> Solver:
    """Build a solver by its registered name, e.g. ``solver("latent-sgd", epochs=30)``."""
    return SOLVERS.get(name)(config, **overrides)


def load_solver(path: PathType) -> LearnedSolver:
    """Load any fitted learned solver saved with ``solver.save(path)``."""
    return LearnedSolver.load(path)
