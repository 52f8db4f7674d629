"""Object-based generator of binary channelized training images.

Sinuous channels are drawn as bands around sine-wave centre lines (two
superposed harmonics, so meanders are irregular) and rasterized, one channel
at a time, until the target channel proportion is reached.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import ConfigError

__all__ = ["ChannelConfig", "channel_statistics", "channelized_image"]


@dataclass(frozen=True)
class ChannelConfig:
    """Parameters of the channel generator. Lengths are in pixels.

    Parameters
    ----------
    proportion : float
        Target fraction of channel pixels (facies 1), in (0, 1).
    direction_deg : float
        Main channel direction, degrees from the horizontal (x) axis.
    direction_spread_deg : float
        Standard deviation of each channel's direction around the main one.
    width_mean, width_std : float
        Channel width (perpendicular to its centre line).
    wavelength_min, wavelength_max : float
        Range of the meander wavelength.
    amplitude_min, amplitude_max : float
        Range of the meander amplitude, as a fraction of the wavelength.
    """

    proportion: float = 0.26
    direction_deg: float = 0.0
    direction_spread_deg: float = 8.0
    width_mean: float = 12.0
    width_std: float = 2.5
    wavelength_min: float = 150.0
    wavelength_max: float = 400.0
    amplitude_min: float = 0.08
    amplitude_max: float = 0.22

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if not math.isfinite(getattr(self, f.name))]
        if bad:
            raise ConfigError(f"{', '.join(bad)} must be finite numbers")
        if not 0.0 < self.proportion < 1.0:
            raise ConfigError(f"proportion must be in (0, 1), got {self.proportion}")
        if self.width_mean <= 0 or self.width_std < 0:
            raise ConfigError("width_mean must be > 0 and width_std >= 0")
        if not 0 < self.wavelength_min <= self.wavelength_max:
            raise ConfigError("need 0 < wavelength_min <= wavelength_max")
        if not 0 <= self.amplitude_min <= self.amplitude_max:
            raise ConfigError("need 0 <= amplitude_min <= amplitude_max")

    def to_dict(self) -> dict:
        return asdict(self)


def _draw_channel(
    u: np.ndarray, v: np.ndarray, rng: np.random.Generator, config: ChannelConfig, span: float
) -> np.ndarray:
    """Boolean mask of one channel, given pixel coordinates rotated to the main direction."""
    angle = math.radians(rng.normal(0.0, config.direction_spread_deg))
    along = u * math.cos(angle) + v * math.sin(angle)
    across = -u * math.sin(angle) + v * math.cos(angle)
    wavelength = rng.uniform(config.wavelength_min, config.wavelength_max)
    amplitude = wavelength * rng.uniform(config.amplitude_min, config.amplitude_max)
    phase, phase2 = rng.uniform(0, 2 * math.pi, size=2)
    k = 2 * math.pi / wavelength
    # A weaker second harmonic at an irrational ratio makes the meanders irregular.
    centre = rng.uniform(-span / 2, span / 2)
    centre_line = centre + amplitude * (
        np.sin(k * along + phase) + 0.35 * np.sin(2.7 * k * along + phase2)
    )
    slope = amplitude * k * (np.cos(k * along + phase) + 0.945 * np.cos(2.7 * k * along + phase2))
    width = max(2.0, rng.normal(config.width_mean, config.width_std))
    # Perpendicular distance to the centre line ≈ vertical offset · cos(atan(slope)).
    return np.abs(across - centre_line) <= 0.5 * width * np.sqrt(1.0 + slope**2)


#: the largest training image generated (about 3 GB of float32 work arrays)
MAX_IMAGE_PIXELS = 10**8


def channelized_image(
    shape: tuple[int, int] = (2500, 2500),
    config: ChannelConfig | None = None,
    seed: int | np.random.Generator | None = 0,
    max_channels: int = 10_000,
) -> np.ndarray:
    """Generate a binary channelized image (channel = 1, matrix = 0).

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` in pixels.
    config : ChannelConfig, optional
        Generator parameters; defaults to :class:`ChannelConfig()`.
    seed : int or numpy.random.Generator
        Seed for reproducibility.
    max_channels : int
        Safety limit on the number of channels drawn.

    Returns
    -------
    numpy.ndarray of uint8, shape ``shape``
    """
    config = config or ChannelConfig()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    rows, cols = (int(n) for n in shape)
    if rows < 2 or cols < 2:
        raise ConfigError(f"shape must be at least 2 × 2, got {shape}")
    if rows * cols > MAX_IMAGE_PIXELS:
        raise ConfigError(f"shape {shape} has {rows * cols:.3g} pixels, more than {MAX_IMAGE_PIXELS:.0e} "
                          "(geoinv.prior.channels.MAX_IMAGE_PIXELS; the default 2500 × 2500 has 6.25e6)")
    if config.width_mean > min(rows, cols) / 2:
        raise ConfigError(f"width_mean {config.width_mean:g} px is more than half the image's shorter side "
                          f"({min(rows, cols)} px): one channel would fill the image, not make a channelized "
                          f"one; use a width below {min(rows, cols) / 2:g} px or a larger image")
    z = np.arange(rows, dtype=np.float32)[:, None] - rows / 2
    x = np.arange(cols, dtype=np.float32)[None, :] - cols / 2
    theta = math.radians(config.direction_deg)
    u = x * math.cos(theta) - z * math.sin(theta)
    v = x * math.sin(theta) + z * math.cos(theta)
    span = float(np.hypot(rows, cols))
    image = np.zeros((rows, cols), dtype=bool)
    target = config.proportion * rows * cols
    count = 0
    for _ in range(max_channels):  # loop over channels (objects), not pixels
        image |= _draw_channel(u, v, rng, config, span)
        count = int(image.sum())
        if count >= target:
            break
    reached = count / (rows * cols)
    if abs(reached - config.proportion) > 0.5 * config.proportion + 0.02:
        raise ConfigError(f"the channels cover {reached:.2f} of the image, asked {config.proportion:g}: these "
                          f"settings (width_mean {config.width_mean:g} px on {rows} × {cols}) cannot make the "
                          "asked proportion; use narrower channels or a larger image")
    return image.astype(np.uint8)


def channel_statistics(image: np.ndarray) -> dict:
    """Channel proportion and mean vertical channel thickness (pixels) of a binary image."""
    binary = np.asarray(image) > 0.5
    proportion = float(binary.mean())
    # Vertical run lengths of channel pixels, column by column, vectorized.
    padded = np.pad(binary, ((1, 1), (0, 0))).astype(np.int8)
    edges = np.diff(padded, axis=0)
    starts = np.argwhere(edges.T == 1)
    ends = np.argwhere(edges.T == -1)
    runs = ends[:, 1] - starts[:, 1]
    return {
        "proportion": proportion,
        "mean_vertical_thickness": float(runs.mean()) if runs.size else 0.0,
        "shape": list(binary.shape),
    }
