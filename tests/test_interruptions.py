"""Real signals to a real ``geoinv`` process: no final-named file is ever partial, no temporary file remains.

Each run is interrupted at a chosen point: while it computes, and the moment
the temporary file of a result or of the figure appears (that is, in the
middle of writing it). An earlier complete result must survive intact or be
replaced by a complete new one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest

from geoinv import Solutions

DEMO = ["demo", "--starts", "2", "--epochs", "2", "--quiet", "--no-refine"]


def _launch(arguments: list[str], cwd: Path) -> subprocess.Popen:
    # each result file's temporary stays 0.3 s before its rename, so a signal lands while it exists
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "GEOINV_HOLD_WRITES_S": "0.3"}
    return subprocess.Popen([sys.executable, "-m", "geoinv.cli", *arguments], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_when(process: subprocess.Popen, ready, signum: int, timeout_s: float = 240.0) -> bool:
    """Send ``signum`` as soon as ``ready()`` holds (polled every 2 ms); False if the run ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            process.send_signal(signum)
            return True
        time.sleep(0.002)
    process.kill()
    raise AssertionError("the run neither finished nor reached the point to interrupt")


def _temporaries(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


def _assert_complete_demo(folder: Path) -> None:
    solutions = Solutions.from_hdf5(folder / "demo.h5")
    assert solutions.parameters.shape == (1, 2, 20)
    with h5py.File(folder / "demo.h5") as handle:
        assert handle["truth"].shape == (129, 65) and "survey" in handle


def _assert_no_partials(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    if (folder / "demo.h5").exists():
        _assert_complete_demo(folder)
    if (folder / "demo.png").exists():
        assert mpimg.imread(folder / "demo.png").shape[0] > 100  # a whole, readable image


@pytest.fixture(scope="module")
def earlier_result(tmp_path_factory) -> Path:
    """A complete demo result made by an uninterrupted run."""
    folder = tmp_path_factory.mktemp("earlier")
    process = _launch([*DEMO, "--output", str(folder)], folder)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    _assert_complete_demo(folder)
    return folder


@pytest.mark.parametrize("point, signum", [
    ("solving", signal.SIGINT),
    ("writing demo.h5", signal.SIGTERM),
    ("writing demo.png", signal.SIGTERM),
])
def test_interrupted_demo_leaves_complete_files_only(point, signum, earlier_result, tmp_path):
    for name in ("demo.h5", "demo.png"):  # start from an earlier complete result
        (tmp_path / name).write_bytes((earlier_result / name).read_bytes())
    before = {name: (tmp_path / name).read_bytes() for name in ("demo.h5", "demo.png")}
    process = _launch([*DEMO, "--output", str(tmp_path)], tmp_path)
    if point == "solving":
        assert process.stdout.readline().startswith("geoinv demo:")  # printed before any work
        time.sleep(1.0)
        sent = process.poll() is None
        process.send_signal(signum)
    else:
        name = point.split()[-1]
        sent = _signal_when(process, lambda: bool(_temporaries(tmp_path, name)), signum)
    _, err = process.communicate(timeout=120)
    assert sent, f"the run ended before the point '{point}': {err}"
    assert process.returncode == 128 + signum, (process.returncode, err)
    assert "interrupted" in err and "Traceback" not in err
    _assert_no_partials(tmp_path)
    if point != "writing demo.png":  # the figure is written after the results file
        assert (tmp_path / "demo.h5").read_bytes() == before["demo.h5"]
    assert (tmp_path / "demo.png").read_bytes() == before["demo.png"]


def test_interrupted_invert_keeps_the_earlier_result(earlier_result, tmp_path):
    """``geoinv invert --overwrite`` killed while writing: the earlier results file is untouched."""
    survey = tmp_path / "survey.h5"
    with h5py.File(earlier_result / "demo.h5") as source, h5py.File(survey, "w") as target:
        source.copy("survey", target)
    result = tmp_path / "result.h5"
    result.write_bytes((earlier_result / "demo.h5").read_bytes())
    before = result.read_bytes()
    process = _launch(["invert", str(survey), "--starts", "2", "--epochs", "2", "--quiet", "--no-refine",
                       "--overwrite", "--output", str(result)], tmp_path)
    sent = _signal_when(process, lambda: bool(_temporaries(tmp_path, "result.h5")), signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert sent and process.returncode == 143, (process.returncode, err)
    assert result.read_bytes() == before
    assert not _temporaries(tmp_path, "result.h5") and not _temporaries(tmp_path, "result.png")
    assert np.isfinite(Solutions.from_hdf5(result).misfit.numpy()).all()


def test_an_interruption_converted_to_another_error_still_ends_as_interrupted():
    """h5py turns an exception raised inside its conversion callbacks into a TypeError: still an interruption."""
    from geoinv._signals import Interrupted, interruptible

    with pytest.raises(Interrupted) as info, interruptible():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except Interrupted:
            raise TypeError("Operation not defined for data type class") from None
    assert info.value.signum == signal.SIGTERM
    assert isinstance(info.value.__cause__, TypeError)
