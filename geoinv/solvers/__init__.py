"""Inversion methods behind one interface: ``fit(problem)`` then ``solve(problem, observed)``."""

from __future__ import annotations

from .._registry import Registry
from .base import Solutions, Solver
from .latent_sgd import LatentSGD, LatentSGDConfig, expected_latent_norm

__all__ = ["SOLVERS", "LatentSGD", "LatentSGDConfig", "Solutions", "Solver", "expected_latent_norm", "solver"]

SOLVERS = Registry("geoinv.solvers", {
    "latent-sgd": "geoinv.solvers.latent_sgd:LatentSGD",
})


def solver(name: str, config=None, **overrides) -> Solver:
    """Build a solver by its registered name, e.g. ``solver("latent-sgd", epochs=30)``."""
    return SOLVERS.get(name)(config, **overrides)
