"""The engines the contract tests run on, and how a test writes its own database on each.

A test written once against SQLite's dialect runs on every engine: its database is written by
the engine's backend from the same DDL and rows, and its SQL is ported the way suite tasks are.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from tests import pgcluster

from quill_env.backends import get_backend
from quill_env.backends.sqlite import SQLiteBackend

ENGINES = ("sqlite", "duckdb", "postgres")
SUFFIX = {"sqlite": ".db", "duckdb": ".duckdb"}


def engine_marks(engine: str) -> tuple:
    """The marks of a test on ``engine``: skipped, with the reason, where the engine is missing."""
    if engine == "duckdb":
        try:
            import duckdb  # noqa: F401
        except ImportError:
            return (pytest.mark.skip(reason="the duckdb extra is not installed"),)
    if engine == "postgres":
        reason = pgcluster.unavailable()
        return (pytest.mark.postgres, *([pytest.mark.skip(reason=reason)] if reason else []))
    return ()


def engine_params(engines: Sequence[str] = ENGINES) -> list:
    """``engines`` as pytest params (each skipped, with the reason, where it is not installed)."""
    return [pytest.param(engine, id=engine, marks=engine_marks(engine)) for engine in engines]


class ServerDatabase(str):
    """A database on the test cluster, named by its URL (where a file engine gives a path)."""

    @property
    def name(self) -> str:
        """The database's name."""
        return self.rsplit("/", 1)[-1]


def write_database(
    engine: str, directory: Path, stem: str, schema_sql: Sequence[str], rows: Mapping[str, Sequence[tuple]]
) -> Path | ServerDatabase:
    """A new database on ``engine`` from SQLite DDL and rows: a file ``directory/stem.<suffix>``, or
    on PostgreSQL a user's database (real keys, not one of Quill's) on the test cluster."""
    if engine == "postgres":
        name = f"{stem}_{Path(directory).name}".lower().replace("-", "_")[:60]
        return ServerDatabase(
            pgcluster.create_database(name, list(schema_sql), {k: list(v) for k, v in rows.items()})
        )
    with SQLiteBackend.from_rows(schema_sql, rows) as probe:
        names = {t: info.column_names for t, info in probe.tables().items()}
    columns = {t: dict(zip(names[t], zip(*rows[t]) if rows[t] else [() for _ in names[t]])) for t in rows}
    path = Path(directory) / f"{stem}{SUFFIX[engine]}"
    get_backend(engine).create_file(path, schema_sql, columns, dialect="sqlite")
    return path


@functools.cache
def _porter(engine: str):
    if engine == "postgres":
        pgcluster.url()
    return get_backend(engine).empty()


def port(engine: str, sql: str) -> str:
    """``sql``, written for SQLite, in ``engine``'s dialect (as suite tasks are ported)."""
    return _porter(engine).port(sql, "sqlite")


def fingerprint(engine: str, database: str) -> str:
    """What must not change when Quill scores on ``database``: a file's bytes, or on a server
    every table's rows and definition and the catalog's index list."""
    if engine == "postgres":
        return pgcluster.fingerprint(database)
    import hashlib

    return hashlib.sha256(Path(database).read_bytes()).hexdigest()
