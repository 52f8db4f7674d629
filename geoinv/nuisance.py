"""Unknowns of field picks besides the facies: the two facies velocities and a time-zero shift.

Field surveys never come with the facies velocities, and radar picks routinely
carry a constant time-zero offset. :class:`FieldUnknowns` appends them to the
latent vector, standardised so that each extra coordinate ``u`` has the prior
``N(0, 1)`` like the latent coordinates:

* ``v_channel = v⁰_channel · exp(σ_v · u_c)`` and ``v_matrix = v⁰_matrix · exp(σ_v · u_m)``:
  a log-normal prior around the start velocities, ``σ_v`` = ``velocity_log_std``;
* ``t₀ = σ_t · u_t`` (s): observed picks are ``t_true + t₀`` (a late trigger gives t₀ > 0);
  one for the survey, or one per borehole of the picks' transmitters (or
  receivers) with ``time_zero_by`` (each borehole's gathers taken with its own
  trigger), bound to the survey's picks by :meth:`FieldUnknowns.bound`.

Every latent solver then searches them with the latent vector, unchanged: the
prior is ``N(0, I)`` over all coordinates. :func:`start_velocities` estimates
the start from the picks' apparent velocities when the user gives none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ._typing import DataIndex
from .errors import ConfigError, SurveyError
from .petrophysics import FaciesVelocity
from .survey import Survey

__all__ = ["DISPLAY_UNITS", "TIME_ZERO_GROUPINGS", "FieldUnknowns", "display_unit", "start_velocities"]

#: how each unknown is shown: (factor from SI, unit)
DISPLAY_UNITS = {"channel_velocity": (1e-9, "m/ns"), "matrix_velocity": (1e-9, "m/ns"), "time_zero": (1e9, "ns")}
#: what one time-zero shift covers: the whole survey, or the picks of one transmitter (receiver) borehole
TIME_ZERO_GROUPINGS = ("survey", "source-borehole", "receiver-borehole")


def display_unit(name: str) -> tuple[float, str]:
    """(factor from SI, unit) in which an unknown is shown; ``time_zero_<k>`` as ``time_zero``."""
    return DISPLAY_UNITS["time_zero" if name.startswith("time_zero") else name]


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
        Estimate a time-zero shift of the picks.
    velocity_log_std : float
        Prior standard deviation of each log velocity (0.1: about ±20 % at 2 σ).
    time_zero_std : float
        Prior standard deviation of each time-zero shift in s (default 3 ns).
    time_zero_by : {'survey', 'source-borehole', 'receiver-borehole'}
        One shift for all picks (``time_zero``), or one per borehole of the
        picks' transmitters (receivers), named ``time_zero_0``, ``time_zero_1``, …
        from the smallest x (see :meth:`geoinv.Survey.borehole_of_picks`). With
        transmitters in one borehole only, a per-borehole shift is one shift.

    Examples
    --------
    >>> unknowns = FieldUnknowns(time_zero=True)
    >>> unknowns.names
    ('channel_velocity', 'matrix_velocity', 'time_zero')
    >>> one_hole = Survey.crosshole()  # transmitters in one borehole: one shift
    >>> FieldUnknowns(velocities=False, time_zero_by="source-borehole").bound(one_hole).names
    ('time_zero_0',)
    """

    velocities: bool = True
    time_zero: bool = True
    velocity_log_std: float = 0.1
    time_zero_std: float = 3e-9
    time_zero_by: str = "survey"
    #: borehole number of every pick (set by :meth:`bound`; None for one shift per survey)
    pick_groups: tuple[int, ...] | None = field(default=None, init=False, repr=False)

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
        if self.time_zero_by not in TIME_ZERO_GROUPINGS:
            raise ConfigError(f"time_zero_by must be one of {TIME_ZERO_GROUPINGS}, got {self.time_zero_by!r}")
        if self.time_zero_std > 1e-3:
            raise ConfigError(f"time_zero_std is in s; {self.time_zero_std} s is more than a millisecond. "
                              "Did you mean ns (e.g. 3e-9)?")

    def bound(self, survey: Survey) -> FieldUnknowns:
        """These unknowns for one survey's picks: per-borehole shifts know which pick is whose.

        Returns itself when there is one shift per survey (or none).
        """
        if not self.time_zero or self.time_zero_by == "survey":
            return self
        groups = survey.borehole_of_picks(self.time_zero_by.split("-")[0])
        bound = replace(self)
        object.__setattr__(bound, "pick_groups", tuple(int(group) for group in groups))
        return bound

    @property
    def n_time_zeros(self) -> int:
        """Number of time-zero shifts (0, 1, or one per borehole once :meth:`bound`)."""
        if not self.time_zero:
            return 0
        if self.time_zero_by == "survey":
            return 1
        if self.pick_groups is None:
            raise ConfigError(f"FieldUnknowns(time_zero_by={self.time_zero_by!r}) has one shift per borehole: "
                              "bind it to the survey first (unknowns.bound(survey); geoinv.build_problem does)")
        return max(self.pick_groups) + 1

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the extra coordinates, in order."""
        shifts = ("time_zero",) if self.time_zero_by == "survey" else \
            tuple(f"time_zero_{k}" for k in range(self.n_time_zeros))
        return (("channel_velocity", "matrix_velocity") if self.velocities else ()) + \
            (shifts if self.time_zero else ())

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

    def time_shift(self, extra: torch.Tensor, data_index: DataIndex = None) -> torch.Tensor | None:
        """Time-zero shift in s of each row's picks: ``(B, 1)`` for one shift per survey, else
        ``(B, n)`` over the picks ``data_index`` (default all); None when it is not estimated."""
        if not self.time_zero:
            return None
        shifts = self._time_zeros(extra)
        if self.pick_groups is None:
            return shifts
        groups = torch.as_tensor(self.pick_groups, device=extra.device)
        if data_index is not None:
            groups = groups[data_index] if isinstance(data_index, slice) else groups[torch.as_tensor(data_index)]
        return shifts[:, groups]

    def shift_jacobian(self, n_data: int) -> np.ndarray:
        """∂shift/∂(standardised time-zero coordinates) in s, ``(n_data, n_time_zeros)``."""
        groups = np.zeros(n_data, dtype=np.int64) if self.pick_groups is None else np.asarray(self.pick_groups)
        return self.time_zero_std * (groups[:, None] == np.arange(self.n_time_zeros)).astype(float)

    def _time_zeros(self, extra: torch.Tensor) -> torch.Tensor:
        """Each row's time-zero shifts in s, ``(B, n_time_zeros)``."""
        count = self.n_time_zeros
        return (self.time_zero_std * extra[:, extra.shape[1] - count:].clamp(-EXTRA_LIMIT, EXTRA_LIMIT)).to(extra.dtype)

    def values(self, extra: torch.Tensor, start: FaciesVelocity) -> dict[str, torch.Tensor]:
        """Physical values of extra coordinates ``(..., size)``: velocities in m/s, time zero in s."""
        flat = extra.reshape(-1, self.size).double()
        out = {}
        if self.velocities:
            channel, matrix = self.velocities_of(flat, start)
            out["channel_velocity"], out["matrix_velocity"] = channel, matrix
        if self.time_zero:
            shifts = self._time_zeros(flat)
            out.update({name: shifts[:, k] for k, name in enumerate(self.names[-self.n_time_zeros:])})
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
