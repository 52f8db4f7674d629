"""The benchmark runner: every benchmark is listed with its docstring and parses its options.

Running them measures (minutes to hours); here each script is imported and asked for ``--help``, so a
benchmark that no longer imports or whose options broke fails the suite.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS.parent))

from benchmarks.__main__ import benchmarks, main  # noqa: E402


def test_the_runner_lists_every_benchmark_with_its_purpose(capsys):
    listed = benchmarks()
    scripts = {path.stem for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_")}
    assert set(listed) == scripts and all(listed.values())
    assert main([]) == 0 and "proposals_study" in capsys.readouterr().out
    assert main(["no-such-benchmark"]) == 2


@pytest.mark.parametrize("name", sorted(benchmarks()))
def test_every_benchmark_imports_and_parses_its_options(name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(BENCHMARKS / f"{name}.py"), run_name="__main__")
    assert stop.value.code == 0 and "usage" in capsys.readouterr().out
