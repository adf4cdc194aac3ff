"""The engines the contract tests run on, and how a test writes its own database on each.

A test written once against SQLite's dialect runs on every engine: its database is written by
the engine's backend from the same DDL and rows, and its SQL is ported the way suite tasks are.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from quill_env.backends import get_backend
from quill_env.backends.sqlite import SQLiteBackend

ENGINES = ("sqlite", "duckdb")
SUFFIX = {"sqlite": ".db", "duckdb": ".duckdb"}


def engine_params() -> list:
    """``ENGINES`` as pytest params (DuckDB skipped where its extra is not installed)."""
    params = []
    for engine in ENGINES:
        marks = ()
        if engine == "duckdb":
            try:
                import duckdb  # noqa: F401
            except ImportError:
                marks = (pytest.mark.skip(reason="the duckdb extra is not installed"),)
        params.append(pytest.param(engine, id=engine, marks=marks))
    return params


def write_database(
    engine: str, directory: Path, stem: str, schema_sql: Sequence[str], rows: Mapping[str, Sequence[tuple]]
) -> Path:
    """A new database file ``directory/stem.<suffix>`` on ``engine`` from SQLite DDL and rows."""
    with SQLiteBackend.from_rows(schema_sql, rows) as probe:
        names = {t: info.column_names for t, info in probe.tables().items()}
    columns = {t: dict(zip(names[t], zip(*rows[t]) if rows[t] else [() for _ in names[t]])) for t in rows}
    path = Path(directory) / f"{stem}{SUFFIX[engine]}"
    get_backend(engine).create_file(path, schema_sql, columns, dialect="sqlite")
    return path


@functools.cache
def _porter(engine: str):
    return get_backend(engine).empty()


def port(engine: str, sql: str) -> str:
    """``sql``, written for SQLite, in ``engine``'s dialect (as suite tasks are ported)."""
    return _porter(engine).port(sql, "sqlite")
