"""Latent Gauss-Newton from many starts: pyGIMLi's inversion, or geoinv's batched engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from .base import Search, Solver
from .gauss_newton_step import GaussNewtonStep

__all__ = ["ENGINES", "LatentGaussNewton", "LatentGaussNewtonConfig"]

#: Gauss-Newton engines of :class:`LatentGaussNewton`
ENGINES = ("pygimli", "geoinv")


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
    engine : {'pygimli', 'geoinv'}
        ``'pygimli'`` (default): one ``pg.Inversion`` per start on
        :class:`~geoinv.interop.LatentModelling` (Gauss-Newton with pyGIMLi's line
        search). ``'geoinv'``: :class:`~geoinv.solvers.gauss_newton_step.GaussNewtonStep`,
        every start of every survey in one batch (torch, no pyGIMLi; Levenberg-Marquardt
        with a three-point line search, the engine of latent SGD's Gauss-Newton stages).
        Same objective and stopping rules; from far starts on a nonlinear manifold the
        two take different paths to different minima (``benchmarks/gn_engines.py``).
    seed : int
        Seed of the starts.
    progress : bool
        Progress bar over starts.
    """

    n_starts: int = 10
    max_iterations: int = 20
    lam: float = 1.0
    min_dphi: float = 1.0
    engine: str = "pygimli"
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
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}, got {self.engine!r}")


class LatentGaussNewton(Solver):
    """Damped Gauss-Newton in the latent space from many starts.

    Every start minimises ``‖(F(z) − d)/σ‖² + lam·‖u‖²`` (``u`` the standardised
    latent vector; lam = 1 is the MAP of a standard-normal prior) and stops at
    χ²/N ≤ 1, after ``max_iterations``, or when the objective falls by less
    than ``min_dphi`` percent. The Jacobian ∂F/∂z is the problem's
    (:meth:`InverseProblem.jacobian`): the sparse Fréchet kernel times the
    decoder's forward-mode Jacobian for latent tomography. ``engine`` says who
    iterates: one ``pg.Inversion`` per start on :class:`~geoinv.interop.LatentModelling`
    (default) or geoinv's batched Levenberg-Marquardt steps.

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
        """Gauss-Newton from each start (``initial=`` polishes another solver's candidates)."""
        if self.config.engine == "geoinv":
            return self._search_batched(problem, targets, starts)
        return self._search_pygimli(problem, targets, starts)

    def _search_batched(self, problem: InverseProblem, targets: torch.Tensor, starts: torch.Tensor) -> Search:
        """Every start of every survey as one batch of :class:`GaussNewtonStep` iterations."""
        config = self.config
        n_surveys, n_starts, n_parameters = starts.shape
        rows = targets.to(problem.device)[:, None, :].expand(-1, n_starts, -1).reshape(n_surveys * n_starts, -1)
        latent = starts.reshape(-1, n_parameters).to(problem.device, torch.float32).clone()
        step = GaussNewtonStep(problem, rows, "origin", config.lam, min_decrease=config.min_dphi)
        step.begin(latent)
        chi2 = np.full((config.max_iterations + 1, n_surveys * n_starts), np.nan)
        chi2[0] = step.normalised_chi2().cpu().numpy()
        jacobians = np.zeros(n_surveys * n_starts, dtype=np.int64)
        with self.monitor("latent Gauss-Newton", config.max_iterations) as monitor:
            for iteration in range(1, config.max_iterations + 1):
                active = step.active.cpu().numpy().copy()  # the step updates it in place
                rmse = step(latent)
                jacobians += active
                chi2[iteration, active] = step.normalised_chi2().cpu().numpy()[active]
                if monitor.step(rmse=float(rmse.min())) or step.finished:
                    break
        chi2 = chi2.reshape(-1, n_surveys, n_starts)
        return Search(latent.reshape(n_surveys, n_starts, n_parameters).cpu(),
                      {"chi2": chi2, "jacobians": jacobians.reshape(n_surveys, n_starts)})

    def _search_pygimli(self, problem: InverseProblem, targets: torch.Tensor, starts: torch.Tensor) -> Search:
        """One ``pg.Inversion`` per start, one after another."""
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

