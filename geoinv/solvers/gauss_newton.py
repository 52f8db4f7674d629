"""Latent Gauss-Newton: pyGIMLi's inversion run in a prior's latent space, from many starts."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from .base import Solutions, Solver

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

    def solve(self, problem: InverseProblem, observed=None, n_candidates: int | None = None,
              generator: torch.Generator | None = None, initial: torch.Tensor | None = None) -> Solutions:
        """Gauss-Newton from ``n_starts`` prior draws per data set, or from ``initial``.

        ``initial`` (shape ``(R, n)`` or ``(S, R, n)``): explicit starts, e.g. the
        candidates of another solver to polish (``solutions.parameters``).
        """
        from ..interop.pygimli import LatentModelling, quiet_pygimli

        if problem.noise_std is None:
            raise ConfigError("latent-gauss-newton weights residuals by the noise: build the problem with "
                              "noise_std (or a survey with errors)")
        config = self.config
        started = time.perf_counter()
        targets = problem.targets(observed)
        n_surveys = targets.shape[0]
        if initial is None:
            n_starts = int(n_candidates or config.n_starts)
            generator = generator or torch.Generator().manual_seed(config.seed)
            starts = problem.sample_prior(n_surveys * n_starts, generator).reshape(n_surveys, n_starts, -1)
        else:
            starts = torch.as_tensor(initial, dtype=torch.float32).cpu()
            starts = starts.expand(n_surveys, *starts.shape) if starts.ndim == 2 else starts
            if starts.ndim != 3 or starts.shape[0] != n_surveys or starts.shape[2] != problem.n_parameters:
                raise ConfigError(f"initial must have shape (R, {problem.n_parameters}) or ({n_surveys}, R, "
                                  f"{problem.n_parameters}), got {tuple(torch.as_tensor(initial).shape)}")
            n_starts = starts.shape[1]
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
        history = {"chi2": chi2, "responses": calls[0], "jacobians": calls[1]}
        return self.finish(problem, candidates, targets, history, time.perf_counter() - started)

