"""Process-wide caches: one database copy per file, variant images, and a bounded runner cache.

Scoring keeps three things between calls, and memory must not grow with the number of queries:

- :func:`shared_backend`: one private copy of each database file per process (and thread),
  shared by every runner of that file. Runners never change it: indexes are built in a
  savepoint that is rolled back and twins are applied the same way.
- :func:`backend_lock`: the lock that every user of one database copy holds while it uses it
  (runners of several tasks share a copy, and a scratch state is one per copy).
- :func:`variants_for`: the variant images of one query, built once.
- :class:`RunnerCache`: task runners (a task's baseline, twins and variant databases), least
  recently used first out. :func:`runner_cache` is the one instance that ``evaluate``, the
  environments, the leaderboard pool and the trainers' reward workers share.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from quill_env.backends import DEFAULT_ENGINE, is_server_url, open_backend, redact_url
from quill_env.backends.base import Backend
from quill_env.errors import ConfigError, DatabaseError
from quill_env.variants import Variant, VariantBuilder

MAX_SHARED_FILES = 8
"""Database files kept open per process and thread."""

MAX_VARIANT_SETS = 256
"""Queries whose variant images are kept."""

DEFAULT_MAX_RUNNERS = 64
"""Task runners kept by :func:`runner_cache` (``QUILL_MAX_RUNNERS`` overrides)."""

_LOCK = threading.Lock()
_BACKENDS: OrderedDict[tuple[str, int], Backend] = OrderedDict()
_VARIANTS: OrderedDict[tuple, list[Variant]] = OrderedDict()
_BACKEND_LOCKS: weakref.WeakKeyDictionary[Backend, threading.RLock] = weakref.WeakKeyDictionary()


def file_key(path: str) -> str:
    """Identity of a database file's current contents (path, size and modification time).

    A server database (a PostgreSQL URL) is named by its URL without the password: a process
    copies it once (the copy's :attr:`~quill_env.backends.base.Backend.data_version` says what
    it holds).

    Raises:
        DatabaseError: there is no such file.
    """
    if is_server_url(path):
        return redact_url(path)
    if not os.path.exists(path):
        raise DatabaseError(f"no such database file: {path}")
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def shared_backend(path: str) -> Backend:
    """The private copy of ``path`` that this process (and thread) shares; read once per version.

    The engine is read from the file (:func:`quill_env.backends.engine_of`).

    Raises:
        DatabaseError: the file does not exist or is not a database of its engine.
    """
    key = (file_key(path), threading.get_ident())
    with _LOCK:
        backend = _BACKENDS.get(key)
        if backend is not None:
            _BACKENDS.move_to_end(key)
            return backend
    backend = open_backend(path)
    with _LOCK:
        _BACKENDS[key] = backend
        while len(_BACKENDS) > MAX_SHARED_FILES:
            _BACKENDS.popitem(last=False)  # runners still holding it keep it open; then it is freed
    return backend


def backend_lock(backend: Backend) -> threading.RLock:
    """The one lock of ``backend``: held by whoever runs statements or scratch states on it.

    Runners of different tasks on the same file share its copy (:func:`shared_backend`), so a
    per-runner lock would not keep two threads out of one scratch state.

    >>> from quill_env.backends import SQLiteBackend
    >>> db = SQLiteBackend.empty()
    >>> backend_lock(db) is backend_lock(db)
    True
    """
    with _LOCK:
        lock = _BACKEND_LOCKS.get(backend)
        if lock is None:
            lock = _BACKEND_LOCKS[backend] = threading.RLock()
        return lock


def variants_for(
    source_path: str, query: str, *, count: int, rows_per_table: int, seed: int
) -> list[Variant]:
    """Variant images of ``query`` sampled from the database at ``source_path`` (cached)."""
    if count == 0:
        return []
    key = (file_key(source_path), query, count, rows_per_table, seed)
    with _LOCK:
        cached = _VARIANTS.get(key)
    if cached is None:
        builder = VariantBuilder(shared_backend(source_path), rows_per_table=rows_per_table, seed=seed)
        cached = builder.build(query, count)
        with _LOCK:
            _VARIANTS[key] = cached
            while len(_VARIANTS) > MAX_VARIANT_SETS:
                _VARIANTS.popitem(last=False)
    return cached


def suite_runner_key(
    suite: object, task: object, scale: str | None, options: object, engine: str = DEFAULT_ENGINE
) -> tuple:
    """The cache key of a suite task's runner, the same wherever it is built (env, pool, trainers).

    ``scale=None`` means the suite's default scale, so both share one runner.
    """
    scale = scale or getattr(suite, "default_scale", None)
    return ("suite", engine, suite.name, suite.hash, task.id, scale, repr(options))  # type: ignore[attr-defined]


class Closeable(Protocol):
    """Anything with a ``close()`` (a task runner)."""

    def close(self) -> None:
        """Release what it holds."""


T = TypeVar("T", bound=Closeable)


class RunnerCache(Generic[T]):
    """A bounded, least-recently-used cache of runners; an evicted runner is closed.

    Args:
        maxsize: the most runners kept.

    >>> class R:
    ...     closed = False
    ...     def close(self): self.closed = True
    >>> cache = RunnerCache(maxsize=1)
    >>> a = cache.get("a", R); b = cache.get("b", R)
    >>> a.closed, b.closed, len(cache)
    (True, False, 1)
    """

    def __init__(self, maxsize: int = DEFAULT_MAX_RUNNERS) -> None:
        if maxsize < 1:
            raise ConfigError("a runner cache needs room for at least one runner")
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The runner under ``key``, made by ``make()`` when it is not cached."""
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item
        item = make()
        with self._lock:
            first = self._items.get(key)
            if first is None:  # else another thread made one meanwhile: use that one, everywhere
                self._items[key] = item
            self._items.move_to_end(key)
            evicted = [self._items.popitem(last=False)[1] for _ in range(len(self._items) - self.maxsize)]
        if first is not None:
            item.close()
            return first
        for old in evicted:
            old.close()
        return item

    def clear(self) -> None:
        """Close and forget every runner."""
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for item in items:
            item.close()

    def __len__(self) -> int:
        return len(self._items)


_SHARED: list[RunnerCache] = []


def runner_cache() -> RunnerCache:
    """The process-wide runner cache (``QUILL_MAX_RUNNERS`` runners, default 64)."""
    with _LOCK:
        if not _SHARED:
            _SHARED.append(RunnerCache(int(os.environ.get("QUILL_MAX_RUNNERS", DEFAULT_MAX_RUNNERS))))
        return _SHARED[0]


__all__ = [
    "RunnerCache",
    "backend_lock",
    "file_key",
    "runner_cache",
    "shared_backend",
    "suite_runner_key",
    "variants_for",
]
