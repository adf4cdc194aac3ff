"""Database backends, looked up by name, URL scheme, file name ending or file header.

SQLite ships with Quill; DuckDB needs the ``duckdb`` extra and is imported only when asked
for, so ``import quill_env`` never loads it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from quill_env.backends.base import Backend, Budget, ExecResult, ExecStatus, TableInfo
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.errors import ConfigError, DatabaseError, UnknownNameError

BACKENDS: dict[str, str] = {
    "sqlite": "quill_env.backends.sqlite:SQLiteBackend",
    "duckdb": "quill_env.backends.duckdb:DuckDBBackend",
}
"""Registered backends by name, as ``module:class`` (imported on first use)."""

ALIASES = {"sqlite3": "sqlite", "ddb": "duckdb"}
"""Other names of the registered backends."""

PLANNED = {"postgres": "postgres", "postgresql": "postgres"}
"""Backends of later releases, with the extra they will need."""

DEFAULT_ENGINE = "sqlite"
"""The embedded default."""


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name`` (its module is imported now).

    Raises:
        UnknownNameError: no such backend (with a did-you-mean suggestion).
        ConfigError: a backend of a later release.
        MissingExtraError: the backend's extra is not installed.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key in BACKENDS:
        module, _, attr = BACKENDS[key].partition(":")
        return getattr(importlib.import_module(module), attr)
    if key in PLANNED:
        raise ConfigError(
            f"the {name} backend is not available in this version of Quill; use SQLite or DuckDB"
        )
    raise UnknownNameError("backend", name, [*BACKENDS, *PLANNED])


def engine_of(path: str | os.PathLike[str]) -> str:
    """The engine of a database file: from its header when it has one, else its name's ending.

    >>> engine_of("shop.duckdb"), engine_of("shop.db")
    ('duckdb', 'sqlite')
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError:
        head = b""
    if head:
        if head.startswith(b"SQLite format 3\x00"):
            return "sqlite"
        if head[8:12] == b"DUCK":
            return "duckdb"
    if path.suffix.lower() in (".duckdb", ".ddb"):
        return "duckdb"
    return DEFAULT_ENGINE


def split_url(database: str | os.PathLike[str]) -> tuple[str, str]:
    """``(engine, path)`` of a database given as a path or URL (``sqlite:///p``, ``duckdb:///p``).

    Raises:
        UnknownNameError: an unknown URL scheme.
    """
    text = os.fspath(database)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return engine_of(text), text
    name = scheme.split("+")[0].lower()
    get_backend(name)  # refuse unknown schemes before looking at the path
    return ALIASES.get(name, name), rest[1:] if rest.startswith("/") else rest


def open_backend(database: str | os.PathLike[str]) -> Backend:
    """Open a private copy of a database given as a path or URL.

    Raises:
        DatabaseError: the file does not exist or is not a database of its engine.
    """
    engine, path = split_url(database)
    if not path:
        raise DatabaseError(f"no database path in {os.fspath(database)!r}")
    return get_backend(engine).open(path)


__all__ = [
    "BACKENDS",
    "DEFAULT_ENGINE",
    "Backend",
    "Budget",
    "ExecResult",
    "ExecStatus",
    "SQLiteBackend",
    "TableInfo",
    "engine_of",
    "get_backend",
    "open_backend",
    "split_url",
]
