"""Latent Gauss-Newton: pyGIMLi's inversion run in a prior's latent space, from many starts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from .base import Search, Solver

__all__ = ["LatentGaussNewton", "LatentGaussNewtonConfig"]


@dataclass
class LatentGaussNewtonConfig:
    """Settings of :class:`LatentGaussNewton`.

    Attributes
    ----------
    n_starts : int
        Starts per observed data set, drawn from the prior.
    max_iterations : int
        Gauss-Newton iterations per start (pyGIMLi's ``maxIter``); each costs
        one Jacobian ∂F/∂z and a line search.
    lam : float
        Weight of the latent prior ``‖u‖²`` (pyGIMLi's ``lam`` with ``cType=0``);
        1 is the MAP of the standard-normal latent prior.
    min_dphi : float
        Stop a start when the objective falls by less than this many percent
        in an iteration (pyGIMLi's ``dPhi``).
    seed : int
        Seed of the starts.
    progress : bool
        Progress bar over starts.
    """

    n_starts: int = 10
    max_iterations: int = 20
    lam: float = 1.0
    min_dphi: float = 1.0
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for name in ("n_starts", "max_iterations"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not (np.isfinite(self.lam) and self.lam >= 0):
            raise ConfigError(f"lam must be finite and >= 0, got {self.lam!r}")
        if not (np.isfinite(self.min_dphi) and self.min_dphi >= 0):
            raise ConfigError(f"min_dphi must be a percentage >= 0, got {self.min_dphi!r}")


class LatentGaussNewton(Solver):
    """Gauss-Newton in the latent space, by ``pg.Inversion`` on :func:`~geoinv.interop.LatentModelling`.

    Each start is one pyGIMLi inversion of the standardised residuals
    ``(F(x) − d)/σ`` with a damping ``lam·‖u‖²`` on the standardised latent
    vector (``cType=0``, linear model transform), stopped at χ² ≤ 1, after
    ``max_iterations`` or when the objective stalls. The Jacobian ∂F/∂z is
    the problem's (:meth:`InverseProblem.jacobian`): the sparse Fréchet
    kernel times the decoder's forward-mode Jacobian for latent tomography.

    Notes
    -----
    Gauss-Newton finds the nearest local minimum: on a decoder's manifold,
    many starts and the acceptance rule tell a stuck start from a good one.
    Needs a noise level (the residuals are weighted by it).
    """

    name = "latent-gauss-newton"
    config_class = LatentGaussNewtonConfig

    def check_problem(self, problem: InverseProblem) -> None:
        if problem.noise_std is None:
            raise ConfigError("latent-gauss-newton weights residuals by the noise: build the problem with "
                              "noise_std (or a survey with errors)")

    def search(self, problem: InverseProblem, targets: torch.Tensor, starts: torch.Tensor,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """pyGIMLi's Gauss-Newton from each start (``initial=`` polishes another solver's candidates)."""
        from ..interop.pygimli import LatentModelling, quiet_pygimli

        config = self.config
        n_surveys, n_starts = starts.shape[:2]
        candidates = torch.empty(n_surveys, n_starts, problem.n_parameters)
        chi2 = np.full((config.max_iterations + 1, n_surveys, n_starts), np.nan)
        calls = np.zeros((2, n_surveys, n_starts), dtype=np.int64)
        with quiet_pygimli() as pg, self.monitor("latent Gauss-Newton", n_surveys * n_starts) as monitor:
            for s in range(n_surveys):
                for r in range(n_starts):
                    modelling = LatentModelling(problem, targets[s], problem.noise_std)
                    start = ((starts[s, r].double().cpu() - modelling.mean) / modelling.scale).numpy()
                    inversion = pg.Inversion(fop=modelling)
                    inversion.dataTrans = pg.trans.Trans()
                    model = inversion.run(np.ones(problem.n_data), np.ones(problem.n_data), startModel=start,
                                          lam=config.lam, maxIter=config.max_iterations, dPhi=config.min_dphi,
                                          cType=0, verbose=False)
                    candidates[s, r] = modelling.parameters(np.asarray(model))[0].float()
                    history = np.asarray(inversion.chi2History, dtype=float)[:config.max_iterations + 1]
                    chi2[:len(history), s, r] = history
                    calls[:, s, r] = modelling.calls["response"], modelling.calls["jacobian"]
                    if monitor.step(chi2=float(history[-1]), start=r):
                        break
        return Search(candidates, {"chi2": chi2, "responses": calls[0], "jacobians": calls[1]})

