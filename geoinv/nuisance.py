"""Unknowns of field picks besides the facies: the two facies velocities and a time-zero shift.

Field surveys never come with the facies velocities, and radar picks routinely
carry a constant time-zero offset. :class:`FieldUnknowns` appends them to the
latent vector, standardised so that each extra coordinate ``u`` has the prior
``N(0, 1)`` like the latent coordinates:

* ``v_channel = v⁰_channel · exp(σ_v · u_c)`` and ``v_matrix = v⁰_matrix · exp(σ_v · u_m)``:
  a log-normal prior around the start velocities, ``σ_v`` = ``velocity_log_std``;
* ``t₀ = σ_t · u_t`` (s): observed picks are ``t_true + t₀`` (a late trigger gives t₀ > 0).

Every latent solver then searches them with the latent vector, unchanged: the
prior is ``N(0, I)`` over all coordinates. :func:`start_velocities` estimates
the start from the picks' apparent velocities when the user gives none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError, SurveyError
from .petrophysics import FaciesVelocity
from .survey import Survey

__all__ = ["DISPLAY_UNITS", "FieldUnknowns", "start_velocities"]

#: how each unknown is shown: (factor from SI, unit)
DISPLAY_UNITS = {"channel_velocity": (1e-9, "m/ns"), "matrix_velocity": (1e-9, "m/ns"), "time_zero": (1e9, "ns")}
#: standardised unknowns are clipped to ±this many prior standard deviations in the forward, so that a
#: diverging step cannot make a velocity infinite (the prior term pulls a clipped coordinate back)
EXTRA_LIMIT = 6.0
#: percentiles of the apparent velocities taken for the channel (slow) and matrix (fast) starts
START_PERCENTILES = (5.0, 95.0)
#: starts are rounded to this step in log velocity (2.5 %), so that surveys of one site share a start and
#: with it the cached proposal network of their geometry (the prior around the start is 10 % wide)
START_LOG_STEP = 0.025


@dataclass(frozen=True)
class FieldUnknowns:
    """Which field unknowns to estimate with the latent vector, and their priors.

    Parameters
    ----------
    velocities : bool
        Estimate the channel and matrix velocities (log-normal around the start).
    time_zero : bool
        Estimate one time-zero shift for the whole survey.
    velocity_log_std : float
        Prior standard deviation of each log velocity (0.1: about ±20 % at 2 σ).
    time_zero_std : float
        Prior standard deviation of the time-zero shift in s (default 3 ns).

    Examples
    --------
    >>> unknowns = FieldUnknowns(time_zero=True)
    >>> unknowns.names
    ('channel_velocity', 'matrix_velocity', 'time_zero')
    """

    velocities: bool = True
    time_zero: bool = True
    velocity_log_std: float = 0.1
    time_zero_std: float = 3e-9

    def __post_init__(self) -> None:
        if not (self.velocities or self.time_zero):
            raise ConfigError("FieldUnknowns estimates nothing: set velocities=True or time_zero=True "
                              "(or pass no unknowns)")
        for name in ("velocity_log_std", "time_zero_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ConfigError(f"{name} must be a positive finite number, got {value!r}")
        if self.velocity_log_std > 1:
            raise ConfigError(f"velocity_log_std is the prior std of a log velocity; {self.velocity_log_std} "
                              "allows factors of e and more. Use <= 1 (0.1 ≈ 10 %)")
        if self.time_zero_std > 1e-3:
            raise ConfigError(f"time_zero_std is in s; {self.time_zero_std} s is more than a millisecond. "
                              "Did you mean ns (e.g. 3e-9)?")

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the extra coordinates, in order."""
        return (("channel_velocity", "matrix_velocity") if self.velocities else ()) + \
            (("time_zero",) if self.time_zero else ())

    @property
    def size(self) -> int:
        """Number of extra coordinates."""
        return len(self.names)

    def velocities_of(self, extra: torch.Tensor, start: FaciesVelocity) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel and matrix velocities (m/s), each ``(B,)``, of standardised extra coordinates ``(B, size)``."""
        channel = torch.full(extra.shape[:1], start.channel_velocity, dtype=extra.dtype, device=extra.device)
        matrix = torch.full_like(channel, start.matrix_velocity)
        if self.velocities:
            bounded = extra[:, :2].clamp(-EXTRA_LIMIT, EXTRA_LIMIT)
            channel = channel * torch.exp(self.velocity_log_std * bounded[:, 0])
            matrix = matrix * torch.exp(self.velocity_log_std * bounded[:, 1])
        return channel, matrix

    def slowness(self, models: torch.Tensor, extra: torch.Tensor, start: FaciesVelocity) -> torch.Tensor:
        """Slowness (s/m) of facies models ``(B, nz, nx)`` at each row's velocities (``start``'s interpolation)."""
        if not self.velocities:
            return start.slowness(models)
        channel, matrix = (value.reshape(-1, *([1] * (models.ndim - 1))).to(models.dtype)
                           for value in self.velocities_of(extra, start))
        if start.interpolation == "velocity":
            return 1.0 / (matrix + (channel - matrix) * models)
        return 1.0 / matrix + (1.0 / channel - 1.0 / matrix) * models

    def time_shift(self, extra: torch.Tensor) -> torch.Tensor | None:
        """Time-zero shift in s per row, ``(B, 1)``; None when it is not estimated."""
        return self._time_zero(extra)[:, None] if self.time_zero else None

    def _time_zero(self, extra: torch.Tensor) -> torch.Tensor:
        return (self.time_zero_std * extra[:, -1].clamp(-EXTRA_LIMIT, EXTRA_LIMIT)).to(extra.dtype)

    def values(self, extra: torch.Tensor, start: FaciesVelocity) -> dict[str, torch.Tensor]:
        """Physical values of extra coordinates ``(..., size)``: velocities in m/s, time zero in s."""
        flat = extra.reshape(-1, self.size).double()
        out = {}
        if self.velocities:
            channel, matrix = self.velocities_of(flat, start)
            out["channel_velocity"], out["matrix_velocity"] = channel, matrix
        if self.time_zero:
            out["time_zero"] = self._time_zero(flat)
        return {name: value.reshape(extra.shape[:-1]) for name, value in out.items()}


def start_velocities(survey: Survey, template: FaciesVelocity | None = None) -> FaciesVelocity:
    """Start velocities from a survey's picks: the 5th and 95th percentile of the apparent velocities.

    The slow end goes to the facies that is slower in ``template`` (default:
    channels slower than the matrix, as in the reference), the fast end to the other.
    Both are rounded to 2.5 % steps (:data:`START_LOG_STEP`), so that surveys with
    nearly the same picks get the same start (and share a cached proposal network).

    Parameters
    ----------
    survey : Survey
        Picks in s over straight distances in m.
    template : FaciesVelocity, optional
        Which facies is the slower one, and the interpolation kept.

    Returns
    -------
    FaciesVelocity
    """
    apparent = survey.apparent_velocities()
    if apparent.size < 2:
        raise SurveyError("start velocities need at least two picks with a time > 0 over a distance > 0")
    slow, fast = (float(np.exp(np.round(np.log(value) / START_LOG_STEP) * START_LOG_STEP))
                  for value in np.percentile(apparent, START_PERCENTILES))
    if not fast > slow:
        fast = slow * np.exp(2 * START_LOG_STEP)  # a homogeneous-looking survey still needs two facies
    template = template or FaciesVelocity()
    channel_slower = template.channel_velocity < template.matrix_velocity
    channel, matrix = (slow, fast) if channel_slower else (fast, slow)
    return FaciesVelocity(float(channel), float(matrix), unit="m/s", interpolation=template.interpolation)
