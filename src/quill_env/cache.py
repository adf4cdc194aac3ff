"""The on-disk baseline cache: the original query's results and costs, computed once per task.

Entries are JSON files under ``<QUILL_CACHE>/baselines/``, keyed by a hash of everything that
determines them (task query and projection, data identity, variant recipe, engine and Quill
versions), so a changed database, generator or engine never reads a stale entry. Writes are
atomic; a corrupt or unreadable entry is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from quill_env.paths import cache_dir

MAX_CACHED_ROWS = 200_000
"""Baselines with more rows than this (all databases together) are kept in memory only."""


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": bytes(value).hex()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "$b" in value:
        return bytes.fromhex(value["$b"])
    return value


def encode_rows(rows: list[tuple]) -> list[list]:
    """Rows as JSON-safe lists (blobs tagged).

    >>> decode_rows(encode_rows([(1, 2.5, "x", None, b"\\x00")]))
    [(1, 2.5, 'x', None, b'\\x00')]
    """
    return [[_encode(v) for v in row] for row in rows]


def decode_rows(rows: list[list]) -> list[tuple]:
    """The inverse of :func:`encode_rows`."""
    return [tuple(_decode(v) for v in row) for row in rows]


def cache_key(*parts: Any) -> str:
    """A stable key for the parts (JSON-serializable)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _path(key: str) -> Path:
    return cache_dir() / "baselines" / f"{key}.json"


def load(key: str) -> dict | None:
    """The cached entry for ``key``, or ``None``."""
    try:
        return json.loads(_path(key).read_text())
    except (OSError, ValueError):
        return None


def save(key: str, entry: dict) -> None:
    """Store an entry atomically (best effort: a read-only cache dir is not an error)."""
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(entry, fh)
        os.replace(tmp, path)
    except OSError:
        pass
