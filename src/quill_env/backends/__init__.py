"""Database backends, looked up by name or URL scheme."""

from __future__ import annotations

import os

from quill_env.backends.base import Backend, Budget, ExecResult, ExecStatus, TableInfo
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.errors import ConfigError, UnknownNameError

BACKENDS: dict[str, type[Backend]] = {"sqlite": SQLiteBackend}
"""Registered backends by name."""

PLANNED = {"duckdb": "duckdb", "postgres": "postgres", "postgresql": "postgres"}
"""Backends of later releases, with the extra they will need."""


def get_backend(name: str) -> type[Backend]:
    """The backend class registered as ``name``.

    Raises:
        UnknownNameError: no such backend (with a did-you-mean suggestion).
    """
    if name in BACKENDS:
        return BACKENDS[name]
    if name in PLANNED:
        raise ConfigError(
            f"the {name} backend is not available in this version of Quill; use a SQLite database"
        )
    raise UnknownNameError("backend", name, [*BACKENDS, *PLANNED])


def open_backend(database: str | os.PathLike[str]) -> Backend:
    """Open a database given as a path or URL (``sqlite:///path``)."""
    text = os.fspath(database)
    scheme, sep, rest = text.partition("://")
    if sep:
        cls = get_backend(scheme.split("+")[0])
        text = rest[1:] if rest.startswith("/") and scheme == "sqlite" else rest
        return cls.open(text)  # type: ignore[attr-defined]
    return SQLiteBackend.open(text)


__all__ = [
    "BACKENDS",
    "Backend",
    "Budget",
    "ExecResult",
    "ExecStatus",
    "SQLiteBackend",
    "TableInfo",
    "get_backend",
    "open_backend",
]
