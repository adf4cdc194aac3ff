"""The PostgreSQL sandbox's statement gate and work counter, on PostgreSQL's own parser and plans.

The gate reads an untrusted statement with PostgreSQL's parser (``pglast``, which embeds the
server's grammar), so no parse difference between a Python SQL toolkit and the server can let a
statement through. It allows exactly one ``SELECT`` (no ``INTO``, no row locks, no sampling, no
parameters) whose every function is on an allowlist read from the server's catalog (immutable
built-ins, a few stable ones whose only dependency is the pinned time zone, and immutable
functions of the database's own schema), whose casts name plain data types (no ``regclass``,
``tid``, ``oid``, ...), which names no system column (``ctid`` and ``xmin`` differ between
the main database and its copies), no clock value (``'now'``, ``'today'``, ...) and no SQL value
function (``CURRENT_USER``, ``CURRENT_DATE``, ...), and which reads only the database's own
tables and views, unqualified or in its own schema.

The work counter reads the executed plan (``EXPLAIN ANALYZE`` as ``auto_explain`` reports it):

    work = sum over plan nodes of loops * (rows + rows removed by filters and rechecks)
           + PROBE_WORK * loops of every index scan
           + rows sorted * log2(rows sorted)

Every figure depends only on the plan and the data, and dead rows left by a rolled-back change
are never counted, so the same statement on the same data gives the same work in any process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from quill_env.backends.base import ExecStatus
from quill_env.errors import MissingExtraError

try:
    import pglast
    from pglast import ast
    from pglast.visitors import Visitor
except ImportError:  # pragma: no cover - the postgres extra is not installed
    raise MissingExtraError("postgres", "pglast") from None

PROBE_WORK = 4
"""Work charged for each descent of an index (a seek costs a few page reads however few rows it finds)."""

STABLE_ALLOWED = frozenset({
    "to_char", "to_date", "to_timestamp", "date_trunc", "date_part", "extract", "age", "timezone",
    "to_number", "date_bin", "make_timestamptz", "justify_days", "justify_hours", "justify_interval",
})  # fmt: skip
"""Stable functions allowed besides immutable ones: their results depend only on the session's
pinned settings (``TimeZone = 'UTC'``, ``DateStyle``), never on the clock (``age`` only with two
arguments)."""

DENIED_NAMES = frozenset({
    "now", "current_setting", "set_config", "current_database", "current_schema", "current_schemas",
    "current_user", "session_user", "version", "inet_server_addr", "inet_server_port", "inet_client_addr",
    "inet_client_port", "pg_backend_pid", "txid_current", "random", "setseed", "gen_random_uuid",
    "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday", "pg_sleep",
    "nextval", "currval", "lastval", "setval", "dblink", "lo_import", "lo_export", "query_to_xml",
    "table_to_xml", "cursor_to_xml", "database_to_xml", "schema_to_xml", "xpath", "xmlparse",
})  # fmt: skip
"""Names never allowed, whatever the catalog says of one of their overloads."""

ALLOWED_TYPES = frozenset({
    "int2", "int4", "int8", "smallint", "integer", "int", "bigint", "numeric", "decimal", "real",
    "float4", "float8", "float", "double precision", "text", "varchar", "bpchar", "char", "character",
    "character varying", "bool", "boolean", "date", "time", "timetz", "timestamp", "timestamptz",
    "interval", "bytea", "uuid", "json", "jsonb", "bit", "varbit",
})  # fmt: skip
"""Types a cast may name (besides the database's own enum types)."""

CLOCK_VALUES = frozenset({"now", "today", "tomorrow", "yesterday"})
"""String constants that a date or time input function reads as the current time."""

SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"})
"""System columns (they differ between the main database and its copies)."""

INDEX_NODES = frozenset({"Index Scan", "Index Only Scan", "Bitmap Index Scan"})


@dataclass(frozen=True)
class Catalog:
    """What the gate allows on one database: its functions, types and relations."""

    functions: frozenset[str]
    types: frozenset[str]
    relations: frozenset[str]
    schema: str


@dataclass
class GateResult:
    """The gate's decision on one statement (``status`` is ``None`` when it may run)."""

    status: ExecStatus | None = None
    error: str = ""
    kind: str = ""


class _Refused(Exception):
    def __init__(self, message: str, status: ExecStatus = ExecStatus.DENIED, kind: str = "denied") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _names(nodes: Any) -> list[str]:
    return [n.sval.lower() for n in nodes or () if isinstance(n, ast.String)]


class _Checker(Visitor):
    def __init__(self, catalog: Catalog, ctes: set[str]) -> None:
        super().__init__()
        self.catalog = catalog
        self.ctes = ctes

    def visit_SelectStmt(self, ancestors: Any, node: ast.SelectStmt) -> None:
        if node.intoClause is not None:
            raise _Refused("SELECT INTO is not allowed (it creates a table)")
        if node.lockingClause:
            raise _Refused("row locks (FOR UPDATE/SHARE) are not allowed")

    def visit_FuncCall(self, ancestors: Any, node: ast.FuncCall) -> None:
        parts = _names(node.funcname)
        name = parts[-1] if parts else ""
        if len(parts) > 1 and parts[0] not in ("pg_catalog", self.catalog.schema):
            raise _Refused(f"function {'.'.join(parts)}() is not allowed")
        nargs = len(node.args or ())
        if name in DENIED_NAMES or name not in self.catalog.functions or (name == "age" and nargs < 2):
            raise _Refused(f"function {name}() is not allowed")

    def visit_SQLValueFunction(self, ancestors: Any, node: Any) -> None:
        raise _Refused("SQL value functions (CURRENT_DATE, CURRENT_USER, ...) are not allowed")

    def visit_TypeCast(self, ancestors: Any, node: ast.TypeCast) -> None:
        self._type(node.typeName)

    def visit_ColumnDef(self, ancestors: Any, node: Any) -> None:
        raise _Refused("column definitions are not allowed")

    def _type(self, type_name: Any) -> None:
        if type_name is None:
            return
        parts = _names(type_name.names)
        name = " ".join(parts[-1:]) if parts else ""
        if len(parts) > 1 and parts[0] not in ("pg_catalog", self.catalog.schema):
            raise _Refused(f"a cast to {'.'.join(parts)} is not allowed")
        if name not in ALLOWED_TYPES and name not in self.catalog.types:
            raise _Refused(f"a cast to {name or 'this type'} is not allowed")

    def visit_A_Const(self, ancestors: Any, node: ast.A_Const) -> None:
        value = getattr(node, "val", None)
        if isinstance(value, ast.String) and value.sval.strip().lower() in CLOCK_VALUES:
            raise _Refused(f"the value '{value.sval.strip()}' reads the clock; not allowed")

    def visit_ColumnRef(self, ancestors: Any, node: ast.ColumnRef) -> None:
        parts = _names(node.fields)
        if parts and parts[-1] in SYSTEM_COLUMNS:
            raise _Refused(f"the system column {parts[-1]} is not allowed")

    def visit_ParamRef(self, ancestors: Any, node: Any) -> None:
        raise _Refused("bound parameters are not allowed")

    def visit_RangeTableSample(self, ancestors: Any, node: Any) -> None:
        raise _Refused("sampling (TABLESAMPLE) is not allowed")

    def visit_RangeVar(self, ancestors: Any, node: ast.RangeVar) -> None:
        schema = (node.schemaname or "").lower()
        name = (node.relname or "").lower()
        if node.catalogname or (schema and schema not in (self.catalog.schema, "public")):
            raise _Refused(f"table {schema}.{name} is not allowed: only the database's own tables")
        if schema or name not in self.ctes:
            if name.startswith(("pg_", "information_schema")) or schema in (
                "pg_catalog",
                "information_schema",
            ):
                raise _Refused(f"the catalog table {name} is not allowed")
            if name not in self.catalog.relations:
                raise _Refused(
                    f"table {name} is not allowed: only the database's own tables",
                    ExecStatus.PREPARE_ERROR,
                    "engine_error",
                )

    def visit_XmlExpr(self, ancestors: Any, node: Any) -> None:
        raise _Refused("XML expressions are not allowed")


class _CteNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def visit_CommonTableExpr(self, ancestors: Any, node: ast.CommonTableExpr) -> None:
        self.names.add((node.ctename or "").lower())


def check(sql: str, catalog: Catalog) -> GateResult:
    """Whether ``sql`` may run as a candidate on a database with ``catalog`` (see the module docstring)."""
    if "\x00" in sql:
        return GateResult(ExecStatus.DENIED, "a NUL character is not allowed in a statement", "denied")
    try:
        statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError as err:
        return GateResult(
            ExecStatus.PREPARE_ERROR, f"syntax error: {str(err).splitlines()[0][:300]}", "engine_error"
        )
    except (RecursionError, MemoryError):
        return GateResult(ExecStatus.DENIED, "the statement is nested too deeply", "denied")
    if len(statements) != 1:
        if not statements:
            return GateResult(ExecStatus.PREPARE_ERROR, "no statement", "engine_error")
        return GateResult(ExecStatus.DENIED, "multiple statements are not allowed", "denied")
    stmt = statements[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        kind = type(stmt).__name__.removesuffix("Stmt")
        return GateResult(
            ExecStatus.DENIED, f"{kind} statements are not allowed: only a read-only query", "denied"
        )
    try:
        ctes = _CteNames()
        ctes(stmt)
        _Checker(catalog, ctes.names)(stmt)
    except _Refused as refused:
        return GateResult(refused.status, str(refused), refused.kind)
    except RecursionError:
        return GateResult(ExecStatus.DENIED, "the statement is nested too deeply", "denied")
    return GateResult()


def _nodes(plan: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    stack = [plan]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.get("Plans") or [])


def plan_counters(plan: Mapping[str, Any]) -> dict[str, int]:
    """The raw figures of one executed plan (``auto_explain``'s or ``EXPLAIN ANALYZE``'s JSON ``Plan``)."""
    rows = removed = probes = sorted_work = nodes = 0
    buffers = {"shared_hit": 0, "shared_read": 0, "temp_read": 0, "temp_written": 0}
    for node in _nodes(plan):
        loops = int(node.get("Actual Loops", 0) or 0)
        if loops == 0:
            continue
        nodes += 1
        out = int(node.get("Actual Rows", 0) or 0) * loops
        rows += out
        for key in ("Rows Removed by Filter", "Rows Removed by Join Filter", "Rows Removed by Index Recheck"):
            removed += int(node.get(key, 0) or 0) * loops
        if node.get("Node Type") in INDEX_NODES:
            probes += loops
        if node.get("Node Type") in ("Sort", "Incremental Sort") and out > 1:
            sorted_work += int(out * math.log2(out))
    top = plan
    buffers["shared_hit"] = int(top.get("Shared Hit Blocks", 0) or 0)
    buffers["shared_read"] = int(top.get("Shared Read Blocks", 0) or 0)
    buffers["temp_read"] = int(top.get("Temp Read Blocks", 0) or 0)
    buffers["temp_written"] = int(top.get("Temp Written Blocks", 0) or 0)
    return {
        "rows": rows,
        "removed": removed,
        "probes": probes,
        "sorted": sorted_work,
        "nodes": nodes,
        **buffers,
    }


def work_of(counters: Mapping[str, int]) -> int:
    """The deterministic work of one statement from :func:`plan_counters`' figures.

    >>> work_of({"rows": 10, "removed": 90, "probes": 2, "sorted": 0})
    108
    """
    return int(
        counters.get("rows", 0)
        + counters.get("removed", 0)
        + PROBE_WORK * counters.get("probes", 0)
        + counters.get("sorted", 0)
    )


def relations(plan: Mapping[str, Any]) -> frozenset[str]:
    """The base tables the executed plan read (views are expanded by the planner)."""
    return frozenset(
        str(n["Relation Name"]).lower()
        for n in _nodes(plan)
        if n.get("Relation Name") and int(n.get("Actual Loops", 0) or 0) > 0
    )


__all__ = ["PROBE_WORK", "Catalog", "GateResult", "check", "plan_counters", "relations", "work_of"]
