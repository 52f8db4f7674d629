"""Exceptions raised by geoinv.

Every error raised at a public boundary is a :class:`GeoinvError`, so a
script can catch everything geoinv rejects with one ``except`` clause.
Messages name the offending field and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "FileFormatError",
    "GeoinvError",
    "GeoinvWarning",
    "GridError",
    "SolverError",
    "SurveyError",
]


class GeoinvError(ValueError):
    """Base class of every error geoinv raises on bad input."""


class GridError(GeoinvError):
    """A grid definition or a model array does not fit its grid."""


class SurveyError(GeoinvError):
    """Sensor positions, pairs, traveltimes or their errors are invalid."""


class CheckpointError(GeoinvError):
    """A checkpoint file is corrupt or does not match what it is loaded into."""


class FileFormatError(GeoinvError):
    """A file cannot be read as the format it claims to be."""


class ConfigError(GeoinvError):
    """A solver, forward or training configuration value is invalid."""


class SolverError(ConfigError):
    """A solve went wrong on the way (e.g. NaN misfits): the message names the step and the setting to change."""


class GeoinvWarning(UserWarning):
    """Something geoinv accepted but a person should look at (e.g. a training image's polarity)."""
