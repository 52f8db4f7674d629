"""Inverse networks trained through a forward: encoder-decoder, two-step (Tandem), re-simulation.

Seed 000 (Rivera, Pardo & Alberdi) and seed 001 (Tandem). Notation: ``G_θ`` the
inverse network (y → x), ``F_φ`` a surrogate of the forward ``F``.

- ``mode='joint'`` (L3): ``‖F_φ(x) − y‖ + ‖F_φ(G_θ(y)) − y‖``, both trained together.
- ``mode='two-step'`` (L4.1, L4.2): train ``F_φ`` on ``‖F_φ(x) − y‖``, freeze it,
  then train ``G_θ`` on ``‖F_φ(G_θ(y)) − y‖``. This is the Tandem model.
- ``mode='resimulation'`` (L2): ``‖F(G_θ(y)) − y‖`` through the true forward.

Options: the Hermite-type derivative term
``‖(F_φ(x+εv) − F_φ(x))/ε − ∂F/∂x(x)·v‖`` (derivatives from autograd of the
true forward), the smoothness term ``‖(F_φ(x+εv) − F_φ(x))/ε‖`` on a dense set
of prior draws (L3.1, for few forward samples), and the boundary loss on
``G_θ(y)``. Every norm is l1 or l2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import ConfigError
from ..problem import InverseProblem
from ._learned import LearnedSolver, NetworkConfig, boundary_loss, misfit_norm, mlp
from .base import Search

__all__ = [
    "EncoderDecoder",
    "EncoderDecoderConfig",
    "InverseMisfit",
    "InverseMisfitConfig",
    "Tandem",
    "TandemConfig",
]

_MODES = ("joint", "two-step", "resimulation")


@dataclass(frozen=True)
class EncoderDecoderConfig:
    """Settings of :class:`EncoderDecoder` (see the module docstring for the losses).

    Parameters
    ----------
    mode : {'joint', 'two-step', 'resimulation'}
        Which loss trains the inverse network.
    norm : {'l2', 'l1'}
        Norm of every loss term.
    forward, inverse : NetworkConfig
        The surrogate forward ``F_φ`` and the inverse ``G_θ``.
    hermite_weight, hermite_epsilon : float
        Weight of the derivative term, and its step ε in parameter units.
    smoothness_weight : float
        Weight of the smoothness term, evaluated on ``smoothness_points`` prior draws.
    boundary_weight : float
        Weight of the boundary loss on ``G_θ(y)`` (default 1; 0 gives the papers'
        losses exactly, but the joint loss then lets the surrogate "cheat" outside
        the training box: r_1 = 1.6 on the sine wave, measured here).
    device : str
        Where the networks train and run (``'cuda'`` on a GPU).
    n_train : int
        Training pairs drawn from the prior (tasks with a fixed set use theirs).
    """

    mode: str = "joint"
    norm: str = "l2"
    forward: NetworkConfig = field(default_factory=NetworkConfig)
    inverse: NetworkConfig = field(default_factory=NetworkConfig)
    hermite_weight: float = 0.0
    hermite_epsilon: float = 1.0
    smoothness_weight: float = 0.0
    smoothness_points: int = 1000
    boundary_weight: float = 1.0
    n_train: int = 10_000
    seed: int = 0
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.norm not in ("l1", "l2"):
            raise ConfigError(f"norm must be 'l1' or 'l2', got {self.norm!r}")
        if min(self.hermite_weight, self.smoothness_weight, self.boundary_weight) < 0:
            raise ConfigError("hermite_weight, smoothness_weight and boundary_weight must be >= 0")
        if self.hermite_epsilon <= 0 or self.smoothness_points < 1 or self.n_train < 1:
            raise ConfigError("hermite_epsilon must be > 0, smoothness_points and n_train >= 1")


@dataclass(frozen=True)
class TandemConfig(EncoderDecoderConfig):
    """Tandem (seed 001): two-step training, with the boundary loss on (weight 1)."""

    mode: str = "two-step"


class EncoderDecoder(LearnedSolver):
    """Inverse network ``G_θ`` trained through a (surrogate or true) forward; one candidate per target."""

    name = "encoder-decoder"
    takes_starts = False
    config_class = EncoderDecoderConfig

    def _build(self, n_parameters: int, n_data: int) -> None:
        if self.config.mode != "resimulation":
            self.networks["surrogate"] = mlp(n_parameters, n_data, self.config.forward.hidden)
        self.networks["inverse"] = mlp(n_data, n_parameters, self.config.inverse.hidden)

    # -- loss pieces ----------------------------------------------------------
    def _forward_loss(self, x, y, directional=None, directions=None, dense=None):
        config, surrogate = self.config, self.networks["surrogate"]
        loss = misfit_norm(surrogate(x) - y, config.norm).mean()
        epsilon = config.hermite_epsilon / self.scaler.x_range  # in scaled units, per parameter
        if config.hermite_weight > 0:
            step = epsilon * directions
            difference = (surrogate(x + step) - surrogate(x)) / (step.norm(dim=1, keepdim=True))
            loss = loss + config.hermite_weight * misfit_norm(difference - directional, config.norm).mean()
        if config.smoothness_weight > 0 and dense is not None:
            dense_x, dense_v = dense
            step = epsilon * dense_v
            difference = (surrogate(dense_x + step) - surrogate(dense_x)) / step.norm(dim=1, keepdim=True)
            loss = loss + config.smoothness_weight * misfit_norm(difference, config.norm).mean()
        return loss

    def _inverse_loss(self, problem, y):
        config = self.config
        estimate = self.networks["inverse"](y)
        if config.mode == "resimulation":
            predicted = self.scaler.y_in(problem.forward(self.scaler.x_out(estimate)).float())
        else:
            predicted = self.networks["surrogate"](estimate)
        loss = misfit_norm(predicted - y, config.norm).mean()
        if config.boundary_weight > 0:
            loss = loss + config.boundary_weight * boundary_loss(estimate).mean()
        return loss

    # -- training -------------------------------------------------------------
    def _derivative_data(self, problem, x_scaled, generator):
        """Unit directions (scaled space) and the true forward's directional derivatives along them."""
        directions = torch.randn(x_scaled.shape, generator=generator).to(x_scaled.device)
        directions = directions / directions.norm(dim=1, keepdim=True)
        x = self.scaler.x_out(x_scaled)
        tangent = directions * self.scaler.x_range
        _, derivative = torch.autograd.functional.jvp(lambda v: problem.forward(v).float(), (x,), (tangent,))
        return directions, derivative / self.scaler.y_std

    def _train(self, problem: InverseProblem, x, y, generator) -> dict:
        config = self.config
        assert self.scaler is not None  # fit() sets it before training
        inverse_targets = problem.inverse_targets
        y_inverse = y if inverse_targets is None else self.scaler.y_in(inverse_targets.float().to(self.device))
        history = {}
        if config.mode == "resimulation":
            history["inverse_loss"] = self._fit_network(
                self.networks["inverse"].parameters(), lambda yb: self._inverse_loss(problem, yb), (y_inverse,),
                config.inverse, generator, "G through true F")
            return history
        tensors, dense = (x, y), None
        if config.hermite_weight > 0:
            tensors = (x, y, *self._derivative_data(problem, x, generator)[::-1])
        if config.smoothness_weight > 0:
            dense_x = self.scaler.x_in(problem.sample_prior(config.smoothness_points, generator).float()
                                       .to(self.device))
            dense_v = torch.randn(dense_x.shape, generator=generator).to(self.device)
            dense = (dense_x, dense_v / dense_v.norm(dim=1, keepdim=True))

        def forward_loss(xb, yb, *derivative):
            directional, directions = derivative if derivative else (None, None)
            return self._forward_loss(xb, yb, directional, directions, dense)

        if config.mode == "two-step":
            history["forward_loss"] = self._fit_network(self.networks["surrogate"].parameters(), forward_loss,
                                                        tensors, config.forward, generator, "F_φ (step 1)")
            self.networks["surrogate"].requires_grad_(False)
            history["inverse_loss"] = self._fit_network(
                self.networks["inverse"].parameters(), lambda yb: self._inverse_loss(problem, yb), (y_inverse,),
                config.inverse, generator, "G_θ through frozen F_φ (step 2)")
            self.networks["surrogate"].requires_grad_(True)
            return history

        def joint_loss(xb, yb, *derivative):
            pick = torch.randint(0, y_inverse.shape[0], (xb.shape[0],), generator=generator).to(xb.device)
            return forward_loss(xb, yb, *derivative) + self._inverse_loss(problem, y_inverse[pick])

        history["joint_loss"] = self._fit_network(self.networks.parameters(), joint_loss, tensors, config.inverse,
                                                  generator, "F_φ and G_θ jointly")
        return history

    def search(self, problem: InverseProblem, target: torch.Tensor, starts: None,
               generator: torch.Generator, n_candidates: int | None) -> Search:
        """One candidate per target: ``G_θ(y)`` (``n_candidates`` is ignored)."""
        scaler = self._require_fitted()
        with torch.no_grad():
            scaled = scaler.y_in(target.float().to(self.device))
            estimate = scaler.x_out(self.networks["inverse"](scaled)).cpu()
        return Search(estimate[:, None, :], ranking="solver")


class Tandem(EncoderDecoder):
    """Tandem model (seed 001): frozen surrogate forward, inverse trained through it, boundary loss on."""

    name = "tandem"
    config_class = TandemConfig


@dataclass(frozen=True)
class InverseMisfitConfig:
    """Settings of :class:`InverseMisfit`: the inverse network and the norm (l1 or l2)."""

    inverse: NetworkConfig = field(default_factory=NetworkConfig)
    norm: str = "l2"
    n_train: int = 10_000
    seed: int = 0
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.norm not in ("l1", "l2"):
            raise ConfigError(f"norm must be 'l1' or 'l2', got {self.norm!r}")


class InverseMisfit(LearnedSolver):
    """Baseline ``‖G_θ(y) − x‖``: fails on non-injective problems, kept to show why.

    For y = x² its l2 minimiser is ``G(y) = 0`` (the mean of ±√y) and every value in
    [−√y, √y] minimises the l1 loss (seed 000, Theorem 1).
    """

    name = "inverse-misfit"
    config_class = InverseMisfitConfig

    def _build(self, n_parameters: int, n_data: int) -> None:
        self.networks["inverse"] = mlp(n_data, n_parameters, self.config.inverse.hidden)

    def _train(self, problem, x, y, generator) -> dict:
        inverse = self.networks["inverse"]

        def loss(xb, yb):
            return misfit_norm(inverse(yb) - xb, self.config.norm).mean()

        return {"inverse_loss": self._fit_network(inverse.parameters(), loss, (x, y), self.config.inverse, generator,
                                                  "G_θ on parameter misfit")}

    takes_starts = False
    search = EncoderDecoder.search
