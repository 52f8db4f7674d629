"""Floating-point traps left on by another library (pyGIMLi's Triangle meshing) are switched off by a solve."""

import subprocess
import sys

import pytest

from geoinv._float_traps import _libm

pytestmark = pytest.mark.skipif(_libm() is None, reason="needs glibc's fegetexcept/fedisableexcept")

ENABLE = ("import ctypes, ctypes.util, numpy as np\n"
          "libm = ctypes.CDLL(ctypes.util.find_library('m'))\n"
          "libm.feenableexcept(1 | 4 | 8)  # invalid, divide-by-zero, overflow: as Triangle leaves them\n")


def _run(program: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)


def test_with_traps_on_a_division_by_zero_kills_python():
    """The hazard itself: without geoinv's guard, numpy's 1/0 ends the process with SIGFPE."""
    done = _run(ENABLE + "np.seterr(all='ignore'); print(np.float64(1.0) / np.zeros(1))")
    assert done.returncode == -8, done.stdout + done.stderr


def test_a_solve_switches_traps_off_with_a_warning():
    program = ENABLE + (
        "import warnings, torch, geoinv\n"
        "from geoinv.tasks import quadratic\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    geoinv.solver('latent-sgd', n_starts=2, epochs=1, progress=False).solve(quadratic(), torch.ones(1, 1))\n"
        "print('warned:', [str(w.message) for w in caught if 'floating-point traps' in str(w.message)])\n"
        "np.seterr(all='ignore'); print('after:', np.float64(1.0) / np.zeros(1), int(libm.fegetexcept()))\n")
    done = _run(program)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pyGIMLi's Triangle meshing" in done.stdout
    assert "after: [inf] 0" in done.stdout
