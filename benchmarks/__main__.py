"""One runner for geoinv's benchmarks: ``python -m benchmarks [NAME [--quick] [OPTIONS]]``.

Without a name it lists the benchmarks with their first docstring line. Each
benchmark prints a table and writes JSON to ``benchmarks/results/`` (or to
``$GEOINV_BENCHMARK_RESULTS``), stamped with geoinv's version, the commit and a
hash of its settings; ``--quick`` (where a benchmark has it) checks the script
in seconds to minutes instead of measuring.
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, str]:
    """Benchmark names and the first line of their docstrings."""
    found = {}
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("_"):
            continue
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        found[path.stem] = docstring.splitlines()[0] if docstring else ""
    return found


def main(argv: list[str]) -> int:
    available = benchmarks()
    if not argv or argv[0] in ("-h", "--help", "list"):
        width = max(map(len, available))
        print(__doc__.splitlines()[0], "\n")
        for name, line in available.items():
            print(f"  {name:<{width}}  {line}")
        return 0
    name, *options = argv
    if name not in available:
        print(f"unknown benchmark {name!r}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))  # the scripts import their shared helpers from _common
    sys.argv = [str(HERE / f"{name}.py"), *options]
    runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
