"""The on-disk response cache: one JSON file per request, so a rerun costs nothing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped when the stored layout changes (part of every key)."""


def cache_key(request: Mapping[str, Any]) -> str:
    """The sha256 hex digest of a request's canonical JSON.

    The request holds everything that decides the answer: base URL, model, messages,
    temperature, max_tokens, sample index and seed (never the API key).

    >>> cache_key({"model": "m", "sample": 0}) == cache_key({"sample": 0, "model": "m"})
    True
    """
    text = json.dumps({"format": CACHE_FORMAT, **request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """A directory of ``<key[:2]>/<key>.json`` files, written atomically.

    Unreadable or corrupt entries are treated as misses (and overwritten by the next answer),
    so a crash mid-run never poisons later runs.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored response for ``key``, or ``None``."""
        try:
            with open(self.path(key), encoding="utf-8") as fh:
                entry = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable teacher cache entry %s: %s", self.path(key), err)
            return None
        response = entry.get("response") if isinstance(entry, dict) else None
        return response if isinstance(response, dict) and isinstance(response.get("text"), str) else None

    def put(self, key: str, request: Mapping[str, Any], response: Mapping[str, Any]) -> None:
        """Store ``response`` for ``key`` (temporary file + ``os.replace``: never half-written)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"request": request, "response": response}, ensure_ascii=False, indent=1)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:8]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
