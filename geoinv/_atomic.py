"""Atomic file writes: a crash or a signal never leaves a half-written result behind."""

from __future__ import annotations

import errno
import glob
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._signals import check
from ._typing import PathType

#: temporaries of an atomic write older than this (s) were left by a killed process and are removed
STALE_TEMPORARY_S = 6 * 3600.0


@contextmanager
def atomic_path(path: PathType) -> Iterator[Path]:
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
        _hold()
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


@contextmanager
def atomic_hdf5(path: PathType, mode: str = "w") -> Iterator[Any]:
    """Yield an ``h5py.File`` that is written to ``path`` atomically when the block ends.

    The HDF5 library does not fail cleanly when the disk fills: its write errors
    surface while objects are closed, and a full disk under ``geoinv batch`` ended
    in a segmentation fault. So the file is built in memory and its bytes are
    written by Python's own file I/O (through :func:`atomic_path`), which raises
    one ``OSError`` naming the file. ``mode='a'`` starts from the existing file's
    content (a new one if there is none).
    """
    import io

    import h5py

    if mode not in ("w", "a"):
        raise ValueError(f"mode must be 'w' or 'a', got {mode!r}")
    path = Path(path)
    buffer = io.BytesIO(path.read_bytes() if mode == "a" and path.is_file() else b"")
    with h5py.File(buffer, "a" if buffer.getbuffer().nbytes else "w") as handle:
        yield handle
    _write_bytes(path, buffer)


def atomic_torch_save(payload: Any, path: PathType) -> None:
    """``torch.save(payload, path)`` atomically, with a full disk reported as one ``OSError`` naming the file.

    torch's own file writer reports a full disk as an internal assertion
    ("unexpected pos ..."), so the payload is serialised in memory and written
    by Python's file I/O.
    """
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    _write_bytes(path, buffer)


def _write_bytes(path, buffer) -> None:
    """Write an in-memory file's bytes through :func:`atomic_path` with Python's file I/O (clean OSErrors)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(buffer.getbuffer())


def _hold() -> None:
    """Keep a written temporary file in place for ``$GEOINV_HOLD_WRITES_S`` seconds before its rename.

    Fault injection for the interruption tests: an in-memory file is written in one call, too fast
    for a test to signal the process while the temporary exists; held, it can, every time.
    """
    seconds = os.environ.get("GEOINV_HOLD_WRITES_S")
    if seconds:
        time.sleep(float(seconds))


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
    short = re.search(r"(\d+) requested and (\d+) written", str(exc))  # numpy's words for a short write
    if code is None and short:
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (wrote {short[2]} of {short[1]} bytes)", str(path))
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
