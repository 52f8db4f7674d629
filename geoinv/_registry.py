"""Name → class registries backed by entry points (``geoinv.forwards``, ``geoinv.solvers``)."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from .errors import ConfigError


class Registry:
    """Builds objects by name from built-ins and installed entry points.

    Parameters
    ----------
    group : str
        Entry-point group searched for third-party plug-ins.
    builtins : dict
        ``name -> "module:attribute"`` of the objects geoinv itself provides.
    """

    def __init__(self, group: str, builtins: dict[str, str]) -> None:
        self.group = group
        self._builtins = dict(builtins)

    def names(self) -> list[str]:
        plugins = {ep.name for ep in entry_points(group=self.group)}
        return sorted(set(self._builtins) | plugins)

    def get(self, name: str):
        if name in self._builtins:
            module, attribute = self._builtins[name].split(":")
            return getattr(import_module(module), attribute)
        for ep in entry_points(group=self.group):
            if ep.name == name:
                return ep.load()
        raise ConfigError(f"unknown {self.group.split('.')[-1][:-1]} {name!r}; available: {', '.join(self.names())}")
