"""Where defstate keeps its caches on this machine (kept apart: cheap to import on any path)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$DEFSTATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/defstate``, else ``~/.cache/defstate``."""
    configured = os.environ.get("DEFSTATE_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "defstate"
