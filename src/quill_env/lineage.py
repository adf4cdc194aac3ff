"""Why-provenance of a query's answer: the base-table rows that produce it (approximately).

Verification databases are useful only where the original returns something, so they are built
around the rows behind its answer: the variant sampler seeds its samples with them and the
full-scale twins perturb them. For every SELECT scope of the query that can run on its own (the
top level, uncorrelated subqueries, CTE bodies, derived tables, set-operation branches), the
scope is rewritten to project the rowids of the base tables in its FROM/JOIN clauses under the
same FROM, JOIN and WHERE, with GROUP BY, HAVING, ORDER BY, LIMIT, DISTINCT and aggregates
dropped, and run with a row limit. A correlated scope does not compile on its own and is skipped
(its rows are reached through foreign keys by the sampler).

This is an over-approximation for aggregates filtered by HAVING and an under-approximation for
rows that only matter by their absence (``NOT EXISTS``); both are fine for seeding samples.
The query is the harness's own (the task's original), run on a trusted connection without the
sandbox; nothing here ever raises for a bad query: it returns what it could find.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import apsw
import sqlglot
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import TableInfo

ROWID_NAMES = ("rowid", "_rowid_", "oid")
"""SQLite's names for the rowid; a declared column of the same name shadows it."""

PROGRESS_OPS = 1000
"""VM instructions between two checks of the work limit."""

_FAILURES = (sqlglot.errors.SqlglotError, apsw.Error, RecursionError, ValueError, TypeError, KeyError)
"""What a malformed query or an engine refusal can raise while a scope is built or run."""


@dataclass(frozen=True)
class ScopeLineage:
    """The rows behind one SELECT scope: one rowid per projected base table per answer row."""

    tables: tuple[str, ...]
    """Base table of each projected source (``TableInfo.name``; repeated for a self-join)."""
    rows: tuple[tuple[int | None, ...], ...]
    """Rowids per answer row, aligned with :attr:`tables` (``None`` for an outer join's miss)."""


def rowid_name(connection: apsw.Connection, info: TableInfo) -> str | None:
    """The name under which ``info``'s rowid can be read, ``None`` for a WITHOUT ROWID table or view.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.empty()
    >>> _ = db.connection.execute(
    ...     "CREATE TABLE t(rowid TEXT, v); CREATE TABLE w(k PRIMARY KEY) WITHOUT ROWID")
    >>> rowid_name(db.connection, db.tables()["t"]), rowid_name(db.connection, db.tables()["w"])
    ('_rowid_', None)
    """
    if info.is_view:
        return None
    taken = {c.lower() for c in info.column_names}
    for name in ROWID_NAMES:
        if name in taken:
            continue
        probe = exp.select(exp.column(name)).from_(sqlbuild.table(info.name)).limit(0)
        try:
            connection.execute(probe.sql("sqlite"), can_cache=False).close(force=True)
        except apsw.Error:
            return None
        return name
    return None


def lineage_scopes(
    connection: apsw.Connection,
    sql: str,
    tables: Mapping[str, TableInfo],
    *,
    dialect: str = "sqlite",
    limit: int = 200,
    max_work: int | None = None,
) -> list[ScopeLineage]:
    """The rows behind each standalone SELECT scope of ``sql`` (see the module docstring).

    Args:
        connection: a trusted connection to the database (no sandbox is applied).
        sql: the query.
        tables: the database's tables by lower-cased name (``Backend.tables()``).
        dialect: the sqlglot dialect of ``sql``.
        limit: the most answer rows read per scope.
        max_work: the most VM steps all scopes together may run (``None``: unlimited); a scope
            stopped by it keeps the rows it returned so far.

    Returns:
        One entry per scope that ran and projects at least one base table, in the order of the
        query's text (outer scopes first).
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except _FAILURES:
        return []
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return []
    tree = statements[0]
    try:
        plans = _plans(connection, tree, tables, limit)
    except _FAILURES:
        return []
    return _run(connection, plans, limit, max_work)


def lineage_rowids(
    connection: apsw.Connection,
    sql: str,
    tables: Mapping[str, TableInfo],
    *,
    dialect: str = "sqlite",
    limit: int = 200,
    max_work: int | None = None,
) -> dict[str, list[int]]:
    """Rowids of the rows that contribute to ``sql``'s answer, by base table (why-provenance).

    Args:
        connection: a trusted connection to the database (no sandbox is applied).
        sql: the query; a query that does not parse or run gives ``{}``, never an exception.
        tables: the database's tables by lower-cased name (``Backend.tables()``).
        dialect: the sqlglot dialect of ``sql``.
        limit: the most answer rows read per SELECT scope.
        max_work: the most VM steps all scopes together may run (``None``: unlimited).

    Returns:
        Sorted rowids per ``TableInfo.name``, tables in name order; WITHOUT ROWID tables and
        views are left out.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.empty()
    >>> _ = db.connection.execute(
    ...     "CREATE TABLE u(id INTEGER PRIMARY KEY, city TEXT);"
    ...     "CREATE TABLE o(id INTEGER PRIMARY KEY, uid INT, total REAL);"
    ...     "INSERT INTO u VALUES (1, 'Oslo'), (2, 'Rome'), (3, 'Oslo');"
    ...     "INSERT INTO o VALUES (10, 1, 5), (11, 2, 7), (12, 3, 900), (13, 3, 1);")
    >>> sql = "SELECT u.city, SUM(o.total) FROM u JOIN o ON o.uid = u.id WHERE o.total < 100 GROUP BY 1"
    >>> lineage_rowids(db.connection, sql, db.tables())
    {'o': [10, 11, 13], 'u': [1, 2, 3]}
    >>> lineage_rowids(db.connection, "SELECT * FROM nowhere", db.tables())
    {}
    """
    found: dict[str, set[int]] = {}
    for scope in lineage_scopes(connection, sql, tables, dialect=dialect, limit=limit, max_work=max_work):
        for position, table in enumerate(scope.tables):
            bucket = found.setdefault(table, set())
            bucket.update(r[position] for r in scope.rows if isinstance(r[position], int))
    return {name: sorted(found[name]) for name in sorted(found) if found[name]}


@dataclass(frozen=True)
class _Plan:
    tables: tuple[str, ...]
    sql: str


def _plans(
    connection: apsw.Connection, tree: exp.Query, tables: Mapping[str, TableInfo], limit: int
) -> list[_Plan]:
    cte_names = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    rowids: dict[str, str | None] = {}
    plans = []
    for select in tree.find_all(exp.Select, bfs=True):
        sources = []
        for source in _sources(select):
            name = source.name.lower()
            if name in cte_names or name not in tables or source.args.get("db") not in (None, "main"):
                continue
            info = tables[name]
            if name not in rowids:
                rowids[name] = rowid_name(connection, info)
            if rowids[name] is None:
                continue
            qualifier = source.args["alias"].this if source.args.get("alias") else source.this
            column = exp.Column(this=exp.to_identifier(rowids[name]), table=qualifier.copy())
            sources.append((info.name, column))
        if not sources:
            continue
        projected = _projection(select, [c for _, c in sources], limit)
        plans.append(_Plan(tuple(t for t, _ in sources), projected.sql("sqlite")))
    return plans


def _sources(select: exp.Select) -> list[exp.Table]:
    from_ = select.args.get("from_")
    nodes = [from_.this] if from_ is not None else []
    nodes += [j.this for j in select.args.get("joins") or []]
    return [n for n in nodes if isinstance(n, exp.Table) and isinstance(n.this, exp.Identifier)]


def _projection(select: exp.Select, columns: list[exp.Column], limit: int) -> exp.Select:
    """``select`` reduced to its FROM, JOINs and WHERE, projecting ``columns``, with its CTEs."""
    query = select.copy()
    for key in ("group", "having", "order", "offset", "distinct", "qualify", "windows"):
        query.set(key, None)
    query.set("expressions", [c.as_(f"q{i}") for i, c in enumerate(columns)])
    query.set("limit", exp.Limit(expression=exp.Literal.number(max(1, int(limit)))))
    ctes = _visible_ctes(select)
    if ctes:
        own = query.args.get("with_")
        merged = {c.alias_or_name.lower(): c for c in ctes}
        if own is not None:
            merged.update({c.alias_or_name.lower(): c for c in own.expressions})
        recursive = any(w.args.get("recursive") for w in _withs(select)) or bool(
            own is not None and own.args.get("recursive")
        )
        query.set("with_", exp.With(expressions=[c.copy() for c in merged.values()], recursive=recursive))
    return query


def _withs(node: exp.Expression) -> list[exp.With]:
    """The WITH clauses of ``node``'s ancestors, outermost first."""
    found = []
    parent = node.parent
    while parent is not None:
        with_ = parent.args.get("with_") if isinstance(parent, exp.Query) else None
        if isinstance(with_, exp.With):
            found.append(with_)
        parent = parent.parent
    return found[::-1]


def _visible_ctes(node: exp.Expression) -> list[exp.CTE]:
    merged: dict[str, exp.CTE] = {}
    for with_ in _withs(node):
        merged.update({c.alias_or_name.lower(): c for c in with_.expressions})
    return list(merged.values())


def _run(
    connection: apsw.Connection, plans: list[_Plan], limit: int, max_work: int | None
) -> list[ScopeLineage]:
    calls = [0]
    stop_after = None if max_work is None else max(1, max_work // PROGRESS_OPS)

    def progress() -> bool:
        calls[0] += 1
        return stop_after is not None and calls[0] > stop_after

    out = []
    if stop_after is not None:
        connection.set_progress_handler(progress, PROGRESS_OPS)
    try:
        for plan in plans:
            if stop_after is not None and calls[0] > stop_after:
                break
            rows: list[tuple] = []
            try:
                cursor = connection.execute(plan.sql, can_cache=False)
                for row in cursor:
                    rows.append(row)
                    if len(rows) >= limit:
                        break
                cursor.close(force=True)
            except _FAILURES:
                pass  # a correlated scope, a budget stop or an engine refusal: keep what it gave
            if rows:
                out.append(ScopeLineage(plan.tables, tuple(rows)))
    finally:
        if stop_after is not None:
            connection.set_progress_handler(None)
    return out


__all__ = ["ScopeLineage", "lineage_rowids", "lineage_scopes", "rowid_name"]
