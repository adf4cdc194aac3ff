"""Database backends, looked up by name, URL scheme, file name ending or file header.

SQLite ships with Quill; DuckDB needs the ``duckdb`` extra and PostgreSQL the ``postgres``
extra, each imported only when asked for, so ``import quill_env`` never loads them.
"""

from __future__ import annotations

import importlib
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from quill_env.backends.base import Backend, Budget, ExecResult, ExecStatus, TableInfo
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.errors import ConfigError, DatabaseError, MissingExtraError, UnknownNameError

BACKENDS: dict[str, str] = {
    "sqlite": "quill_env.backends.sqlite:SQLiteBackend",
    "duckdb": "quill_env.backends.duckdb:DuckDBBackend",
    "postgres": "quill_env.backends.postgres:PostgresBackend",
}
"""Registered backends by name, as ``module:class`` (imported on first use)."""

ALIASES = {"sqlite3": "sqlite", "ddb": "duckdb", "postgresql": "postgres", "pg": "postgres"}
"""Other names of the registered backends."""

SERVER_SCHEMES = frozenset({"postgres", "postgresql"})
"""URL schemes of server engines: the whole URL names the database (no file path in it)."""

PLANNED: dict[str, str] = {}
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


def _registered() -> Iterator[type[Backend]]:
    """Every registered file engine's backend that imports, in registration order.

    Each is imported when reached, so a caller that stops at SQLite never imports DuckDB.
    """
    for name in BACKENDS:
        if name in SERVER_SCHEMES:
            continue
        try:
            yield get_backend(name)
        except ImportError:  # its extra is not installed
            continue


def _unavailable() -> list[str]:
    """Why each registered backend that does not import is unavailable."""
    reasons = []
    for name in BACKENDS:
        if name in SERVER_SCHEMES:
            continue
        try:
            get_backend(name)
        except MissingExtraError as err:
            reasons.append(str(err))
        except ImportError as err:
            reasons.append(f"the {name} backend does not import ({err})")
    return reasons


def engine_of(path: str | os.PathLike[str]) -> str:
    """The engine of a database file, from the header and name endings each backend declares.

    The backend whose file header the file holds wins; else the one whose name ending it has;
    else the default.

    >>> engine_of("shop.duckdb"), engine_of("shop.db")
    ('duckdb', 'sqlite')
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(64)
    except OSError:
        head = b""
    if head:
        for backend in _registered():
            if backend.file_header is not None:
                offset, magic = backend.file_header
                if head[offset : offset + len(magic)] == magic:
                    return backend.name
    suffix = path.suffix.lower()
    for backend in _registered():
        if suffix in backend.file_suffixes:
            return backend.name
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
    if name in SERVER_SCHEMES:
        return ALIASES.get(name, name), text
    get_backend(name)  # refuse unknown schemes before looking at the path
    return ALIASES.get(name, name), rest[1:] if rest.startswith("/") else rest


def is_server_url(database: str | os.PathLike[str]) -> bool:
    """Whether ``database`` is the URL of a database on a server (PostgreSQL), not a file.

    >>> is_server_url("postgresql://me@db/shop"), is_server_url("shop.db")
    (True, False)
    """
    return os.fspath(database).partition("://")[0].split("+")[0].lower() in SERVER_SCHEMES


def redact_url(url: str) -> str:
    """A database URL without its password (for labels, keys and messages).

    >>> redact_url("postgresql://me:secret@db.example:5433/shop?sslmode=require&password=x")
    'postgresql://me@db.example:5433/shop?sslmode=require'
    """
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.urlencode(
        [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    )
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        where = f"{host}:{parts.port}" if parts.port else host
        netloc = (f"{parts.username}@" if parts.username else "") + where
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def open_backend(database: str | os.PathLike[str]) -> Backend:
    """Open a private copy of a database given as a path or URL.

    Raises:
        DatabaseError: the file does not exist or is not a database of its engine.
    """
    engine, path = split_url(database)
    if not path:
        raise DatabaseError(f"no database path in {os.fspath(database)!r}")
    if is_server_url(path):
        return get_backend(engine).open(path)
    try:
        return get_backend(engine).open(path)
    except DatabaseError as err:
        unavailable = _unavailable() if Path(path).exists() else []
        if not unavailable:
            raise
        # No installed backend recognized the file: it may be another engine's.
        raise DatabaseError(f"{err}; engines that could not be asked: {'; '.join(unavailable)}") from err


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
    "is_server_url",
    "open_backend",
    "redact_url",
    "split_url",
]
