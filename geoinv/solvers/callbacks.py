"""Per-step callbacks of iterative solvers: progress bars, early stopping, custom monitors.

No solver owns a progress bar or a stopping rule: each iterative loop reports
its steps to a :class:`Monitor`, which calls the callbacks (in the spirit of
pylops' ``Solver.step/run`` callbacks and SimPEG's directives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from .._signals import check
from ..errors import ConfigError

__all__ = ["Callback", "EarlyStopping", "Monitor", "ProgressBar", "RunInfo"]


@dataclass
class RunInfo:
    """What a callback sees of a running loop.

    Attributes
    ----------
    description : str
        What runs (``'latent SGD'``, ``'NA surrogate'``).
    total_steps : int
        Planned steps (epochs for network training).
    step : int
        Steps done so far.
    metrics : dict of str to float
        The latest values the loop reported (e.g. ``best_rmse``, ``loss``).
    """

    description: str
    total_steps: int
    step: int = 0
    metrics: dict = field(default_factory=dict)


class Callback:
    """Base class: override any of the three hooks.

    ``on_step`` may return True to stop the loop after this step.
    """

    def on_start(self, run: RunInfo) -> None:
        """Called once before the first step."""

    def on_step(self, run: RunInfo) -> bool | None:
        """Called after every step; return True to stop."""

    def on_end(self, run: RunInfo) -> None:
        """Called once after the last step (also after an early stop or an error)."""


class ProgressBar(Callback):
    """A tqdm bar with the latest metrics as its postfix."""

    def __init__(self, show: tuple[str, ...] | None = None) -> None:
        self.show = show
        self._bar: Any = None

    def on_start(self, run: RunInfo) -> None:
        self._bar = tqdm(total=run.total_steps, desc=run.description, unit="step")

    def on_step(self, run: RunInfo) -> None:
        names = self.show or tuple(run.metrics)
        postfix = {name: f"{run.metrics[name]:.4g}" for name in names if name in run.metrics}
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)

    def on_end(self, run: RunInfo) -> None:
        if self._bar is not None:
            if self._bar.total != run.total_steps:  # the loop ended early by design (Monitor.shorten)
                self._bar.total = run.total_steps
                self._bar.refresh()
            self._bar.close()


class EarlyStopping(Callback):
    """Stop when a metric reaches a goal, or has not improved for ``patience`` steps.

    Parameters
    ----------
    monitor : str
        Metric name reported by the loop (e.g. ``'best_normalised_rmse'``).
    goal : float, optional
        Stop as soon as the metric is ≤ this value.
    patience : int, optional
        Stop after this many reports without an improvement by ``min_delta``.
    min_delta : float
        Smallest decrease that counts as an improvement.
    """

    def __init__(self, monitor: str, goal: float | None = None, patience: int | None = None,
                 min_delta: float = 0.0) -> None:
        if goal is None and patience is None:
            raise ConfigError("EarlyStopping needs a goal, a patience or both")
        if patience is not None and patience < 1:
            raise ConfigError(f"patience must be >= 1, got {patience}")
        self.monitor, self.goal, self.patience, self.min_delta = monitor, goal, patience, min_delta
        self.best = math.inf
        self.waited = 0
        self.stopped_at: int | None = None

    def on_start(self, run: RunInfo) -> None:
        self.best, self.waited, self.stopped_at = math.inf, 0, None

    def on_step(self, run: RunInfo) -> bool:
        if self.monitor not in run.metrics:
            return False
        value = float(run.metrics[self.monitor])
        stop = self.goal is not None and value <= self.goal
        if value < self.best - self.min_delta:
            self.best, self.waited = value, 0
        else:
            self.waited += 1
            stop = stop or (self.patience is not None and self.waited >= self.patience)
        if stop:
            self.stopped_at = run.step
        return stop


class Monitor:
    """Runs callbacks around one loop; ``monitor.step(**metrics)`` returns True to stop.

    Examples
    --------
    >>> with Monitor("demo", 3, []) as monitor:
    ...     for k in range(3):
    ...         if monitor.step(loss=1.0 / (k + 1)):
    ...             break
    """

    def __init__(self, description: str, total_steps: int, callbacks: Sequence[Callback]) -> None:
        self.run = RunInfo(description, int(total_steps))
        self.callbacks = list(callbacks)

    def __enter__(self) -> Monitor:
        for callback in self.callbacks:
            callback.on_start(self.run)
        return self

    def step(self, **metrics: Any) -> bool:
        check()  # an interruption swallowed inside a finalizer still stops the solve here
        self.run.step += 1
        self.run.metrics.update(metrics)
        stop = False
        for callback in self.callbacks:
            stop = bool(callback.on_step(self.run)) or stop
        return stop

    def shorten(self, steps: int) -> None:
        """Drop ``steps`` planned steps that the loop will not take (e.g. every start has converged)."""
        self.run.total_steps -= int(steps)

    def __exit__(self, *exc) -> None:
        for callback in self.callbacks:
            callback.on_end(self.run)
