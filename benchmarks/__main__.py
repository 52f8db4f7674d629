"""One runner for geoinv's benchmarks: ``python -m benchmarks [NAME [--quick] [OPTIONS]]``.

Without a name it lists the benchmarks with their first docstring line. Each
benchmark prints a table and writes JSON to ``benchmarks/results/`` (or to
``$GEOINV_BENCHMARK_RESULTS``), stamped with geoinv's version, the commit and a
hash of its settings. ``--quick`` checks a benchmark's whole code path with tiny
settings instead of measuring; its output goes to ``benchmarks/results/quick/``
(never over a committed result) unless ``$GEOINV_BENCHMARK_RESULTS`` is set.
``python -m benchmarks --quick-all`` runs every benchmark's quick check, each in
its own process, prints a table of outcomes and times, and fails if any failed
(CI runs it). ``python -m benchmarks --index`` prints the index of the committed
results (the docs' Results page includes it).
"""

from __future__ import annotations

import ast
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_VARIABLE = "GEOINV_BENCHMARK_RESULTS"


def benchmarks() -> dict[str, str]:
    """Benchmark names and the first line of their docstrings."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        found[path.stem] = docstring.splitlines()[0] if docstring else ""
    return found


def quick_all(names: list[str]) -> int:
    """Run ``NAME --quick`` for each benchmark in a process of its own; 1 if any failed."""
    os.environ.setdefault(RESULTS_VARIABLE, str(HERE / "results" / "quick"))
    print(f"quick checks of {len(names)} benchmarks; results in {os.environ[RESULTS_VARIABLE]}", flush=True)
    outcomes = []
    for name in names:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "benchmarks", name, "--quick"], cwd=HERE.parent,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - began
        outcomes.append((name, done.returncode, seconds))
        print(f"  {name:<22} {'ok' if done.returncode == 0 else f'FAILED (exit {done.returncode})':<18}"
              f"{seconds:7.1f} s", flush=True)
        if done.returncode:
            print("    " + "\n    ".join((done.stdout + done.stderr).strip().splitlines()[-25:]), flush=True)
    failed = [name for name, code, _ in outcomes if code]
    print(f"{len(names) - len(failed)}/{len(names)} passed in {sum(s for *_, s in outcomes):.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the scripts import their shared helpers (_common, _index) from here
    available = benchmarks()
    if not argv or argv[0] in ("-h", "--help", "list"):
        width = max(map(len, available))
        print(__doc__.splitlines()[0], "\n")
        for name, line in available.items():
            print(f"  {name:<{width}}  {line}")
        return 0
    if argv[0] == "--index":
        from _index import results_index

        print(results_index(), end="")
        return 0
    if argv[0] == "--quick-all":
        unknown = [name for name in argv[1:] if name not in available]
        if unknown:
            print(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
            return 2
        return quick_all(argv[1:] or list(available))
    name, *options = argv
    if name not in available:
        print(f"unknown benchmark {name!r}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    if "--quick" in options:  # a check, not a measurement: never over a committed result
        os.environ.setdefault(RESULTS_VARIABLE, str(HERE / "results" / "quick"))
    sys.argv = [str(HERE / f"{name}.py"), *options]
    runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
