"""Maps from facies models (0 = matrix, 1 = channel) to velocity and slowness."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .errors import ConfigError
from .units import velocity_factor

__all__ = ["FaciesVelocity"]


class FaciesVelocity(nn.Module):
    """Differentiable facies → velocity/slowness map.

    ``v(m) = v_matrix + (v_channel − v_matrix)·m`` for ``interpolation='velocity'``
    (the reference: ``v = 0.06 + 0.02·(1 − m)`` m/ns), or linear in slowness for
    ``interpolation='slowness'``.

    Parameters
    ----------
    channel_velocity, matrix_velocity : float
        Velocities of the two facies in ``unit`` (default 0.06 and 0.08 m/ns).
    unit : {'m/ns', 'm/s'}
        Unit of the two velocities above.
    interpolation : {'velocity', 'slowness'}
        Which quantity varies linearly with the facies value.

    Notes
    -----
    ``forward(model)`` returns slowness in s/m, the input of every forward operator.
    """

    def __init__(self, channel_velocity: float = 0.06, matrix_velocity: float = 0.08,
                 unit: str = "m/ns", interpolation: str = "velocity") -> None:
        super().__init__()
        factor = velocity_factor(unit, "unit")
        if interpolation not in ("velocity", "slowness"):
            raise ConfigError(f"interpolation must be 'velocity' or 'slowness', got {interpolation!r}")
        for name, value in (("channel_velocity", channel_velocity), ("matrix_velocity", matrix_velocity)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"{name} must be a number in {unit}, got {value!r}")
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive finite velocity, got {value!r} {unit}")
        if channel_velocity == matrix_velocity:
            raise ConfigError(f"channel_velocity and matrix_velocity must differ (both {channel_velocity} {unit}): "
                              "without contrast traveltimes say nothing about the facies")
        self.channel_velocity = float(channel_velocity) * factor
        self.matrix_velocity = float(matrix_velocity) * factor
        self.interpolation = interpolation

    def velocity(self, model: torch.Tensor) -> torch.Tensor:
        """Velocity in m/s of facies values ``model`` (0 = matrix, 1 = channel)."""
        if self.interpolation == "velocity":
            return self.matrix_velocity + (self.channel_velocity - self.matrix_velocity) * model
        return 1.0 / self.slowness(model)

    def slowness(self, model: torch.Tensor) -> torch.Tensor:
        """Slowness in s/m of facies values ``model``.

        Raises
        ------
        ConfigError
            If a facies value is NaN or so far outside [0, 1] that its velocity
            is not positive (values slightly outside extrapolate linearly).
        """
        model = torch.as_tensor(model)
        if self.interpolation == "velocity":
            slowness = 1.0 / self.velocity(model)
        else:
            matrix, channel = 1.0 / self.matrix_velocity, 1.0 / self.channel_velocity
            slowness = matrix + (channel - matrix) * model
        with torch.no_grad():
            bad = ~(torch.isfinite(slowness) & (slowness > 0))
            if bad.any():
                first = tuple(int(i) for i in bad.nonzero()[0])
                raise ConfigError(
                    f"facies values must lie in [0, 1] (0 = matrix, 1 = channel); {int(bad.sum())} value(s) are NaN "
                    f"or so far outside that the velocity is not positive, first {float(model[first]):g} at index "
                    f"{first}. Clip or fix the model")
        return slowness

    def facies(self, slowness: torch.Tensor) -> torch.Tensor:
        """Facies values of slowness (s/m): the inverse of :meth:`slowness`, not clipped to [0, 1]."""
        slowness = torch.as_tensor(slowness)
        if self.interpolation == "velocity":
            return (1.0 / slowness - self.matrix_velocity) / (self.channel_velocity - self.matrix_velocity)
        matrix, channel = 1.0 / self.matrix_velocity, 1.0 / self.channel_velocity
        return (slowness - matrix) / (channel - matrix)

    def forward(self, model: torch.Tensor) -> torch.Tensor:
        return self.slowness(model)

    def extra_repr(self) -> str:
        return (f"channel={self.channel_velocity:.4g} m/s, matrix={self.matrix_velocity:.4g} m/s, "
                f"interpolation={self.interpolation!r}")
