"""Per-run accounting of a teacher: requests, cache hits, retries, errors, tokens and dollars."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class Usage:
    """What a teacher run has cost so far (updated from several threads under a lock).

    A response served from the cache counts as a cache hit and costs no tokens or dollars.
    """

    requests: int = 0
    """HTTP requests sent (each retry is one more)."""
    cache_hits: int = 0
    """Completions served from the on-disk cache."""
    retries: int = 0
    """Requests repeated after a 429, a 5xx, a timeout or a connection error."""
    errors: list[str] = field(default_factory=list)
    """One message per completion that failed for good (after its retries)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dollars: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        """Add to counters by name, atomically (``usage.add(requests=1, retries=1)``)."""
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def error(self, message: str) -> None:
        """Record a completion that failed for good."""
        with self._lock:
            self.errors.append(message)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy of the counters.

        >>> Usage(requests=2, prompt_tokens=10).to_dict()["requests"]
        2
        """
        with self._lock:
            out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
            out["errors"] = list(self.errors)
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
        return out
