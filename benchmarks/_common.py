"""Shared helpers of the benchmark scripts: synthetic cases, timing, tables, JSON output."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import geoinv
from geoinv import build_problem, ns_to_s

#: where benchmarks write their JSON and figures ($GEOINV_BENCHMARK_RESULTS for smoke runs)
RESULTS = Path(os.environ.get("GEOINV_BENCHMARK_RESULTS", Path(__file__).resolve().parent / "results"))

#: the synthetic cases' pick error (ns): every study's σ unit
NOISE_NS = 0.25


def synthetic_data(operator, petrophysics, model: torch.Tensor, noise_seed: int,
                   noise_ns: float = NOISE_NS) -> geoinv.Survey:
    """``model``'s traveltimes (facies fractions through ``petrophysics``) with seeded Gaussian noise."""
    return operator.make_synthetic_data(petrophysics.slowness(model.double()), ns_to_s(noise_ns),
                                        torch.Generator().manual_seed(noise_seed))


def synthetic_problem(operator, prior, petrophysics, model: torch.Tensor, noise_seed: int,
                      noise_ns: float = NOISE_NS):
    """The inverse problem of ``model``'s noisy synthetic data (:func:`synthetic_data`) under ``prior``.

    One recipe for every study, so that a truth and a noise seed mean the same case in all of them.
    """
    data = synthetic_data(operator, petrophysics, model, noise_seed, noise_ns)
    return build_problem(data, prior, operator, petrophysics)


def median_time(function, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``function()`` in seconds."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """Print ``rows`` as an aligned table; ``columns`` = (key, header, format spec)."""
    cells = [[("-" if row.get(key) is None else format(row[key], fmt)) for key, _, fmt in columns]
             for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(c.ljust(w) if columns[i][2] == "" else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))


def figure_path(name: str, suffix: str = ".png") -> Path:
    """Where a benchmark's figure goes (``results/`` is created: it is not in git)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{name}{suffix}"


def write_json(name: str, payload: dict, path: Path | None = None) -> Path:
    """Write the benchmark's numbers first (before any figure), so a plotting error loses nothing.

    To ``RESULTS/<name>.json`` unless ``path`` is given; stamped with what ran, where and on which commit.
    """
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": Path(sys.argv[0]).stem,
            "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "geoinv": geoinv.__version__, "commit": _commit(),
            "settings_hash": hashlib.sha256(json.dumps(payload.get("args", {}), sort_keys=True,
                                                       default=str).encode()).hexdigest()[:16]}
    path.write_text(json.dumps({"environment": meta, **payload}, indent=2, default=str))
    print(f"\nwrote {path}")
    return path


def _commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when the tree has changes), or None outside git."""
    try:
        root = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None
