"""Atomic writes: a full disk is one message naming the file, and killed writes leave nothing for long."""

from __future__ import annotations

import pytest


def test_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path):
    import errno

    import geoinv._atomic as atomic

    target = tmp_path / "result.h5"
    with pytest.raises(OSError) as caught, atomic.atomic_path(target) as temporary:
        temporary.write_bytes(b"partial")
        raise OSError("Can't write data (file write failed: errno = 28, error message = 'No space left on device')")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_killed_writes_are_swept_and_fresh_ones_kept(tmp_path):
    import os
    import time

    import geoinv._atomic as atomic

    stale, fresh = tmp_path / ".result.h5.abc123.tmp", tmp_path / ".result.h5.def456.tmp"
    other = tmp_path / ".other.h5.abc123.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"left by a SIGKILL")
    old = time.time() - atomic.STALE_TEMPORARY_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    with atomic.atomic_path(tmp_path / "result.h5") as temporary:
        temporary.write_bytes(b"complete")
    assert not stale.exists() and fresh.exists() and other.exists()  # only this file's stale temporaries
    assert (tmp_path / "result.h5").read_bytes() == b"complete"
