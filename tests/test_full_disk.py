"""A real full disk: every writer fails with one OSError naming the file, leaves nothing, and never crashes.

The disk is a small tmpfs mounted for the test (root only; skipped where mounting
is not allowed). Each writer runs in a child process, since the failure this
guards against was a segmentation fault: HDF5 and torch report a full disk while
closing objects, and ``geoinv batch`` died with signal 11 writing a panel's part.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

#: writers and what they write, run in the child: each prints {"writer", "errno", "filename"} or crashes
WRITERS = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    import geoinv
    from geoinv.io.campaign import CampaignSurvey, write_campaign
    from geoinv.io.images import write_image
    from geoinv.prior.vae import VAE, VAEConfig, save_checkpoint

    folder = sys.argv[1]
    noise = np.random.default_rng(0).random((1500, 1500)) > 0.5   # incompressible: far beyond the disk
    grid, survey = geoinv.Grid2D.crosshole(), geoinv.Survey.crosshole()
    survey = survey.with_data(np.full(survey.n_data, 1e-7), np.full(survey.n_data, 2.5e-10))
    dense = geoinv.Survey.crosshole(depths=np.linspace(0.1, 12.8, 120))   # 14 400 picks: a .sgt of ~0.5 MB
    dense = dense.with_data(np.full(dense.n_data, 1e-7), np.full(dense.n_data, 2.5e-10))
    solutions = geoinv.Solutions(parameters=torch.randn(1, 400, 20), models=torch.rand(1, 400, 129, 65),
                                 data=torch.rand(1, 400, 625), misfit=torch.rand(1, 400),
                                 normalised_misfit=torch.rand(1, 400), accepted=torch.zeros(1, 400, dtype=bool))
    vae = VAE(VAEConfig())
    writers = {
        "image.h5": lambda path: write_image(path, noise),
        "image.npy": lambda path: write_image(path, noise),
        "image.png": lambda path: write_image(path, noise),
        "solutions.h5": lambda path: solutions.to_hdf5(path),
        "survey.h5": lambda path: geoinv.io.write_survey(path, dense, grid),
        "survey.sgt": lambda path: geoinv.io.write_survey(path, dense),
        "campaign.h5": lambda path: write_campaign(path, [CampaignSurvey(f"p{k}", survey, grid)
                                                           for k in range(200)]),
        "vae.pt": lambda path: save_checkpoint(path, vae, {}),
    }
    for name in sys.argv[2:]:
        path = f"{folder}/{name}"
        try:
            writers[name](path)
            print(json.dumps({"writer": name, "errno": None, "filename": None}), flush=True)
        except OSError as error:
            print(json.dumps({"writer": name, "errno": error.errno, "filename": error.filename}), flush=True)
""")
NAMES = ("image.h5", "image.npy", "image.png", "solutions.h5", "survey.h5", "survey.sgt", "campaign.h5", "vae.pt")


def _mounted_tmpfs(folder: Path, options: str):
    """A tmpfs mounted at a new folder under ``folder``, unmounted afterwards; skipped where not allowed."""
    mountpoint = folder / f"disk-{uuid.uuid4().hex[:8]}"
    mountpoint.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root and a system that allows it")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB file system."""
    yield from _mounted_tmpfs(tmp_path, "size=64k")


@pytest.fixture
def read_only_disk(tmp_path):
    """A file system mounted read-only (root ignores permission bits, not this)."""
    yield from _mounted_tmpfs(tmp_path, "size=64k,ro")


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    command = "import sys; from geoinv.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", command, *arguments], capture_output=True, text=True, timeout=600)


def test_every_writer_reports_a_full_disk_as_one_error_naming_the_file(full_disk):
    done = subprocess.run([sys.executable, "-c", WRITERS, str(full_disk), *NAMES], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"the writers crashed (exit {done.returncode}): {done.stderr[-2000:]}"
    outcomes = {row["writer"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert set(outcomes) == set(NAMES)
    for name, row in outcomes.items():
        assert row["errno"] == errno.ENOSPC, f"{name}: {row}"
        assert row["filename"] == str(full_disk / name), f"{name}: {row}"
    assert list(full_disk.iterdir()) == []  # no part, no temporary


def test_the_command_line_says_the_disk_is_full_and_exits_2(full_disk):
    output = full_disk / "image.npy"
    done = _cli("make-ti", str(output), "--rows", "1500", "--cols", "1500", "--seed", "1")
    assert done.returncode == 2
    assert "No space left on device" in done.stderr and str(output) in done.stderr
    assert list(full_disk.iterdir()) == []


def test_an_in_memory_hdf5_file_keeps_the_other_groups_when_adding_one(tmp_path):
    """``atomic_hdf5(mode='a')``: what writers that add a group (solutions beside a survey) rely on."""
    import h5py

    from geoinv._atomic import atomic_hdf5

    path = tmp_path / "result.h5"
    with atomic_hdf5(path) as handle:
        handle["survey/times"] = [1.0, 2.0]
    with atomic_hdf5(path, mode="a") as handle:
        handle["solutions/misfit"] = [0.5]
    with h5py.File(path, "r") as handle:
        assert list(handle["survey/times"][:]) == [1.0, 2.0] and list(handle["solutions/misfit"][:]) == [0.5]
    with pytest.raises(RuntimeError, match="kept"), atomic_hdf5(path) as handle:
        handle["other"] = [0.0]
        raise RuntimeError("an error inside the block: the earlier file is kept")
    with h5py.File(path, "r") as handle:
        assert set(handle) == {"survey", "solutions"}
    assert [p.name for p in Path(tmp_path).iterdir()] == ["result.h5"]


def test_a_read_only_folder_is_refused_before_any_work(read_only_disk, tmp_path):
    campaign = tmp_path / "campaign.h5"
    campaign.write_bytes(b"")  # never read: the output is checked first
    for arguments in (("make-ti", str(read_only_disk / "image.npy")),
                      ("batch", str(campaign), str(read_only_disk / "results.h5"))):
        done = _cli(*arguments)
        assert done.returncode == 2, (arguments, done.stderr[-500:])
        assert "is not writable" in done.stderr and str(read_only_disk) in done.stderr
