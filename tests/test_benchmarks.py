"""The benchmark runner: every benchmark is listed with its docstring and parses its options.

Running them measures (minutes to hours); here each script is imported and asked for ``--help``, so a
benchmark that no longer imports or whose options broke fails the suite.
"""

from __future__ import annotations

import json
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


#: benchmarks whose --quick run takes seconds; the others' take minutes (forward 84 s, field_unknowns 67 s,
#: latent_sgd_study, proposals_study, sampling_study, inverse_models and na_ballistics_study longer)
QUICK = ("gn_engines", "training_speed")


@pytest.mark.parametrize("name", QUICK)
def test_quick_benchmarks_run_and_write_their_results(name, tmp_path, monkeypatch, capsys):
    """The quick run of a benchmark executes its real code path end to end and writes stamped JSON."""
    monkeypatch.setenv("GEOINV_BENCHMARK_RESULTS", str(tmp_path))
    monkeypatch.delitem(sys.modules, "_common", raising=False)  # it reads the results folder when imported
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    assert main([name, "--quick"]) == 0
    written = json.loads((tmp_path / f"{name}.json").read_text())
    assert written["rows"] and written["environment"]["geoinv"]
    assert "wrote" in capsys.readouterr().out
    assert sys.modules["_common"].RESULTS == tmp_path  # nothing went to the committed results


def test_quick_all_runs_each_check_in_its_own_process_and_reports(tmp_path, monkeypatch, capsys):
    """What CI runs: every named benchmark's --quick, a line per benchmark, the JSON in the scratch folder."""
    monkeypatch.setenv("GEOINV_BENCHMARK_RESULTS", str(tmp_path))
    assert main(["--quick-all", "bad_input_audit"]) == 0
    said = capsys.readouterr().out
    assert "bad_input_audit" in said and " ok " in said and "1/1 passed" in said
    rows = json.loads((tmp_path / "bad_inputs.json").read_text())["rows"]
    assert rows and {row["outcome"] for row in rows} == {"clear"}  # one case of each kind, each refused clearly
    assert main(["--quick-all", "no-such-benchmark"]) == 2
