"""Atomic file writes: a crash or a signal never leaves a half-written result behind."""

from __future__ import annotations

import errno
import glob
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ._signals import check

#: temporaries of an atomic write older than this (s) were left by a killed process and are removed
STALE_TEMPORARY_S = 6 * 3600.0


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    ``path`` holds either its previous complete content or the new complete
    content, never a part: the temporary file is flushed to disk before the
    rename, and removed if the block raises (``KeyboardInterrupt`` included,
    which the CLI raises on SIGTERM and SIGINT).

    Examples
    --------
    >>> with atomic_path("result.h5") as tmp:  # doctest: +SKIP
    ...     write_everything(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temporaries(path)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.close(handle)
        try:
            yield Path(tmp_name)
        except OSError as exc:  # h5py and numpy report a full disk without the file's name
            named = _named(exc, path)
            if named is exc:
                raise
            raise named from exc
        check()  # a signal swallowed while writing: keep the earlier file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        _fsync(tmp_name)
        os.replace(tmp_name, path)
        _fsync(path.parent)  # the rename itself survives a power cut
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _sweep_stale_temporaries(path: Path) -> None:
    """Remove temporaries of earlier writes of ``path`` that a killed process left (hidden ``.NAME.*.tmp``)."""
    now = time.time()
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if now - stale.stat().st_mtime > STALE_TEMPORARY_S:
                stale.unlink()
        except OSError:  # another process's, or already gone
            continue


def _named(exc: OSError, path: Path) -> OSError:
    """The OS error of a write, naming the file, with 'No space left on device' recognised in any wording."""
    code = exc.errno
    if code is None and re.search(r"errno = 28\b|No space left", str(exc)):
        code = errno.ENOSPC
    if code is None:
        return exc
    return OSError(code, os.strerror(code), str(path))


def _fsync(name) -> None:
    try:
        descriptor = os.open(name, os.O_RDONLY)
    except OSError:  # e.g. folders cannot be opened on some systems
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
