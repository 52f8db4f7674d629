"""The Solver interface and the Solutions container every solver returns."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, is_dataclass, replace

import numpy as np
import torch

from .._atomic import atomic_path
from ..errors import ConfigError, FileFormatError
from ..problem import InverseProblem

__all__ = ["Solutions", "Solver"]

SOLUTIONS_FORMAT = "geoinv-solutions/1"


@dataclass
class Solutions:
    """Candidates of one solver run, sorted by misfit (best first) per survey.

    Attributes
    ----------
    parameters : torch.Tensor, shape (S, R, n_parameters)
        Candidate parameter vectors for each of S observed data sets.
    data : torch.Tensor, shape (S, R, n_data)
        Their re-simulated data (problem's data unit).
    misfit : torch.Tensor, shape (S, R)
        Full-data RMSE against the observed data (data unit).
    accepted : torch.Tensor of bool, shape (S, R)
        Candidates whose misfit is within the solver's acceptance threshold.
    models : torch.Tensor, optional, shape (S, R, ...)
        The models the candidates stand for (decoded facies for latent tomography).
    history : dict of numpy arrays
        Per-iteration records; arrays with a trailing ``(S, R)`` are per start,
        in the original (unsorted) start order, with ``order`` giving the sort.
    config : dict
        Solver name, settings and seed that produced the run.
    wall_time : float
        Seconds spent in ``solve``.
    """

    parameters: torch.Tensor
    data: torch.Tensor
    misfit: torch.Tensor
    accepted: torch.Tensor
    models: torch.Tensor | None = None
    history: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    wall_time: float = 0.0

    @property
    def n_surveys(self) -> int:
        return int(self.parameters.shape[0])

    @property
    def n_candidates(self) -> int:
        return int(self.parameters.shape[1])

    @property
    def best(self) -> torch.Tensor:
        """Best candidate per survey, shape ``(S, n_parameters)``."""
        return self.parameters[:, 0]

    @property
    def acceptance_rate(self) -> torch.Tensor:
        """Fraction of accepted candidates per survey, shape ``(S,)``."""
        return self.accepted.float().mean(dim=1)

    def summary(self) -> str:
        """A few lines for a terminal."""
        lines = []
        for s in range(self.n_surveys):
            misfit = self.misfit[s]
            lines.append(f"survey {s}: best misfit {misfit[0]:.4g}, median {misfit.median():.4g}, "
                         f"accepted {int(self.accepted[s].sum())}/{self.n_candidates}")
        lines.append(f"wall time {self.wall_time:.1f} s ({self.config.get('solver', '?')})")
        return "\n".join(lines)

    def to_hdf5(self, path, group: str = "solutions", mode: str = "a") -> None:
        """Write to ``path`` under ``group`` (atomically when the file is new or replaced)."""
        import h5py

        def write(handle) -> None:
            if group in handle:
                del handle[group]
            root = handle.create_group(group)
            root.attrs["format"] = SOLUTIONS_FORMAT
            root.attrs["config"] = json.dumps(self.config, default=str)
            root.attrs["wall_time"] = self.wall_time
            for name in ("parameters", "data", "misfit", "accepted", "models"):
                value = getattr(self, name)
                if value is not None:
                    root.create_dataset(name, data=value.detach().cpu().numpy(), compression="gzip")
            history = root.create_group("history")
            for key, value in self.history.items():
                history.create_dataset(key, data=np.asarray(value))

        if mode == "w" or not _exists(path):
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
                write(handle)
        else:
            with h5py.File(path, mode) as handle:
                write(handle)

    @classmethod
    def from_hdf5(cls, path, group: str = "solutions") -> Solutions:
        """Read what :meth:`to_hdf5` wrote."""
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                if group not in handle or handle[group].attrs.get("format") != SOLUTIONS_FORMAT:
                    raise FileFormatError(f"{path}: no geoinv solutions under '/{group}'")
                root = handle[group]
                tensors = {name: torch.as_tensor(root[name][()]) for name in
                           ("parameters", "data", "misfit", "accepted", "models") if name in root}
                history = {key: root["history"][key][()] for key in root["history"]}
                config = json.loads(root.attrs["config"])
                wall_time = float(root.attrs["wall_time"])
        except OSError as exc:
            raise FileFormatError(f"cannot read {path} as HDF5: {exc}") from exc
        return cls(**tensors, history=history, config=config, wall_time=wall_time)


def _exists(path) -> bool:
    from pathlib import Path

    return Path(path).exists()


class Solver(ABC):
    """Common interface of the inversion methods.

    ``fit(problem)`` trains what a learned solver needs (a no-op for
    optimisation-based ones); ``solve(problem, observed)`` returns
    :class:`Solutions`. Settings live in a dataclass ``self.config``.
    """

    #: registry name
    name: str = ""
    config_class: type = object

    def __init__(self, config=None, **overrides) -> None:
        if config is None:
            config = self.config_class()
        if not is_dataclass(config):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config)}")
        if overrides:
            try:
                config = replace(config, **overrides)
            except TypeError as exc:
                raise ConfigError(f"{type(self).__name__}: {exc}") from exc
        self.config = config

    def fit(self, problem: InverseProblem, **kwargs) -> Solver:
        """Prepare the solver for ``problem`` (nothing to do by default)."""
        return self

    @abstractmethod
    def solve(self, problem: InverseProblem, observed=None, n_candidates: int | None = None,
              generator: torch.Generator | None = None) -> Solutions:
        """Invert ``observed`` (default: ``problem.observed``)."""

    def describe(self) -> dict:
        return {"solver": self.name, **asdict(self.config)}
