"""Benchmark inverse problems: every solver runs on every task."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._registry import Registry
from .benchmarks import ballistics, quadratic, quadratic_reduced, robotic_arm, sine_wave

if TYPE_CHECKING:
    from ..problem import InverseProblem

__all__ = [
    "TASKS",
    "ballistics",
    "latent_tomography",
    "quadratic",
    "quadratic_reduced",
    "robotic_arm",
    "sine_wave",
    "task",
]


def latent_tomography(n_test: int = 1) -> InverseProblem:
    """The shipped VAE + straight-ray problem on the reference survey (data in ns, σ = 0.25 ns).

    Observed data: ``n_test`` decoder samples (seeded) with noise.
    """
    import torch

    from ..forward import StraightRay
    from ..grid import Grid2D
    from ..petrophysics import FaciesVelocity
    from ..prior import default_vae
    from ..problem import InverseProblem
    from ..survey import Survey

    vae = default_vae().frozen()
    problem = InverseProblem.latent_tomography(vae, FaciesVelocity(),
                                               StraightRay(Grid2D.crosshole(), Survey.crosshole()), noise_std=0.25)
    generator = torch.Generator().manual_seed(2024)
    truths = vae.sample_latent(n_test, generator)
    return problem.with_observed(problem.simulate(truths, 0.25, generator))


TASKS = Registry("geoinv.tasks", "task")


def task(name: str, **kwargs: Any) -> Any:
    """Build a benchmark problem by name (``geoinv.tasks.TASKS.names()`` lists them)."""
    return TASKS.get(name)(**kwargs)
