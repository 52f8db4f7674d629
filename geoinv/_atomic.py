"""Atomic file writes: a crash or a signal never leaves a half-written result behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ._signals import check


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
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.close(handle)
        yield Path(tmp_name)
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
