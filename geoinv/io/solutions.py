"""The HDF5 layout of :class:`~geoinv.solvers.Solutions` (format ``geoinv-solutions/1``).

One group (default ``/solutions``): the candidate tensors as datasets, ``config`` (JSON) and
``wall_time`` as attributes, ``history/`` per-step records, ``posterior/`` the per-cell statistics of
the models (a sampler's draws, or the accepted candidates), ``refined/`` the models refined beyond the prior,
and ``unknowns/`` the field unknowns of each candidate (velocities in m/s, time zero in s), when estimated.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._atomic import atomic_hdf5
from .._typing import PathType
from ..errors import ConfigError, FileFormatError

if TYPE_CHECKING:
    from ..solvers.base import Solutions

__all__ = ["SOLUTIONS_FORMAT", "read_solutions", "write_solutions", "write_solutions_group"]

SOLUTIONS_FORMAT = "geoinv-solutions/1"
_TENSORS = ("parameters", "data", "misfit", "accepted", "models", "normalised_misfit")
#: the most bytes one solutions group may declare before it is read (a compressed dataset can declare
#: 10⁹ rows in a few kB); 100 surveys × 100 candidates of 10⁴-cell float32 models are 0.4 GB
MAX_BYTES = 4 << 30


def write_solutions(solutions: Solutions, path: PathType, group: str = "solutions", mode: str = "a") -> None:
    """Write ``solutions`` to ``path`` under ``group``, atomically.

    ``mode='a'`` keeps the file's other groups (a copy of it gets the new group
    and replaces it); ``'w'`` starts a new file.
    """

    if mode not in ("a", "w"):
        raise ConfigError(f"mode must be 'a' (add to the file) or 'w' (replace it), got {mode!r}")
    with atomic_hdf5(path, mode) as handle:
        write_solutions_group(solutions, handle, group)


def write_solutions_group(solutions: Solutions, handle: Any, group: str = "solutions") -> None:
    """Write into an open ``h5py.File`` (or group) under ``group``, replacing it."""
    if group in handle:
        del handle[group]
    root = handle.create_group(group)
    root.attrs["format"] = SOLUTIONS_FORMAT
    root.attrs["config"] = json.dumps(solutions.config, default=str)
    root.attrs["wall_time"] = solutions.wall_time
    for name in _TENSORS:
        value = getattr(solutions, name)
        if value is not None:
            root.create_dataset(name, data=value.detach().cpu().numpy(), compression="gzip")
    history = root.create_group("history")
    for key, value in solutions.history.items():
        history.create_dataset(key, data=np.asarray(value))
    if solutions.models is not None:
        posterior = root.create_group("posterior")
        posterior.attrs["description"] = ("per-cell statistics of the models: of a sampler's draws where "
                                          "from_sampler is true, else of the accepted candidates (of all "
                                          "candidates where from_accepted is false)")
        for key, value in solutions.posterior().items():
            posterior.create_dataset(key, data=value.numpy(), compression="gzip")
    if solutions.refined is not None:
        refined = root.create_group("refined")
        refined.attrs["description"] = "best candidates' models refined beyond the prior (discrepancy stop)"
        for key, value in solutions.refined.items():
            refined.create_dataset(key, data=torch.as_tensor(value).numpy(), compression="gzip")
    if solutions.unknowns:
        unknowns = root.create_group("unknowns")
        unknowns.attrs["description"] = "field unknowns per candidate (S, R): velocities in m/s, time zero in s"
        for key, value in solutions.unknowns.items():
            unknowns.create_dataset(key, data=torch.as_tensor(value).numpy())


def read_solutions(path: PathType, group: str = "solutions") -> Solutions:
    """The :class:`~geoinv.solvers.Solutions` that :func:`write_solutions` wrote."""
    import h5py

    from ..solvers.base import Solutions
    from .hdf5 import unreadable

    try:
        with h5py.File(path, "r") as handle:
            if group not in handle or handle[group].attrs.get("format") != SOLUTIONS_FORMAT:
                raise FileFormatError(f"{path}: no geoinv solutions under '/{group}'")
            root = handle[group]
            missing = [name for name in (*_TENSORS[:4], "history") if name not in root]
            missing += [name for name in ("config", "wall_time") if name not in root.attrs]
            if missing:
                raise FileFormatError(f"{path}: the solutions group '/{group}' lacks {missing} "
                                      "(an incomplete or foreign file); write it with Solutions.to_hdf5")
            _check_declared(path, group, root)
            tensors = {name: torch.as_tensor(root[name][()]) for name in _TENSORS if name in root}
            history = {key: root["history"][key][()] for key in root["history"]}
            config = json.loads(root.attrs["config"])
            wall_time = float(root.attrs["wall_time"])
            refined = ({key: torch.as_tensor(root["refined"][key][()]) for key in root["refined"]}
                       if "refined" in root else None)
            unknowns = ({key: torch.as_tensor(root["unknowns"][key][()]) for key in root["unknowns"]}
                        if "unknowns" in root else None)
    except OSError as exc:
        raise unreadable(path, exc) from exc
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"{path}: the solutions group '/{group}' is damaged ({type(exc).__name__}: "
                              f"{exc})") from exc
    return Solutions(**tensors, history=history, config=config, wall_time=wall_time, refined=refined,
                     unknowns=unknowns)


def _check_declared(path, group: str, root) -> None:
    """Refuse a group whose candidate tensors disagree on (surveys, candidates) or declare more than ``MAX_BYTES``."""
    import h5py

    read = [name for name in (*_TENSORS, "history", "refined", "unknowns") if name in root]
    datasets = [(name, node) for name, node in _walk(root, read) if isinstance(node, h5py.Dataset)]
    leading = root["misfit"].shape[:2] if isinstance(root["misfit"], h5py.Dataset) else None
    for name in _TENSORS:
        node = root.get(name)
        if isinstance(node, h5py.Dataset) and node.shape[:2] != leading:
            raise FileFormatError(f"{path}: '/{group}/{name}' has shape {node.shape}, but misfit's (surveys, "
                                  f"candidates) are {leading}: the file is damaged")
    total = sum(node.size * node.dtype.itemsize for _, node in datasets)
    if total > MAX_BYTES:
        largest = max(datasets, key=lambda item: item[1].size * item[1].dtype.itemsize)
        raise FileFormatError(f"{path}: the solutions group '/{group}' declares {total / 2**30:.1f} GiB "
                              f"(largest: '{largest[0]}', shape {largest[1].shape}), more than geoinv reads "
                              f"({MAX_BYTES / 2**30:.0f} GiB, geoinv.io.solutions.MAX_BYTES): the file is damaged, or "
                              "raise that limit if this machine has the memory")


def _walk(group, names, prefix: str = ""):
    """(path, node) of the members ``names`` of ``group`` and everything below them."""
    for name in names:
        node = group[name]
        yield prefix + name, node
        if hasattr(node, "keys"):
            yield from _walk(node, list(node.keys()), f"{prefix}{name}/")
