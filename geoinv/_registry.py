"""Name → object registries fed by entry points only.

geoinv's own forwards, solvers, priors and tasks are entry points in
``setup.cfg`` exactly like a third-party plug-in's, so there is one source of
truth: what ``pip install`` registered. The CLI takes its choices from here.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError


class Registry:
    """Builds objects by name from the entry points of one group.

    Parameters
    ----------
    group : str
        Entry-point group, e.g. ``'geoinv.forwards'``.
    kind : str
        What one entry is, for messages (``'forward'``).

    Examples
    --------
    A plug-in package registers a forward operator in its own metadata::

        [options.entry_points]
        geoinv.forwards =
            my-forward = my_package.module:MyForward
    """

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind

    def _entry_points(self) -> dict:
        found = {ep.name: ep for ep in entry_points(group=self.group)}
        if not found:
            raise ConfigError(f"no {self.kind}s are registered under the entry-point group {self.group!r}: "
                              "geoinv is not installed as a package; run `pip install .` (or `pip install -e .`) "
                              "in the geoinv folder")
        return found

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entry_points())

    def get(self, name: str) -> Any:
        """The registered object (class or factory) called ``name``."""
        found = self._entry_points()
        if name not in found:
            raise ConfigError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(found))}")
        return found[name].load()

    def __contains__(self, name: str) -> bool:
        return name in self._entry_points()
