"""Beyond the manifold: refine the best decoded models cell by cell, stopped by the discrepancy principle.

A prior cannot represent every truth (a held-out training-image crop is not a
decoder output), so a latent search stops at the prior's representation
error. This optional final stage lets the model itself move, starting from
the best decoded candidates, while a penalty keeps it near the decoded model
and binary-like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from .base import ACCEPTANCE, Solutions

__all__ = ["RefineConfig", "refine_models"]


@dataclass(frozen=True)
class RefineConfig:
    """Settings of :func:`refine_models`.

    Parameters
    ----------
    n_models : int
        Best candidates refined per data set.
    steps : int
        Most Adam steps (on the facies logits).
    step_size : float
        Adam learning rate on the logits ``u``, ``m = sigmoid(u)``.
    anchor_weight : float
        Weight α of ``α Σ (m − m_decoded)²`` (cells), keeping the model near the prior's.
    binary_weight : float
        Weight β of ``β Σ m (1 − m)``, keeping it binary-like.
    target : float
        Discrepancy principle: a model stops changing once its normalised RMSE is ≤ this
        (1 = fits to the noise; lower values overfit it).
    """

    n_models: int = 5
    steps: int = 400
    step_size: float = 0.05
    anchor_weight: float = 1.0
    binary_weight: float = 0.05
    target: float = 1.0

    def __post_init__(self) -> None:
        if self.n_models < 1 or self.steps < 1:
            raise ConfigError("n_models and steps must be >= 1")
        if not (0 < self.step_size < math.inf and 0 < self.target < math.inf):
            raise ConfigError("step_size and target must be finite and > 0")
        if min(self.anchor_weight, self.binary_weight) < 0:
            raise ConfigError("anchor_weight and binary_weight must be >= 0")


def refine_models(problem: InverseProblem, solutions: Solutions, config: RefineConfig | None = None
                  ) -> dict[str, torch.Tensor]:
    """Refine the best decoded models of ``solutions`` beyond the prior's manifold.

    Parameters
    ----------
    problem : InverseProblem
        A problem with ``model_forward`` (latent tomography has it) and a noise level.
    solutions : Solutions
        Candidates with models, sorted best first.
    config : RefineConfig, optional

    Returns
    -------
    dict
        ``models`` (S, K, nz, nx), ``misfit`` (S, K) RMSE in the data unit,
        ``normalised_misfit`` (S, K), ``steps`` (S, K) steps each model took
        before meeting the target (``config.steps`` if it never did).

    Notes
    -----
    Each model minimises ``χ²(m) + α Σ (m − m₀)² + β Σ m(1 − m)`` over logits;
    a model is frozen at the first step where its normalised RMSE is ≤ the
    target (the discrepancy principle), so it moves no further than the data ask.
    """
    config = config or RefineConfig()
    if problem.model_forward is None or problem.noise_std is None:
        raise ConfigError("refining models needs a problem with model_forward and noise_std (latent tomography)")
    if solutions.models is None:
        raise ConfigError("refining needs solutions with models")
    n_surveys, _ = solutions.misfit.shape
    keep = min(config.n_models, solutions.n_candidates)
    start = solutions.models[:, :keep].to(problem.device).float()
    shape = start.shape
    anchor = start.reshape(-1, *shape[2:])
    target = solutions_targets(problem, solutions, keep)
    noise = problem.noise_std.to(problem.device)
    logits = torch.logit(anchor.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=config.step_size)
    active = torch.ones(anchor.shape[0], dtype=torch.bool, device=anchor.device)
    steps = torch.full((anchor.shape[0],), config.steps, dtype=torch.long)
    for step in range(config.steps):
        models = torch.sigmoid(logits)
        chi = ((problem.model_forward(models) - target) / noise).pow(2)
        normalised = chi.mean(dim=1).detach().sqrt()
        newly_done = active & (normalised <= config.target)
        steps[newly_done.cpu()] = step
        active &= ~newly_done
        if not active.any():
            break
        objective = (chi.sum(dim=1) + config.anchor_weight * (models - anchor).pow(2).sum(dim=(1, 2))
                     + config.binary_weight * (models * (1 - models)).sum(dim=(1, 2)))
        optimizer.zero_grad(set_to_none=True)
        (objective * active).sum().backward()
        assert logits.grad is not None
        logits.grad[~active] = 0.0  # frozen models stay where the discrepancy principle stopped them
        optimizer.step()
    with torch.no_grad():
        models = torch.sigmoid(logits)
        misfit, normalised = problem.misfits(problem.model_forward(models), target)
    assert normalised is not None  # the problem has a noise level (checked above)
    return {"models": models.reshape(shape).cpu(), "misfit": misfit.reshape(n_surveys, keep).cpu(),
            "normalised_misfit": normalised.reshape(n_surveys, keep).cpu(),
            "steps": steps.reshape(n_surveys, keep), "accepted": (normalised <= ACCEPTANCE)
            .reshape(n_surveys, keep).cpu()}


def solutions_targets(problem: InverseProblem, solutions: Solutions, keep: int) -> torch.Tensor:
    """The observed data of each refined model's data set, ``(S·K, n_data)``."""
    observed = problem.targets().to(problem.device)
    if observed.shape[0] != solutions.n_surveys:
        raise ConfigError(f"the problem holds {observed.shape[0]} observed data sets, the solutions "
                          f"{solutions.n_surveys}; pass the problem the solutions were computed on")
    return observed.repeat_interleave(keep, dim=0)
