"""Where Quill keeps what it generates: the cache directory (``QUILL_CACHE`` overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """Where generated databases and baselines are cached (``QUILL_CACHE`` overrides)."""
    root = os.environ.get("QUILL_CACHE") or platformdirs.user_cache_dir("quill")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["cache_dir"]
