"""TPC-H data from a packaged generator: DuckDB's ``dbgen`` (the ``duckdb-extension-tpch`` wheel).

A suite whose ``generator`` is ``{"kind": "tpch", "scale_factors": {tier: sf}, "tables": ...}``
gets its rows here instead of from :mod:`quill_env.datagen`'s column kinds: the TPC-H tables at
the tier's scale factor, exactly as the reference generator writes them, converted to the types
the suite's schema declares in SQLite (``DECIMAL`` as ``DOUBLE``, ``DATE`` as ISO-8601 text).
The extension is loaded from the wheel's own file, so no network is needed; DuckDB refuses an
extension built for another DuckDB version, so the extra pins both.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlglot import exp

from quill_env.errors import MissingExtraError, SuiteError

PACKAGE = "duckdb-extension-tpch"
"""The distribution that ships DuckDB's TPC-H extension (``dbgen``)."""

EXTRA = "tpch"
"""The Quill extra that installs it: ``pip install "quill-sql[tpch]"``."""


def generator_version() -> str | None:
    """The installed generator's version (DuckDB's and the extension's), ``None`` if missing.

    Read from the package metadata, so nothing is imported. It is part of a TPC-H suite's data
    hash: another generator version regenerates the cached databases.
    """
    try:
        versions = (importlib.metadata.version("duckdb"), importlib.metadata.version(PACKAGE))
        return f"duckdb {versions[0]}, {PACKAGE} {versions[1]}"
    except importlib.metadata.PackageNotFoundError:
        return None


def connect() -> Any:
    """An in-memory DuckDB connection with the packaged TPC-H extension loaded.

    Raises:
        MissingExtraError: ``duckdb`` or ``duckdb-extension-tpch`` is not installed.
        SuiteError: the extension does not load (built for another DuckDB version).
    """
    try:
        import duckdb
    except ImportError:
        raise MissingExtraError("duckdb", EXTRA) from None
    try:
        import duckdb_extension_tpch
    except ImportError:
        raise MissingExtraError(PACKAGE, EXTRA) from None
    found = sorted(Path(duckdb_extension_tpch.__file__).parent.glob("extensions/*/tpch.duckdb_extension"))
    if not found:
        raise SuiteError(f'{PACKAGE} ships no tpch.duckdb_extension: pip install "quill-sql[{EXTRA}]"')
    con = duckdb.connect()
    try:
        con.load_extension(str(found[-1]))
    except duckdb.Error as err:
        con.close()
        raise SuiteError(
            f"cannot load DuckDB's TPC-H generator ({generator_version()}): {str(err).splitlines()[0]}; "
            f'install matching versions with: pip install "quill-sql[{EXTRA}]"'
        ) from None
    return con


def export_select(table: str, columns: list[tuple[str, str]]) -> str:
    """DuckDB SELECT of ``table`` with SQLite's types: DECIMAL as DOUBLE, DATE as ISO text.

    >>> export_select("orders", [("o_orderkey", "BIGINT"), ("o_totalprice", "DECIMAL(15,2)")])
    'SELECT o_orderkey, CAST(o_totalprice AS DOUBLE) AS o_totalprice FROM orders'
    """
    items: list[exp.Expression] = []
    for name, kind in columns:
        col: exp.Expression = exp.column(name)
        if kind.startswith("DECIMAL"):
            col = exp.alias_(exp.cast(col, "DOUBLE"), name)
        elif kind == "DATE":
            col = exp.alias_(exp.cast(col, "VARCHAR"), name)
        items.append(col)
    return exp.select(*items).from_(table).sql("duckdb")


def generate(scale_factor: float, tables: list[str]) -> dict[str, dict[str, list]]:
    """Run ``dbgen`` at ``scale_factor`` and return ``tables`` as column lists, in that order.

    Args:
        scale_factor: TPC-H's SF (1 is about 6 million lineitem rows).
        tables: the tables to return (the eight TPC-H tables, in load order).

    Returns:
        ``{table: {column: values}}`` with Python values (int, float, str).

    Raises:
        MissingExtraError: the generator is not installed.
        SuiteError: the extension does not load, or a table is not one ``dbgen`` writes.
    """
    con = connect()
    try:
        con.execute("CALL dbgen(sf = ?)", [float(scale_factor)])
        out: dict[str, dict[str, list]] = {}
        for table in tables:
            columns = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ? ORDER BY ordinal_position",
                [table],
            ).fetchall()
            if not columns:
                raise SuiteError(f"dbgen writes no table {table!r}; TPC-H has {_tpch_tables(con)}")
            arrays = con.execute(export_select(table, columns)).fetchnumpy()
            out[table] = {name: arrays[name].tolist() for name, _ in columns}
        return out
    finally:
        con.close()


def _tpch_tables(con: Any) -> list[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def generate_tables(generator: Mapping[str, Any], scale: str) -> dict[str, dict[str, list]]:
    """The tables of a ``{"kind": "tpch"}`` generator spec at a scale tier, checked against the spec.

    The spec's ``rows`` per table and tier are what TPC-H's generator writes at that tier's scale
    factor; a generator that writes other counts (another version, another algorithm) fails here
    instead of silently changing the suite.

    Raises:
        SuiteError: no scale factor for ``scale``, or the row counts differ from the spec's.
        MissingExtraError: the generator is not installed.
    """
    factors = generator.get("scale_factors", {})
    if scale not in factors:
        raise SuiteError(f"no TPC-H scale factor for tier {scale!r}; known: {sorted(factors)}")
    tables = list(generator["tables"])
    data = generate(float(factors[scale]), tables)
    for table, spec in generator["tables"].items():
        want = spec.get("rows", {}).get(scale)
        got = len(next(iter(data[table].values()), []))
        if want is not None and int(want) != got:
            raise SuiteError(
                f"TPC-H dbgen ({generator_version()}) wrote {got} rows of {table} at sf {factors[scale]}, "
                f"the suite spec says {want}: the generator changed; update the spec's row counts"
            )
    return data
