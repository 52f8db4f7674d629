"""The classical baseline: pyGIMLi's smoothness-constrained traveltime inversion, behind geoinv's Solver."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from ..units import time_factor
from .base import Search, Solver

__all__ = ["PyGimliSmooth", "PyGimliSmoothConfig"]


@dataclass
class PyGimliSmoothConfig:
    """Settings of :class:`PyGimliSmooth` (pyGIMLi's ``TravelTimeManager.invert`` arguments).

    Attributes
    ----------
    lam : float
        Initial smoothness weight (pyGIMLi's ``lam``).
    lambda_factor : float
        ``lam`` is multiplied by this after every iteration (< 1 cools it), so
        the run stops near χ² = 1, the fit every method is compared at.
    max_iterations : int
        pyGIMLi's ``maxIter``.
    z_weight : float
        Weight of vertical against horizontal smoothness (``zWeight``).
    secondary_nodes : int
        Secondary nodes per cell edge of pyGIMLi's Dijkstra (``secNodes``; 2 as
        in ``TravelTimeManager``: its Jacobian takes ~15 s on the reference grid).
    velocity_margin : float
        Velocities are limited to ``[v_min / margin, v_max · margin]`` of the
        two facies (pyGIMLi's ``limits``).
    seed, progress : int, bool
        Unused by this deterministic method; kept for the common interface.
    """

    lam: float = 1000.0
    lambda_factor: float = 0.8
    max_iterations: int = 20
    z_weight: float = 1.0
    secondary_nodes: int = 2
    velocity_margin: float = 1.5
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if not (self.lam > 0 and 0 < self.lambda_factor <= 1 and self.z_weight > 0):
            raise ConfigError("lam and z_weight must be > 0 and lambda_factor in (0, 1]")
        if int(self.max_iterations) < 1 or int(self.secondary_nodes) < 0 or not self.velocity_margin >= 1:
            raise ConfigError("max_iterations must be >= 1, secondary_nodes >= 0, velocity_margin >= 1")


class PyGimliSmooth(Solver):
    """pyGIMLi's smoothness-constrained inversion (``TravelTimeManager``) on the problem's grid and data.

    The classical method users know, as a baseline beside the latent solvers:
    Dijkstra traveltimes, log-slowness model, first-order smoothness, started
    from a homogeneous model. Its candidate is the smooth model itself,
    expressed in facies units through the problem's petrophysics (one
    candidate per data set, not clipped); ``models`` holds it clipped to
    [0, 1]. Misfits are re-simulated with the problem's forward, so every
    solver is judged by the same operator (pyGIMLi's own χ² is in the history).

    Notes
    -----
    Needs a tomography problem (``problem.operator``, ``problem.petrophysics``),
    e.g. from :func:`geoinv.build_problem`. Deterministic: one candidate per
    data set whatever ``n_candidates`` asks.
    """

    name = "pygimli-smooth"
    config_class = PyGimliSmoothConfig
    model_space = True
    takes_starts = False

    def check_problem(self, problem: InverseProblem) -> None:
        if problem.operator is None or problem.petrophysics is None:
            raise ConfigError("pygimli-smooth inverts traveltime tomography problems (with an operator and "
                              "petrophysics, e.g. geoinv.build_problem); this problem has none")
        if problem.noise_std is None:
            raise ConfigError("pygimli-smooth needs the data errors: build the problem with noise_std")

    def search(self, problem: InverseProblem, targets: torch.Tensor, starts: None,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """One smoothness-regularised inversion per data set; its facies model is the candidate."""
        assert problem.operator is not None and problem.petrophysics is not None  # check_problem refused others
        grid, petrophysics = problem.operator.grid, problem.petrophysics
        facies, chi2 = [], []
        with self.monitor("pyGIMLi smoothness inversion", targets.shape[0]) as monitor:
            for target in targets:
                slowness, chi2_history = self._invert_one(problem, target)
                facies.append(petrophysics.facies(torch.from_numpy(slowness)).reshape(-1))
                chi2.append(chi2_history)
                if monitor.step(chi2=chi2_history[-1]):
                    break
        candidates = torch.stack(facies)[:, None, :].float()
        rows = max(len(h) for h in chi2)
        history = {"pygimli_chi2": np.array([np.pad(h, (0, rows - len(h)), constant_values=np.nan)
                                             for h in chi2]).T}

        def simulate(flat):
            return problem.model_forward(flat.reshape(-1, *grid.shape))

        def to_model(flat):
            return flat.reshape(-1, *grid.shape).clamp(0, 1)

        return Search(candidates, history, simulate=simulate, to_model=to_model)

    def _invert_one(self, problem: InverseProblem, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        from ..interop.pygimli import quiet_pygimli
        from ..io.pygimli import grid_to_mesh, model_from_mesh, survey_to_data_container

        config, operator, petrophysics = self.config, problem.operator, problem.petrophysics
        assert operator is not None and petrophysics is not None  # check_problem refused problems without
        seconds = time_factor(problem.data_unit or "s", "data_unit")
        times = target.double().cpu().numpy() * seconds
        assert problem.noise_std is not None  # check_problem refused problems without
        errors = problem.noise_std.double().cpu().numpy() * seconds * np.ones_like(times)
        data = survey_to_data_container(operator.survey.with_data(times, errors))
        velocities = (petrophysics.channel_velocity, petrophysics.matrix_velocity)
        limits = [min(velocities) / config.velocity_margin, max(velocities) * config.velocity_margin]
        with quiet_pygimli() as pg:
            manager = pg.physics.traveltime.TravelTimeManager(secNodes=config.secondary_nodes)
            velocity = manager.invert(data, mesh=grid_to_mesh(operator.grid), useGradient=False, lam=config.lam,
                                      lambdaFactor=config.lambda_factor, zWeight=config.z_weight,
                                      maxIter=config.max_iterations, limits=limits, verbose=False)
            velocity = model_from_mesh(np.asarray(velocity), operator.grid, manager.paraDomain)
            history = np.asarray(manager.inv.chi2History, dtype=float)
        return 1.0 / velocity, history
