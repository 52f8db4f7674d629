"""HDF5 campaigns: many crosshole panels in one file, each with its own geometry, picks and velocities.

Layout of a campaign file (``format = "geoinv-campaign/1"`` on the root)::

    /surveys/<name>/          a survey group (see geoinv.io.hdf5: sources, receivers,
                              pairs, traveltimes, errors, time_unit, grid/)
        attrs: petrophysics   JSON {"channel_velocity", "matrix_velocity", "unit", "interpolation"}
               metadata       JSON, free form (borehole names, date, …)

A file holding only today's single ``/survey`` group reads as a one-survey
campaign named ``survey``. Readers validate every survey and report which
one is bad; a bad survey does not hide the good ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._atomic import atomic_hdf5
from .._typing import PathType, VelocityRange
from .._validation import require_file
from ..errors import ConfigError, FileFormatError, GeoinvError
from ..grid import Grid2D
from ..petrophysics import FaciesVelocity
from ..survey import RADAR_VELOCITY_RANGE, Survey
from ..units import velocity_factor
from .hdf5 import attribute_text, read_survey_group, unreadable, write_survey_group

__all__ = ["CAMPAIGN_FORMAT", "Campaign", "CampaignSurvey", "read_campaign", "write_campaign"]

CAMPAIGN_FORMAT = "geoinv-campaign/1"


@dataclass
class CampaignSurvey:
    """One panel of a campaign.

    Attributes
    ----------
    name : str
        Its group name under ``/surveys``.
    survey : Survey
        Geometry, traveltimes (s) and errors (s).
    grid : Grid2D or None
        The panel's model grid (None: the reader's default).
    petrophysics : FaciesVelocity or None
        Facies velocities of this panel (None: the default).
    metadata : dict
        Free-form description.
    """

    name: str
    survey: Survey
    grid: Grid2D | None = None
    petrophysics: FaciesVelocity | None = None
    metadata: dict = field(default_factory=dict)

    def input_hash(self) -> str:
        """SHA-256 of everything that determines this panel's inversion input."""
        digest = hashlib.sha256()
        for name in ("sources", "receivers", "pairs", "traveltimes", "errors"):
            value = getattr(self.survey, name)
            digest.update(name.encode())
            if value is not None:
                digest.update(np.ascontiguousarray(value).tobytes())
        digest.update(json.dumps(None if self.grid is None else self.grid.to_dict()).encode())
        digest.update(json.dumps(_petrophysics_dict(self.petrophysics)).encode())
        return digest.hexdigest()


@dataclass
class Campaign:
    """The readable panels of a campaign file and the problems found in the others."""

    surveys: list[CampaignSurvey]
    problems: dict[str, str]

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.surveys]


def _petrophysics_dict(petrophysics: FaciesVelocity | None) -> dict | None:
    if petrophysics is None:
        return None
    return {"channel_velocity": petrophysics.channel_velocity, "matrix_velocity": petrophysics.matrix_velocity,
            "unit": "m/s", "interpolation": petrophysics.interpolation}


#: velocities (m/s) a panel's petrophysics may state: slower than any wave in rock, or faster than light,
#: means a unit mix-up (0.06 labelled m/s is 0.06 m/ns)
PHYSICAL_VELOCITY_RANGE = (10.0, 299_792_458.0)


def _petrophysics_from(text, label: str) -> FaciesVelocity | None:
    if text is None:
        return None
    try:
        values = json.loads(text)
        if "unit" not in values:
            raise FileFormatError(f"{label}: the petrophysics JSON has no 'unit'; add \"unit\": \"m/ns\" or "
                                  f"\"unit\": \"m/s\" (the values {text!r} cannot be read without it)")
        factor = velocity_factor(values["unit"], f"{label}: petrophysics unit")
        petrophysics = FaciesVelocity(float(values["channel_velocity"]), float(values["matrix_velocity"]),
                                      unit=values["unit"], interpolation=values.get("interpolation", "velocity"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise FileFormatError(f"{label}: attribute petrophysics must be JSON with channel_velocity, "
                              f"matrix_velocity and unit ('m/s' or 'm/ns'), got {text!r} ({exc})") from exc
    slowest, fastest = PHYSICAL_VELOCITY_RANGE
    for name in ("channel_velocity", "matrix_velocity"):
        velocity = getattr(petrophysics, name)
        if not slowest <= velocity <= fastest:
            raise FileFormatError(f"{label}: petrophysics {name} = {float(values[name]):g} {values['unit']} is "
                                  f"{velocity:.3g} m/s, outside {slowest:g}–{fastest:.4g} m/s (light in vacuum); "
                                  f"is the unit right? (factor {factor:g} to m/s)")
    return petrophysics


def write_campaign(path: PathType, surveys: list[CampaignSurvey], time_unit: str = "s") -> Path:
    """Write panels as a campaign file, atomically. Names must be unique and valid HDF5 names."""

    names = [entry.name for entry in surveys]
    if not surveys:
        raise ConfigError("a campaign needs at least one survey")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"survey names must be unique; repeated: {duplicates}")
    bad = [name for name in names if not name or "/" in name or name.startswith(".")]
    if bad:
        raise ConfigError(f"survey names must be non-empty, without '/' and not start with '.': {bad}")
    for entry in surveys:
        if entry.grid is not None:
            try:
                entry.survey.check_grid(entry.grid)
            except GeoinvError as exc:
                raise type(exc)(f"survey {entry.name!r}: {exc}") from exc
    path = Path(path)
    with atomic_hdf5(path) as handle:
        handle.attrs["format"] = CAMPAIGN_FORMAT
        group = handle.create_group("surveys")
        for entry in surveys:
            write_survey_group(group, entry.survey, entry.grid, entry.name, time_unit)
            root = group[entry.name]
            if entry.petrophysics is not None:
                root.attrs["petrophysics"] = json.dumps(_petrophysics_dict(entry.petrophysics))
            root.attrs["metadata"] = json.dumps(entry.metadata, default=str)
    return path


def read_campaign(path: PathType, velocity_range: VelocityRange = RADAR_VELOCITY_RANGE) -> Campaign:
    """Read every panel of a campaign file (or a single-survey file).

    Returns
    -------
    Campaign
        ``surveys``: the valid panels in file order; ``problems``: name → message
        for each panel that could not be read (missing dataset, NaN picks,
        sensors outside its grid, bad attributes, picks implying velocities
        outside ``velocity_range`` in m/s — see :meth:`Survey.check_plausible`).

    Raises
    ------
    FileFormatError
        The file is missing, not HDF5 (e.g. truncated), or holds neither
        ``/surveys`` nor ``/survey``.
    """
    import h5py

    path = Path(path)
    require_file(path, "campaign file", FileFormatError)
    surveys, problems = [], {}
    try:
        with h5py.File(path, "r") as handle:
            if "surveys" in handle:
                _check_format(handle, path)
                groups = [(name, handle["surveys"][name], f"{path.name}: survey {name!r}")
                          for name in handle["surveys"]]
            elif "survey" in handle:
                groups = [("survey", handle["survey"], f"{path.name}: '/survey'")]
            else:
                raise FileFormatError(f"{path.name}: neither '/surveys' (a campaign) nor '/survey' (one survey); "
                                      f"groups present: {list(handle)}")
            for name, root, label in groups:
                try:
                    surveys.append(_read_entry(name, root, label, velocity_range))
                except GeoinvError as exc:
                    problems[name] = str(exc)
                except (OSError, KeyError, ValueError, TypeError) as exc:  # damaged datasets inside a readable file
                    problems[name] = f"{label}: unreadable ({type(exc).__name__}: {exc})"
    except OSError as exc:
        raise unreadable(path, exc, " (truncated or not HDF5?)") from exc
    return Campaign(surveys, problems)


def _check_format(handle, path: Path) -> None:
    found = attribute_text(handle.attrs.get("format"))
    if found != CAMPAIGN_FORMAT:
        raise FileFormatError(f"{path.name}: root attribute format is {found!r}, not {CAMPAIGN_FORMAT!r}; "
                              "this is not a geoinv campaign file. If you wrote it yourself following "
                              f"geoinv.io.campaign, set attrs['format'] = {CAMPAIGN_FORMAT!r} on the root")


def _read_entry(name: str, root, label: str, velocity_range) -> CampaignSurvey:
    survey, grid = read_survey_group(root, label, velocity_range)
    if survey.traveltimes is None:
        raise FileFormatError(f"{label} holds no traveltimes to invert")
    petrophysics = _petrophysics_from(root.attrs.get("petrophysics"), label)
    try:
        metadata = json.loads(root.attrs.get("metadata", "{}"))
    except (TypeError, ValueError) as exc:
        raise FileFormatError(f"{label}: attribute metadata is not JSON ({exc})") from exc
    return CampaignSurvey(name, survey, grid, petrophysics, metadata if isinstance(metadata, dict) else {})
