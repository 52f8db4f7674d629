"""Where geoinv keeps what it can rebuild: ``$GEOINV_CACHE``, by default ``~/.cache/geoinv``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder, read from ``$GEOINV_CACHE`` at each call (so a changed environment is honoured)."""
    return Path(os.environ.get("GEOINV_CACHE", Path.home() / ".cache" / "geoinv"))
