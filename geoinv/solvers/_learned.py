"""Shared machinery of the learned solvers: networks, scaling, training loop, persistence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import atomic_torch_save
from .._typing import PathType
from ..errors import CheckpointError, ConfigError
from ..problem import InverseProblem
from .base import Solver

__all__ = ["EnsembleMLP", "LearnedSolver", "NetworkConfig", "boundary_loss", "misfit_norm", "mlp"]

SOLVER_FORMAT = "geoinv-solver/1"


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture and training of one network (surrogate forward or inverse).

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers of a fully connected network.
    epochs : int
        Passes over the training set.
    batch_size : int
        Samples per step.
    lr : float
        Initial Adam learning rate, halved when the epoch loss stops improving.
    lr_patience : int
        Epochs without improvement before the learning rate is halved.
    """

    hidden: tuple[int, ...] = (256, 256, 256)
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    lr_patience: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1 or self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("hidden widths, epochs and batch_size must be >= 1 and lr > 0")


def mlp(n_in: int, n_out: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Fully connected network with ReLU between layers."""
    widths = (n_in, *hidden)
    layers: list[nn.Module] = []
    for a, b in pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], n_out))


class EnsembleMLP(nn.Module):
    """``members`` fully connected networks of one architecture, evaluated as one batched product.

    Each layer holds every member's weights in one ``(members, n_in, n_out)``
    tensor, so all members run in one ``baddbmm`` per layer (batched on a GPU
    too). Members differ only by their initial weights (a deep ensemble); as
    their parameters are disjoint, one Adam over their mean loss trains each as
    it would alone (Adam ignores the 1/K scale up to its ε; the learning-rate
    schedule is shared).

    Parameters
    ----------
    n_in, n_out : int
        Input and output sizes.
    hidden : tuple of int
        Widths of the hidden layers (ReLU between layers).
    members : int
        Networks in the ensemble (>= 2).
    """

    def __init__(self, n_in: int, n_out: int, hidden: tuple[int, ...], members: int) -> None:
        super().__init__()
        if members < 2:
            raise ConfigError(f"an ensemble has >= 2 members, got {members}; use mlp() for one network")
        widths = (n_in, *hidden, n_out)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in pairwise(widths):
            bound = fan_in ** -0.5  # nn.Linear's default initialisation
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))

    @property
    def n_members(self) -> int:
        return self.weights[0].shape[0]

    def members(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every member's output, shape ``(members, *inputs.shape[:-1], n_out)``."""
        lead = inputs.shape[:-1]
        hidden = inputs.reshape(1, -1, inputs.shape[-1]).expand(self.n_members, -1, -1)
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            hidden = torch.baddbmm(bias, hidden, weight)
            if index < last:
                hidden = torch.relu(hidden)
        return hidden.reshape(self.n_members, *lead, hidden.shape[-1])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The members' mean output."""
        return self.members(inputs).mean(dim=0)


def surrogate_network(n_in: int, n_out: int, hidden: tuple[int, ...], members: int = 1) -> nn.Module:
    """One :func:`mlp` (``members=1``) or an :class:`EnsembleMLP`."""
    return mlp(n_in, n_out, hidden) if members == 1 else EnsembleMLP(n_in, n_out, hidden, members)


def member_outputs(network: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Outputs per member, ``(members, ..., n_out)``; one member for a plain network."""
    return network.members(inputs) if isinstance(network, EnsembleMLP) else network(inputs)[None]


def misfit_norm(residual: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample mean squared (``'l2'``) or absolute (``'l1'``) residual."""
    if norm == "l2":
        return residual.pow(2).mean(dim=-1)
    if norm == "l1":
        return residual.abs().mean(dim=-1)
    raise ConfigError(f"norm must be 'l1' or 'l2', got {norm!r}")


def boundary_loss(scaled_parameters: torch.Tensor) -> torch.Tensor:
    """``mean ReLU(|x − μ| − R/2)`` per sample, for parameters already scaled to ``(x − μ)/R``."""
    return torch.relu(scaled_parameters.abs() - 0.5).mean(dim=-1)


class Scaler(nn.Module):
    """Affine maps to the networks' working space: x → (x − μ)/R, y → (y − mean)/std.

    ``μ`` and ``R`` are the centre and width of the training parameters' box, so
    ``|x_scaled| ≤ 1/2`` is the region the networks saw (:func:`boundary_loss`).
    """

    x_mean: torch.Tensor
    x_range: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, n_parameters: int, n_data: int) -> None:
        super().__init__()
        for name, size in (("x_mean", n_parameters), ("x_range", n_parameters), ("y_mean", n_data),
                           ("y_std", n_data)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def fit(self, problem: InverseProblem, parameters: torch.Tensor, data: torch.Tensor) -> Scaler:
        """Centre and range of x from the training parameters' min/max; mean and std of y.

        The box ``[min, max]`` of the training data is where the networks were
        trained, hence the boundary loss's box (seed 001: ``μ_x``, ``R_x`` of the
        training data). A dimension without spread keeps the problem's prior range.
        """
        low, high = parameters.min(dim=0).values, parameters.max(dim=0).values
        spread = high - low
        prior_range = problem.prior_range.to(spread.device, spread.dtype)
        self.x_mean.copy_((low + high) / 2)
        self.x_range.copy_(torch.where(spread > 0, spread, prior_range).clamp_min(1e-12))
        self.y_mean.copy_(data.mean(dim=0))
        self.y_std.copy_(data.std(dim=0).clamp_min(1e-12) if data.shape[0] > 1 else torch.ones_like(self.y_std))
        return self

    def x_in(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_range

    def x_out(self, scaled: torch.Tensor) -> torch.Tensor:
        return scaled * self.x_range + self.x_mean

    def y_in(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std


class LearnedSolver(Solver):
    """A solver with networks trained in ``fit``; saves and loads its weights.

    Subclasses define ``_build(n_parameters, n_data)`` (create ``self.networks``)
    and ``_train(problem, x, y, generator)``.
    """

    def __init__(self, config: Any = None, callbacks: Sequence[Any] = (), **overrides: Any) -> None:
        super().__init__(config, callbacks, **overrides)
        self.networks = nn.ModuleDict()
        self.scaler: Scaler | None = None
        self.dims: tuple[int, int] | None = None
        self.history: dict = {}

    # -- training -------------------------------------------------------------
    def fit(self, problem: InverseProblem, generator: torch.Generator | None = None, **options: Any) -> LearnedSolver:
        """Train the solver's networks on ``(x, F(x))`` pairs of ``problem``."""
        if options:
            raise ConfigError(f"{self.name}.fit takes a problem and a generator, not {sorted(options)}")
        generator = generator or torch.Generator().manual_seed(self.config.seed)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights
            torch.manual_seed(self.config.seed)
            x, y = problem.training_set(self.config.n_train, generator)
            x, y = x.float().to(self.device), y.float().to(self.device)
            self.dims = (problem.n_parameters, problem.n_data)
            self.scaler = Scaler(*self.dims).to(self.device).fit(problem, x, y)
            self._build(*self.dims)
            self.networks.to(self.device)
        self.history = self._train(problem, self.scaler.x_in(x), self.scaler.y_in(y), generator)
        return self

    @property
    def device(self) -> torch.device:
        """Where the networks train and run (``config.device``)."""
        return torch.device(getattr(self.config, "device", "cpu"))

    @property
    def is_fitted(self) -> bool:
        return self.scaler is not None

    def predict_data(self, parameters: torch.Tensor) -> torch.Tensor:
        """The surrogate forward's data at ``parameters`` (raw data units), no gradient.

        Raises
        ------
        ConfigError
            If the solver is not fitted or has no surrogate forward network.
        """
        scaler = self._require_fitted()
        if "surrogate" not in self.networks:
            raise ConfigError(f"{self.name} has no surrogate forward network")
        with torch.no_grad():
            scaled = self.networks["surrogate"](scaler.x_in(torch.as_tensor(parameters).float().to(self.device)))
            return scaled * scaler.y_std + scaler.y_mean

    def _require_fitted(self) -> Scaler:
        """The fitted scaling (the solver is fitted when it has one)."""
        if self.scaler is None:
            raise ConfigError(f"{self.name}: call fit(problem) (or load a fitted solver) before solve()")
        return self.scaler

    def _build(self, n_parameters: int, n_data: int) -> None:
        raise NotImplementedError

    def _train(self, problem, x, y, generator) -> dict:
        raise NotImplementedError

    def _fit_network(self, parameters, loss_of_batch, tensors, network_config: NetworkConfig,
                     generator: torch.Generator, description: str) -> list[float]:
        """Adam over minibatches of ``tensors``; the learning rate halves on plateaus."""
        optimizer = torch.optim.Adam(parameters, lr=network_config.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                               patience=network_config.lr_patience)
        n = tensors[0].shape[0]
        history = []
        device = tensors[0].device
        with self.monitor(description, network_config.epochs) as monitor:
            for _ in range(network_config.epochs):
                order = torch.randperm(n, generator=generator).to(device)
                total = 0.0
                for start in range(0, n, network_config.batch_size):
                    index = order[start:start + network_config.batch_size]
                    loss = loss_of_batch(*(t[index] for t in tensors))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += loss.item() * len(index)
                history.append(total / n)
                scheduler.step(history[-1])
                if monitor.step(loss=history[-1]):
                    break
        return history

    # -- persistence ----------------------------------------------------------
    def save(self, path: PathType) -> None:
        """Write the fitted solver (config, scaling, weights) to ``path`` atomically."""
        scaler = self._require_fitted()
        assert self.dims is not None  # set with the scaler
        payload = {"format": SOLVER_FORMAT, "solver": self.name, "config": asdict(self.config),
                   "dims": list(self.dims), "scaler": scaler.state_dict(),
                   "networks": self.networks.state_dict(), "history": self.history}
        atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: PathType) -> LearnedSolver:
        """Rebuild a solver written by :meth:`save`."""
        path = Path(path)
        try:
            payload = torch.load(path, weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable solver file ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != SOLVER_FORMAT:
            raise CheckpointError(f"{path} is not a geoinv solver file")
        if payload["solver"] != cls.name and cls is not LearnedSolver:
            raise CheckpointError(f"{path} holds a {payload['solver']!r} solver, not {cls.name!r}")
        from . import SOLVERS

        solver_class = SOLVERS.get(payload["solver"])
        config = solver_class.config_class(**_tuples(payload["config"]))
        solver = solver_class(config)
        solver.dims = tuple(payload["dims"])
        solver.scaler = Scaler(*solver.dims)
        solver.scaler.load_state_dict(payload["scaler"])
        solver._build(*solver.dims)
        solver.networks.load_state_dict(payload["networks"])
        solver.networks.to(solver.device)
        solver.scaler.to(solver.device)
        solver.history = payload.get("history", {})
        return solver


def _tuples(config: dict) -> dict:
    """Config dicts from ``asdict`` carry nested dataclasses as dicts: rebuild them."""
    rebuilt: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and "hidden" in value:
            rebuilt[key] = NetworkConfig(**value)
        else:
            rebuilt[key] = tuple(value) if isinstance(value, list) else value
    return rebuilt
