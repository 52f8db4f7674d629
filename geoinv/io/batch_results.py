"""Batch results: the per-panel part files and the merged ``OUT.h5`` (format ``geoinv-batch-results/1``).

Each finished panel is written at once as ``OUT.h5.parts/<name>.h5`` (atomically);
``OUT.h5`` is rebuilt from the parts as one atomic file. The engine that decides
when is :mod:`geoinv.batch`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .._atomic import atomic_hdf5
from .._typing import PathType
from .._version import __version__
from ..errors import ConfigError, FileFormatError
from .campaign import Campaign, CampaignSurvey
from .hdf5 import unreadable, write_survey_group

__all__ = ["RESULTS_FORMAT", "check_existing_output", "done_parts", "merge_parts", "parts_folder",
           "read_batch_results", "write_part"]

RESULTS_FORMAT = "geoinv-batch-results/1"


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def write_part(folder: Path, panel: CampaignSurvey, record: dict, settings: dict, key: str,
                prior_hash: str) -> None:
    with atomic_hdf5(folder / f"{panel.name}.h5") as handle:
        _write_record(handle.create_group("result"), panel, record, settings, key, prior_hash)


def _write_record(root, panel: CampaignSurvey, record: dict, settings: dict, key: str,
                  prior_hash: str) -> None:
    attrs = {"status": record["status"], "error": record["error"], "worker": record["worker"],
             "wall_time": float(record["seconds"]), "input_hash": record["input_hash"], "settings_key": key,
             "settings": json.dumps(settings), "geoinv_version": __version__,
             "prior_hash": prior_hash, "metadata": json.dumps(panel.metadata, default=str)}
    for name, value in attrs.items():
        root.attrs[name] = value
    if record["status"] == "done":
        solutions = record["solutions"]
        solutions.write_group(root, "solutions")
        write_survey_group(root, panel.survey, record["grid"], "survey")
        root.create_dataset("best_model", data=solutions.models[0, 0].numpy(), compression="gzip")


def done_parts(folder: Path, campaign: Campaign, key: str) -> set[str]:
    """Panels whose part holds a finished result for these settings and this input."""
    import h5py

    done = set()
    for panel in campaign.surveys:
        part = folder / f"{panel.name}.h5"
        if not part.is_file():
            continue
        try:
            with h5py.File(part, "r") as handle:
                attrs = handle["result"].attrs
                if (attrs["status"] == "done" and attrs["settings_key"] == key
                        and attrs["input_hash"] == panel.input_hash()):
                    done.add(panel.name)
        except (OSError, KeyError):
            continue  # unreadable part: redo the panel
    return done


def _campaign_identity(campaign: Campaign) -> str:
    """What ties an output to its campaign: a hash of the campaign's panel names (readable or not)."""
    names = sorted([panel.name for panel in campaign.surveys] + list(campaign.problems))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


def check_existing_output(output: Path, campaign: Campaign, replace_output: bool) -> None:
    """Refuse to replace a file that is not this campaign's batch result, unless asked to."""
    import h5py

    if replace_output or not output.exists():
        return
    hint = "choose another output, or pass --replace-output (replace_output=True) to replace it"
    try:
        with h5py.File(output, "r") as handle:
            kind, identity = handle.attrs.get("format"), handle.attrs.get("campaign")
            panels = set(handle["results"]) if "results" in handle else set()
    except OSError as exc:
        raise ConfigError(f"{output.name} exists and is not a geoinv batch result ({exc}); {hint}") from exc
    if kind != RESULTS_FORMAT:
        raise ConfigError(f"{output.name} exists and is not a geoinv batch result (format {kind!r}); {hint}")
    names = {panel.name for panel in campaign.surveys} | set(campaign.problems)
    if (identity is not None and identity != _campaign_identity(campaign)) or not panels <= names:
        raise ConfigError(f"{output.name} holds the results of another campaign (panels "
                          f"{', '.join(sorted(panels - names)[:3]) or 'of other names'}); {hint}")


def merge_parts(output: Path, folder: Path, campaign: Campaign) -> None:
    """Rebuild ``output`` from the parts of this campaign's panels, atomically."""
    import h5py

    with atomic_hdf5(output) as handle:
        handle.attrs["format"] = RESULTS_FORMAT
        handle.attrs["geoinv_version"] = __version__
        handle.attrs["campaign"] = _campaign_identity(campaign)
        results = handle.create_group("results")
        for panel in campaign.surveys:
            part = folder / f"{panel.name}.h5"
            if part.is_file():
                with h5py.File(part, "r") as source:
                    source.copy(source["result"], results, name=panel.name)
        problems = handle.create_group("unreadable")
        for name, message in campaign.problems.items():
            problems.attrs[name] = message


def read_batch_results(path: PathType) -> dict[str, dict]:
    """Per panel: ``status``, ``error``, ``solutions`` (or None), ``wall_time``, ``worker`` of a batch output."""
    import h5py

    from ..solvers import Solutions

    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != RESULTS_FORMAT:
                raise FileFormatError(f"{path.name} is not a geoinv batch result (format {RESULTS_FORMAT})")
            entries = {name: dict(group.attrs) for name, group in handle["results"].items()}
    except OSError as exc:
        raise unreadable(path, exc) from exc
    for name, entry in entries.items():
        entry["solutions"] = (Solutions.from_hdf5(path, f"results/{name}/solutions")
                              if entry["status"] == "done" else None)
    return entries
