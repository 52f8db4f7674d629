"""The generated index of committed benchmark results (the docs' Results page includes it).

Built from the JSON files themselves: what ran (the benchmark, its settings hash),
when, on which geoinv and commit, and whether the run log (``results/README.md``)
quotes it. Files written before results were stamped (geoinv 0.8) show a dash.
Standard library only, so the docs build can import it.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _row(path: Path, quoted: str) -> str:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:  # a damaged file is listed, not skipped
        return f"| `{path.name}` | unreadable: {type(error).__name__} | | | | | |"
    stamp = payload.get("environment", {}) if isinstance(payload, dict) else {}
    commit = (stamp.get("commit") or "–")[:9] + ("+dirty" if str(stamp.get("commit", "")).endswith("+dirty") else "")
    cells = [f"`{path.name}`", stamp.get("benchmark") or "–", (stamp.get("date") or "–")[:16],
             stamp.get("geoinv") or "–", commit, stamp.get("settings_hash") or "–",
             "yes" if path.name in quoted else "no"]
    return "| " + " | ".join(cells) + " |"


def results_index(folder: Path = RESULTS) -> str:
    """A Markdown table of every result JSON in ``folder`` (partial caches of running studies left out)."""
    readme = folder / "README.md"
    quoted = readme.read_text() if readme.exists() else ""
    paths = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".partial.json"))
    lines = [f"{len(paths)} result files in `benchmarks/results/`.", "",
             "| result | benchmark | date | geoinv | commit | settings hash | in the run log |",
             "|---|---|---|---|---|---|---|"]
    return "\n".join(lines + [_row(path, quoted) for path in paths]) + "\n"


def write_index(path: Path, folder: Path = RESULTS) -> Path:
    """Write :func:`results_index` to ``path`` (the docs build calls this)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_index(folder))
    return path
