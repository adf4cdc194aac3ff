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
The query is the harness's own (the task's original), run through the backend's trusted
:meth:`~quill_env.backends.base.Backend.query` without the sandbox, on any engine whose backend
has a row identity (:attr:`~quill_env.backends.base.Backend.row_id`); nothing here ever raises
for a bad query: it returns what it could find.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import Backend, TableInfo
from quill_env.errors import EngineError

ROWID_NAMES = ("rowid", "_rowid_", "oid")
"""SQLite's names for the rowid, tried after the backend's own :attr:`Backend.row_id`; a declared
column of the same name shadows it (an engine without the alias refuses it: then there is none)."""

_FAILURES = (
    sqlglot.errors.SqlglotError,
    EngineError,
    RecursionError,
    ValueError,
    TypeError,
    KeyError,
    OverflowError,
)
"""What a malformed query or an engine refusal can raise while a scope is built or run."""


@dataclass(frozen=True)
class ScopeLineage:
    """The rows behind one SELECT scope: one rowid per projected base table per answer row."""

    tables: tuple[str, ...]
    """Base table of each projected source (``TableInfo.name``; repeated for a self-join)."""
    rows: tuple[tuple[int | None, ...], ...]
    """Rowids per answer row, aligned with :attr:`tables` (``None`` for an outer join's miss)."""


def rowid_name(backend: Backend, info: TableInfo) -> str | None:
    """The name under which ``info``'s row id can be read on ``backend``, ``None`` if there is none.

    The engine's :attr:`~quill_env.backends.base.Backend.row_id` unless a declared column of that
    name shadows it; then SQLite's other aliases (``_rowid_``, ``oid``) in turn. A view, a
    WITHOUT ROWID table, an engine without a row id, or a table whose every alias is shadowed or
    refused, has none (DuckDB: a declared ``rowid`` column leaves none).

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.from_rows(
    ...     ["CREATE TABLE t(rowid TEXT, v)", "CREATE TABLE w(k PRIMARY KEY) WITHOUT ROWID"], {})
    >>> rowid_name(db, db.tables()["t"]), rowid_name(db, db.tables()["w"])
    ('_rowid_', None)
    """
    if info.is_view or backend.row_id is None:
        return None
    taken = {c.lower() for c in info.column_names}
    for name in dict.fromkeys((backend.row_id, *ROWID_NAMES)):
        if name.lower() in taken:
            continue
        probe = exp.select(exp.column(name)).from_(sqlbuild.table(info.name)).limit(0)
        try:
            backend.query(probe.sql(backend.dialect))
        except EngineError:
            return None
        return name
    return None


def lineage_scopes(
    backend: Backend,
    sql: str,
    *,
    limit: int = 200,
    max_work: int | None = None,
) -> list[ScopeLineage]:
    """The rows behind each standalone SELECT scope of ``sql`` (see the module docstring).

    Args:
        backend: the database; its trusted :meth:`~quill_env.backends.base.Backend.query` runs
            the scopes (no sandbox), its tables and dialect (``sql`` is in ``backend.dialect``)
            are used.
        sql: the query.
        limit: the most answer rows read per scope.
        max_work: the most work each scope may run, in the units of ``backend.query``'s
            ``max_work`` (SQLite: VM steps; ``None``: unlimited); a scope that exceeds it
            contributes nothing, the others still run.

    Returns:
        One entry per scope that ran and projects at least one base table, in the order of the
        query's text (outer scopes first).
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=backend.dialect) if s is not None]
    except _FAILURES:
        return []
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return []
    tree = statements[0]
    try:
        plans = _plans(backend, tree, backend.tables(), limit)
    except _FAILURES:
        return []
    return _run(backend, plans, limit, max_work)


def lineage_rowids(
    backend: Backend,
    sql: str,
    *,
    limit: int = 200,
    max_work: int | None = None,
) -> dict[str, list[int]]:
    """Row ids of the rows that contribute to ``sql``'s answer, by base table (why-provenance).

    Args:
        backend: the database (see :func:`lineage_scopes`); ``sql`` is in ``backend.dialect``.
        sql: the query; a query that does not parse or run gives ``{}``, never an exception.
        limit: the most answer rows read per SELECT scope.
        max_work: the most work each scope may run (see :func:`lineage_scopes`).

    Returns:
        Sorted row ids (the engine's :attr:`~quill_env.backends.base.Backend.row_id`) per
        ``TableInfo.name``, tables in name order; tables without a row id (WITHOUT ROWID tables,
        a shadowed DuckDB ``rowid``) and views are left out.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.from_rows(
    ...     ["CREATE TABLE u(id INTEGER PRIMARY KEY, city TEXT)",
    ...      "CREATE TABLE o(id INTEGER PRIMARY KEY, uid INT, total REAL)"],
    ...     {"u": [(1, "Oslo"), (2, "Rome"), (3, "Oslo")],
    ...      "o": [(10, 1, 5), (11, 2, 7), (12, 3, 900), (13, 3, 1)]})
    >>> sql = "SELECT u.city, SUM(o.total) FROM u JOIN o ON o.uid = u.id WHERE o.total < 100 GROUP BY 1"
    >>> lineage_rowids(db, sql)
    {'o': [10, 11, 13], 'u': [1, 2, 3]}
    >>> lineage_rowids(db, "SELECT * FROM nowhere")
    {}
    """
    found: dict[str, set[int]] = {}
    for scope in lineage_scopes(backend, sql, limit=limit, max_work=max_work):
        for position, table in enumerate(scope.tables):
            bucket = found.setdefault(table, set())
            bucket.update(r[position] for r in scope.rows if isinstance(r[position], int))
    return {name: sorted(found[name]) for name in sorted(found) if found[name]}


@dataclass(frozen=True)
class _Plan:
    tables: tuple[str, ...]
    query: exp.Select
    dialect: str

    def sql(self, rows: int) -> str:
        """The scope's projection reading at most ``rows`` answer rows."""
        query = self.query.copy()
        query.set("limit", exp.Limit(expression=exp.Literal.number(rows)))
        return query.sql(self.dialect)


def _plans(backend: Backend, tree: exp.Query, tables: Mapping[str, TableInfo], limit: int) -> list[_Plan]:
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
                rowids[name] = rowid_name(backend, info)
            if rowids[name] is None:
                continue
            qualifier = source.args["alias"].this if source.args.get("alias") else source.this
            column = exp.Column(this=exp.to_identifier(rowids[name]), table=qualifier.copy())
            sources.append((info.name, column))
        if not sources:
            continue
        projected = _projection(select, [c for _, c in sources], limit)
        plans.append(_Plan(tuple(t for t, _ in sources), projected, backend.dialect))
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


def _run(backend: Backend, plans: list[_Plan], limit: int, max_work: int | None) -> list[ScopeLineage]:
    out = []
    cap = max(1, int(limit))
    for plan in plans:
        stopped = False
        try:
            rows = backend.query(plan.sql(cap), max_work=max_work)[:cap]
        except _FAILURES as err:
            # a correlated scope, a budget stop or an engine refusal: keep what it gave
            rows = _rows_before_failure(backend, plan, cap, max_work)
            stopped = max_work is not None and isinstance(err, EngineError) and _BUDGET_STOP in str(err)
        if rows:
            out.append(ScopeLineage(plan.tables, tuple(rows)))
        if stopped:
            break  # the budget is spent: no later scope runs
    return out


_BUDGET_STOP = "exceeded its work budget"
"""What :meth:`Backend.query`'s :class:`EngineError` says when ``max_work`` stopped a statement."""


def _rows_before_failure(backend: Backend, plan: _Plan, cap: int, max_work: int | None) -> list[tuple]:
    """The rows a scope that failed with ``cap`` rows returned before it failed.

    :meth:`Backend.query` returns nothing of a statement it stops, but a scope's first ``k``
    rows are what it returns under ``LIMIT k`` (the same program, up to its ``k``-th row), so
    the longest limit that runs, found by bisection, gives them. A scope that does not
    compile (a correlated one) fails at once with ``LIMIT 1``.
    """
    best: list[tuple] = []
    low, high = 1, cap - 1
    while low <= high:
        mid = low if not best else (low + high + 1) // 2
        try:
            rows = backend.query(plan.sql(mid), max_work=max_work)
        except _FAILURES:
            if not best:
                return []  # not even one row
            high = mid - 1
            continue
        if len(rows) < mid:
            return rows  # it ended before its limit: it does not fail
        best, low = rows, mid + 1
    return best


__all__ = ["ScopeLineage", "lineage_rowids", "lineage_scopes", "rowid_name"]
