"""The embedded DuckDB backend (the ``duckdb`` extra).

Private copy
    The task database file is attached read-only (``READ_ONLY, TYPE duckdb``), copied into an
    in-memory database with ``COPY FROM DATABASE`` and detached, so the file is never opened for
    writing and is byte-identical after any action. Variant databases are built in memory from
    ``CREATE TABLE`` statements and rows (:meth:`DuckDBBackend.from_rows`). :meth:`~DuckDBBackend.clone`
    rebuilds the same database in a new in-memory instance from its recipe (the file, or the
    statements and rows, plus every trusted unsandboxed statement run since).

Lockdown
    Every connection runs single-threaded (``threads = 1``: the work counter and row order repeat
    exactly), with extension autoloading/autoinstall off, no community or unsigned extensions,
    no Python replacement scans (a query cannot read a Python variable), no temporary directory
    (nothing spills to disk), ``TimeZone = 'UTC'`` and the Gregorian calendar. Once the data is
    loaded: ``memory_limit`` is set (see below), profiling is switched on with ``no_output``,
    ``enable_external_access = false`` and ``disabled_filesystems = 'LocalFileSystem'`` cut off
    files and the network (COPY, ATTACH, INSTALL/LOAD, ``read_csv``, ``glob``, ... all fail with
    a permission error) and ``lock_configuration = true`` makes every setting final: no
    statement, trusted or not, can change a setting afterwards.

Sandbox (``sandboxed=True``)
    A statement runs only when (1) its first keyword is SELECT, WITH, FROM, VALUES, TABLE or
    ``(`` (so PRAGMA, SHOW, DESCRIBE, SUMMARIZE, which DuckDB rewrites into SELECTs, are refused),
    (2) DuckDB's parser (``extract_statements``) finds exactly one statement, of type SELECT, and
    (3) its *bound* logical plan (``json_serialize_plan``, the binder's own output, after views
    and macros are expanded) calls no table function outside :data:`ALLOWED_TABLE_FUNCTIONS`,
    no scalar or aggregate function in :func:`denied_functions` (every function the catalog marks
    ``VOLATILE`` or ``CONSISTENT_WITHIN_QUERY``: random, setseed, uuid, nextval, now,
    current_date, ...; plus :data:`EXTRA_DENIED_FUNCTIONS`, such as ``current_setting``, which
    would reveal the memory limit and so the database's size), and has no sample
    (``USING SAMPLE``/``TABLESAMPLE``). Anything else is ``DENIED``. Non-deterministic
    functions are refused, not pinned: DuckDB has no way to fix the clock or the random seed of
    a connection.

Budgets
    ``max_seconds``: a timer thread calls ``connection.interrupt()`` (``TIMEOUT``). ``max_rows``:
    rows are fetched from the streaming result in chunks (``ROW_CAP``). ``max_work``: DuckDB has
    no progress callback, so the work is checked when the statement ends (``TIMEOUT`` when it
    exceeds the budget; the wall-clock limit bounds what a statement can do before that).
    ``max_value_bytes``: checked on the values returned (``DENIED``, ``too_big``); intermediate
    values are bounded by the memory limit only. Memory: ``memory_limit`` is global to a DuckDB
    instance and frozen by ``lock_configuration``, so it is fixed when the database is opened, at
    twice the memory the loaded data occupies plus ``heap_bytes`` (default
    :data:`DEFAULT_HEAP_BYTES`): room for the statement's own heap and for scratch indexes as big
    as the data. Exhausting it is ``RUNTIME_ERROR`` with ``error_kind="out_of_memory"``; a
    ``Budget.max_heap_bytes`` cannot tighten it per statement.

Work counter
    With profiling on and one thread, DuckDB reports per operator the rows it produced
    (``operator_cardinality``) and the rows it read from storage (``operator_rows_scanned``).
    The work of a statement is::

        work = cumulative_cardinality + cumulative_rows_scanned + nested_loop_pairs

    where ``cumulative_cardinality`` is the sum over all operators of the rows they produced,
    ``cumulative_rows_scanned`` the sum of the rows read by the scans (a full scan of 100,000
    rows costs 100,000 even when a filter keeps one; an ART index lookup reads one), and
    ``nested_loop_pairs`` the sum, over ``NESTED_LOOP_JOIN`` and ``BLOCKWISE_NL_JOIN`` operators,
    of the product of their two inputs' cardinalities (the pairs they compare, which the
    output cardinality does not show). All three depend only on the plan and the data, so the
    same query on the same data gives the same number in any process. The raw figures are in
    ``ExecResult.counters``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sqlglot import exp

from quill_env.errors import DatabaseError, EngineError, IndexBuildError, MissingExtraError

try:
    import duckdb
except ImportError:  # pragma: no cover - the duckdb extra is not installed
    raise MissingExtraError("duckdb", "duckdb") from None

from quill_env import sqlbuild
from quill_env.backends import ddl
from quill_env.backends.base import (
    COMMON_DENIED_FUNCTIONS,
    Backend,
    Budget,
    ColumnInfo,
    ExecResult,
    ExecStatus,
    ForeignKey,
    IndexInfo,
    IndexSpec,
    SandboxRules,
    TableInfo,
    Timer,
    Watchdog,
    largest_value,
)

DEFAULT_HEAP_BYTES = 512 << 20
"""Memory a statement may use on top of the data (the evaluator's default ``max_heap_mb``)."""

MIN_MEMORY_LIMIT = 64 << 20
"""The smallest ``memory_limit`` a connection gets (DuckDB needs some buffer memory to run)."""

FETCH_ROWS = 2048
"""Rows fetched from a streaming result at a time (one DuckDB vector)."""

INSERT_CELLS = 4000
"""Values bound in one multi-row ``INSERT`` when loading rows without pyarrow."""

DUCKDB_MAGIC = b"DUCK"
"""Bytes 8-11 of every DuckDB database file."""

CONNECT_CONFIG: dict[str, Any] = {
    "threads": 1,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
    "temp_directory": "",
    "max_temp_directory_size": "0B",
}
"""Settings of every connection from the start."""

SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET Calendar = 'gregorian'",
    "SET enable_progress_bar = false",
)
"""Settings applied right after connecting (options of built-in extensions, session options)."""

ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"seq_scan", "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree"}
)
"""Table functions a sandboxed statement may call (``seq_scan`` is a table or index scan)."""

EXTRA_DENIED_FUNCTIONS = frozenset({
    "current_setting", "getvariable", "getenv", "current_localtime", "current_localtimestamp",
    "localtime", "localtimestamp", "current_time", "current_timestamp", "get_current_time",
    "get_current_timestamp", "now", "today", "current_date", "random", "setseed", "uuid", "uuidv4",
    "uuidv7", "gen_random_uuid", "nextval", "currval", "sleep_ms", "write_log",
    "json_execute_serialized_sql", "which_secret",
})  # fmt: skip
"""Functions refused besides the catalog's volatile ones (some ICU clock functions are marked
consistent; ``current_setting`` and ``getvariable`` read engine state)."""

SANDBOX_RULES = SandboxRules(
    denied_functions=COMMON_DENIED_FUNCTIONS | EXTRA_DENIED_FUNCTIONS,
    internal_table_prefixes=("duckdb_", "pragma_", "sqlite_", "pg_", "information_schema"),
)
"""What the action policy refuses before a statement reaches DuckDB (the statement gate refuses
every volatile function of the catalog, :func:`denied_functions`, again)."""

ALLOWED_VOLATILE_FUNCTIONS = frozenset({"error"})
"""Volatile functions that stay allowed: ``error`` is what a scalar subquery calls on two rows."""

NESTED_LOOP_OPERATORS = frozenset({"NESTED_LOOP_JOIN", "BLOCKWISE_NL_JOIN"})
"""Operators that compare every pair of their inputs (charged as the product of the inputs)."""

_FIRST_KEYWORDS = frozenset({"select", "with", "from", "values", "table"})
_DENIED_PLAN_WORDS = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "ALTER", "DROP", "COPY", "EXPORT", "PRAGMA",
    "SET", "RESET", "ATTACH", "DETACH", "LOAD", "TRANSACTION", "VACUUM", "SAMPLE", "EXPLAIN",
    "SIMPLE", "EXTENSION",
})  # fmt: skip
_PREPARE_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)
_WORD = re.compile(r"[A-Za-z_]+")

_DENIED_LOCK = threading.Lock()
_DENIED: list[frozenset[str]] = []


def denied_functions() -> frozenset[str]:
    """Scalar and aggregate functions a sandboxed statement may not call.

    Every function DuckDB's catalog marks ``VOLATILE`` or ``CONSISTENT_WITHIN_QUERY`` (computed
    once per process), plus :data:`EXTRA_DENIED_FUNCTIONS`, less ``error``.
    """
    with _DENIED_LOCK:
        if not _DENIED:
            con = duckdb.connect(":memory:", config={"threads": 1, "autoload_known_extensions": False})
            try:
                names = {
                    r[0]
                    for r in con.execute(
                        "SELECT DISTINCT function_name FROM duckdb_functions() "
                        "WHERE stability IN ('VOLATILE', 'CONSISTENT_WITHIN_QUERY')"
                    ).fetchall()
                }
            finally:
                con.close()
            _DENIED.append(frozenset((names | EXTRA_DENIED_FUNCTIONS) - ALLOWED_VOLATILE_FUNCTIONS))
        return _DENIED[0]


@dataclass
class _Recipe:
    """How to rebuild a backend's database in a new instance (for :meth:`DuckDBBackend.clone`)."""

    path: Path | None = None
    stat: tuple[int, int] | None = None
    schema_sql: list[str] = field(default_factory=list)
    rows: dict[str, list[tuple]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    """Trusted unsandboxed statements that changed the database, in order."""


@dataclass
class _Gate:
    """The outcome of the sandbox check of one statement."""

    status: ExecStatus | None = None
    error: str = ""
    kind: str = ""
    tables: frozenset[str] = frozenset()


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:", config=dict(CONNECT_CONFIG))
    for stmt in SESSION_SETTINGS:
        con.execute(stmt)
    return con


def _memory_bytes(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT COALESCE(SUM(memory_usage_bytes), 0) FROM duckdb_memory()").fetchone()
    return int(row[0]) if row else 0


def _lock_down(con: duckdb.DuckDBPyConnection, heap_bytes: int) -> int:
    """Fix the memory limit, switch profiling on, cut off files and lock the configuration.

    Returns the memory the data occupies.
    """
    base = _memory_bytes(con)
    limit = max(2 * base + heap_bytes, MIN_MEMORY_LIMIT)
    con.execute(f"SET memory_limit = '{int(limit)}B'")
    con.execute("PRAGMA enable_profiling = 'no_output'")
    con.execute("SET enable_external_access = false")
    con.execute("SET disabled_filesystems = 'LocalFileSystem'")
    con.execute("SET lock_configuration = true")
    probe = con.execute("SELECT json_serialize_plan('SELECT 1')").fetchone()
    if not probe or json.loads(probe[0]).get("error"):
        raise DatabaseError("this DuckDB build cannot serialize plans (the json extension is missing)")
    return base


def _quoted(name: str) -> str:
    return sqlbuild.table(name).sql("duckdb")


def _insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple]) -> None:
    """Insert ``rows`` (tuples in the table's column order) into ``table``."""
    if not rows:
        return
    width = len(rows[0])
    if width == 0:
        return
    if _insert_arrow(con, table, rows, width):
        return
    batch = max(1, INSERT_CELLS // width)
    one = "(" + ", ".join(["?"] * width) + ")"
    target = _quoted(table)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        sql = f"INSERT INTO {target} VALUES " + ", ".join([one] * len(chunk))
        con.execute(sql, list(itertools.chain.from_iterable(chunk)))


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple], width: int) -> bool:
    """The fast path through pyarrow, when it is installed and infers a type for every column."""
    try:
        import pyarrow as pa
    except ImportError:
        return False
    try:
        columns = list(zip(*rows, strict=True))
        arrow = pa.table({f"c{i}": pa.array(list(col)) for i, col in enumerate(columns)})
    except Exception:  # mixed or unsupported values: take the VALUES path
        return False
    if arrow.num_columns != width:
        return False
    con.register("quill_rows", arrow)
    try:
        con.execute(f"INSERT INTO {_quoted(table)} SELECT * FROM quill_rows")
    except duckdb.Error:
        return False  # the INSERT is atomic: nothing was added; the VALUES path decides
    finally:
        con.unregister("quill_rows")
    return True


def _load(con: duckdb.DuckDBPyConnection, recipe: _Recipe) -> None:
    """Fill a fresh connection from ``recipe``."""
    if recipe.path is not None:
        _attach_copy(con, recipe.path)
    for stmt in recipe.schema_sql:
        con.execute(stmt)
    for table, rows in recipe.rows.items():
        _insert_rows(con, table, rows)
    for stmt, params in recipe.log:
        con.execute(stmt, list(params) if params else None)


def _loaded(recipe: _Recipe, failure: str) -> duckdb.DuckDBPyConnection:
    """A new connection holding the database ``recipe`` describes.

    Raises:
        DatabaseError: ``failure``, with the engine's reason, when DuckDB refuses the recipe.
    """
    con = _connect()
    try:
        _load(con, recipe)
    except duckdb.Error as err:
        con.close()
        raise DatabaseError(f"{failure}: {_clean(err)}") from None
    return con


def port_ddl(schema_sql: Sequence[str], dialect: str | None = None) -> list[str]:
    """DDL as DuckDB runs it for Quill (see :func:`quill_env.backends.ddl.port_ddl`).

    >>> for stmt in port_ddl(["CREATE TABLE o (id INTEGER PRIMARY KEY, u INT REFERENCES u(id))"], "sqlite"):
    ...     print(stmt)
    CREATE TABLE o (id BIGINT PRIMARY KEY, u BIGINT)
    COMMENT ON TABLE o IS 'quill:foreign_keys=[[["u"], "u", ["id"]]]'

    Raises:
        DatabaseError: a statement does not parse.
    """
    return ddl.port_ddl(schema_sql, dialect, "duckdb")


def _attach_copy(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    literal = exp.Literal.string(path.resolve().as_posix()).sql("duckdb")
    con.execute(f"ATTACH {literal} AS quill_source (READ_ONLY, TYPE duckdb)")
    try:
        con.execute("COPY FROM DATABASE quill_source TO memory")
    finally:
        con.execute("DETACH quill_source")


def _file_stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _clean(err: BaseException) -> str:
    """The engine message's first line (no ``LINE n:`` excerpt of the statement)."""
    text = str(err).strip().split("\n", 1)[0]
    return text[:500]


def _walk(node: Any) -> Iterator[dict]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _first_keyword(sql: str) -> str:
    """The statement's first token, lower-cased, as DuckDB's tokenizer finds it (comments skipped)."""
    tokens = duckdb.tokenize(sql)
    if not tokens:
        return ""
    offset = tokens[0][0]
    if sql[offset : offset + 1] == "(":
        return "("
    match = _WORD.match(sql, offset)
    return match.group(0).lower() if match else sql[offset : offset + 1]


class DuckDBBackend(Backend):
    """DuckDB in memory: profiler work counter, locked configuration, plan-checked sandbox."""

    name: ClassVar[str] = "duckdb"
    display_name: ClassVar[str] = "DuckDB"
    dialect: ClassVar[str] = "duckdb"
    work_unit: ClassVar[str] = "rows_processed"
    calibration_alpha: ClassVar[float] = 0.142
    """Fitted against bare wall time over every fourth shipped reference at the medium scale
    (``benchmarks/engines.py --engine duckdb --scale medium --every 4``, 180 pairs, results in
    ``benchmarks/results/engines-duckdb.json``). At that size a DuckDB statement costs about as
    much as reading 27,600 rows before it reads any, so the fit damps the work ratio hard: with
    alpha 1 and no fixed cost a quarter of the references were paid a tier above their wall
    tier (an ART lookup that reads 6 rows instead of 9,000 is not faster on the clock), with
    these none is. The counter does not see column width, so the rank agreement is poor
    (Spearman 0.07): rewrites that read fewer columns are faster on the clock and not paid."""
    calibration_statement_work: ClassVar[float] = 27_600.0
    calibration_row_work: ClassVar[float] = 128.0
    deterministic_work: ClassVar[bool] = True
    file_suffixes: ClassVar[tuple[str, ...]] = (".duckdb", ".ddb")
    file_header: ClassVar[tuple[int, bytes] | None] = (8, DUCKDB_MAGIC)
    row_id: ClassVar[str | None] = "rowid"
    sandbox_rules: ClassVar[SandboxRules] = SANDBOX_RULES
    nested_transient: ClassVar[bool] = False
    """DuckDB has no savepoints: a twin is applied to a clone (see :mod:`quill_env.twins`)."""
    indexes_matter: ClassVar[bool] = False
    """DuckDB's planner uses an ART index only for point lookups (see :meth:`scratch_indexes`)."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        *,
        label: str = ":memory:",
        timer: Timer = time.perf_counter,
        heap_bytes: int = DEFAULT_HEAP_BYTES,
        recipe: _Recipe | None = None,
    ) -> None:
        """Wrap a connection that is loaded but not yet locked (use the constructors)."""
        self._conn = connection
        self._label = label
        self._timer = timer
        self._heap_bytes = heap_bytes
        self._recipe = recipe or _Recipe()
        self._tables: dict[str, TableInfo] | None = None
        self._scratch: list[str] = []
        self._in_transient = False
        self._closed = False
        self._base_bytes = _lock_down(connection, heap_bytes)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        timer: Timer = time.perf_counter,
        heap_bytes: int = DEFAULT_HEAP_BYTES,
    ) -> DuckDBBackend:
        """Open a private in-memory copy of the DuckDB file at ``path``, reading the file only.

        Raises:
            DatabaseError: the file does not exist or is not a DuckDB database.
        """
        path = Path(path)
        if not path.is_file():
            raise DatabaseError(f"no such database file: {path}")
        with path.open("rb") as file:
            header = file.read(12)
        if len(header) < 12 or header[8:12] != DUCKDB_MAGIC:
            raise DatabaseError(
                f"{path} is not a DuckDB database (it lacks the DuckDB file header); "
                "pass a .duckdb file, or a sqlite:/// URL for a SQLite file"
            )
        recipe = _Recipe(path=path.resolve(), stat=_file_stat(path))
        con = _loaded(recipe, f"cannot open {path} as a DuckDB database")
        return cls(con, label=str(path), timer=timer, heap_bytes=heap_bytes, recipe=recipe)

    @classmethod
    def empty(
        cls, *, timer: Timer = time.perf_counter, heap_bytes: int = DEFAULT_HEAP_BYTES
    ) -> DuckDBBackend:
        """A new empty in-memory database."""
        return cls(_connect(), timer=timer, heap_bytes=heap_bytes)

    @classmethod
    def from_rows(
        cls,
        schema_sql: Sequence[str],
        rows: Mapping[str, Sequence[tuple]],
        *,
        label: str = ":memory:",
        dialect: str | None = None,
        timer: Timer = time.perf_counter,
        heap_bytes: int = DEFAULT_HEAP_BYTES,
    ) -> DuckDBBackend:
        """A database built from ``CREATE TABLE`` (or other DDL) statements and rows per table.

        ``rows`` maps a table name to tuples in the table's column order. This is how variant
        databases are loaded. DDL in another ``dialect`` is ported (:func:`port_ddl`).

        Raises:
            DatabaseError: a statement or a row was refused by the engine.
        """
        recipe = _Recipe(schema_sql=port_ddl(schema_sql, dialect), rows={k: list(v) for k, v in rows.items()})
        con = _loaded(recipe, "cannot build the database")
        return cls(con, label=label, timer=timer, heap_bytes=heap_bytes, recipe=recipe)

    @classmethod
    def create_file(
        cls,
        path: str | os.PathLike[str],
        schema_sql: Sequence[str],
        columns: Mapping[str, Mapping[str, Sequence[object]]],
        *,
        dialect: str | None = None,
    ) -> None:
        """Write a new DuckDB file at ``path`` from DDL and column-major data per table.

        Raises:
            DatabaseError: ``path`` exists, or the engine refused a statement or a row.
        """
        if os.path.exists(path):
            raise DatabaseError(f"{path} exists; a new database file is written only where none is")
        con = duckdb.connect(os.fspath(path), config=dict(CONNECT_CONFIG))
        try:
            for stmt in port_ddl(schema_sql, dialect):
                con.execute(stmt)
            for table, data in columns.items():
                _insert_rows(con, table, list(zip(*data.values())))
            con.execute("CHECKPOINT")
        except duckdb.Error as err:
            raise DatabaseError(f"cannot write {path}: {_clean(err)}") from None
        finally:
            con.close()

    def clone(self) -> DuckDBBackend:
        """Another private copy of this database, in a new DuckDB instance.

        Raises:
            DatabaseError: the database file changed since it was opened.
        """
        recipe = self._recipe
        if recipe.path is not None and recipe.stat != _file_stat(recipe.path):
            raise DatabaseError(f"{recipe.path} changed since it was opened; open it again")
        copy = _Recipe(recipe.path, recipe.stat, list(recipe.schema_sql), recipe.rows, list(recipe.log))
        con = _loaded(copy, f"cannot clone {self._label}")
        return DuckDBBackend(
            con, label=self._label, timer=self._timer, heap_bytes=self._heap_bytes, recipe=copy
        )

    @property
    def label(self) -> str:
        """Where this database came from (a path or a variant name)."""
        return self._label

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (harness use only; bypasses the sandbox)."""
        return self._conn

    @property
    def memory_limit_bytes(self) -> int:
        """The connection's fixed ``memory_limit`` (see the module docstring)."""
        return max(2 * self._base_bytes + self._heap_bytes, MIN_MEMORY_LIMIT)

    def size_bytes(self) -> int:
        """The memory the database's data occupies."""
        return _memory_bytes(self._conn)

    # --- identity --------------------------------------------------------------------------

    def engine_version(self) -> str:
        """The DuckDB library's version."""
        return f"DuckDB {duckdb.__version__}"

    # --- sandbox ---------------------------------------------------------------------------

    def _gate(self, sql: str) -> _Gate:
        """Check that ``sql`` is a single read-only query with allowed functions only."""
        con = self._conn
        if "\x00" in sql:  # DuckDB's C API ends the text there; never let two layers read it differently
            return _Gate(ExecStatus.DENIED, "a NUL character is not allowed in a statement", "denied")
        try:
            keyword = _first_keyword(sql)
        except (duckdb.Error, RuntimeError) as err:
            return _Gate(ExecStatus.PREPARE_ERROR, _clean(err), "engine_error")
        if keyword not in _FIRST_KEYWORDS and keyword != "(":
            shown = keyword.upper() if keyword.isidentifier() else "this statement"
            return _Gate(
                ExecStatus.DENIED, f"{shown} is not allowed: only a read-only query may run", "denied"
            )
        try:
            statements = con.extract_statements(sql)
        except duckdb.PermissionException as err:
            return _Gate(ExecStatus.DENIED, _clean(err), "denied")
        except duckdb.Error as err:
            return _Gate(ExecStatus.PREPARE_ERROR, _clean(err), "engine_error")
        if len(statements) != 1:
            if not statements:
                return _Gate(ExecStatus.PREPARE_ERROR, "no statement", "engine_error")
            return _Gate(ExecStatus.DENIED, "multiple statements are not allowed", "denied")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            return _Gate(ExecStatus.DENIED, f"{kind.name} statements are not allowed", "denied")
        try:
            row = con.execute("SELECT json_serialize_plan(?::VARCHAR)", [sql]).fetchone()
        except duckdb.PermissionException as err:
            return _Gate(ExecStatus.DENIED, _clean(err), "denied")
        except duckdb.InterruptException:
            raise
        except duckdb.Error as err:
            return _Gate(ExecStatus.PREPARE_ERROR, _clean(err), "engine_error")
        plan = json.loads(row[0]) if row and row[0] else {"error": True, "error_type": "unknown"}
        if plan.get("error"):
            etype = str(plan.get("error_type", ""))
            message = str(plan.get("error_message", "")).split("\n", 1)[0][:500]
            if etype == "permission":
                return _Gate(ExecStatus.DENIED, message, "denied")
            if etype in ("not implemented", "unknown", "serialization"):
                return _Gate(ExecStatus.DENIED, f"the statement cannot be checked: {message}", "unverifiable")
            return _Gate(ExecStatus.PREPARE_ERROR, message, "engine_error")
        return self._check_plan(plan)

    @staticmethod
    def _check_plan(plan: dict) -> _Gate:
        denied = denied_functions()
        tables: set[str] = set()
        for node in _walk(plan.get("plans", [])):
            ntype = node.get("type")
            if isinstance(ntype, str) and ntype.startswith("LOGICAL_"):
                if set(ntype.split("_")) & _DENIED_PLAN_WORDS:
                    what = ntype.removeprefix("LOGICAL_").lower().replace("_", " ")
                    return _Gate(ExecStatus.DENIED, f"{what} is not allowed in a query", "denied")
                if ntype == "LOGICAL_GET":
                    fname = str(node.get("name", ""))
                    if fname not in ALLOWED_TABLE_FUNCTIONS:
                        return _Gate(ExecStatus.DENIED, f"table function {fname}() is not allowed", "denied")
                    if (node.get("extra_info") or {}).get("sample_options") is not None:
                        return _Gate(ExecStatus.DENIED, "sampling is not allowed", "denied")
                    data = node.get("function_data") or {}
                    if fname == "seq_scan" and data.get("table"):
                        tables.add(str(data["table"]).lower())
                continue
            fname = node.get("name")
            if "expression_class" in node and isinstance(fname, str) and fname.lower() in denied:
                return _Gate(ExecStatus.DENIED, f"function {fname}() is not allowed", "denied")
        return _Gate(tables=frozenset(tables))

    # --- execution -------------------------------------------------------------------------

    def execute(
        self,
        sql: str,
        budget: Budget | None = None,
        *,
        sandboxed: bool = True,
        double_quoted_strings: bool = True,
    ) -> ExecResult:
        """Run one statement under ``budget`` and fetch its rows (see :class:`Backend`).

        Args:
            sql: exactly one statement (unsandboxed harness statements may be several).
            budget: work (rows processed), time, row and value-size limits; the heap is the
                connection's fixed memory limit.
            sandboxed: apply the statement and plan checks.
            double_quoted_strings: ignored (DuckDB reads ``"text"`` as an identifier only).
        """
        del double_quoted_strings
        budget = budget or Budget()
        conn = self._conn
        timer = self._timer
        start = timer()
        rows: list[tuple] = []
        columns: list[str] = []
        status, error, kind = ExecStatus.OK, "", ""
        tables_read: frozenset[str] = frozenset()
        profile: dict | None = None
        watchdog = Watchdog(conn.interrupt, budget.max_seconds)
        try:
            gate = self._gate(sql) if sandboxed else _Gate()
            if gate.status is not None:
                status, error, kind = gate.status, gate.error, gate.kind
            else:
                tables_read = gate.tables
                result = conn.execute(sql)
                columns = [d[0] for d in (result.description or [])]
                cap = budget.max_rows
                while True:
                    want = FETCH_ROWS if cap is None else min(FETCH_ROWS, cap + 1 - len(rows))
                    chunk = result.fetchmany(max(want, 1))
                    if not chunk:
                        break
                    rows.extend(chunk)
                    if cap is not None and len(rows) > cap:
                        del rows[cap + 1 :]
                        status, error = ExecStatus.ROW_CAP, f"more than {cap:,} rows"
                        break
                if status is ExecStatus.OK:
                    profile = self._profile()
        except duckdb.InterruptException:
            status, error = ExecStatus.TIMEOUT, "stopped at the time budget"
        except duckdb.OutOfMemoryException as err:
            status, error, kind = ExecStatus.RUNTIME_ERROR, _clean(err), "out_of_memory"
        except duckdb.PermissionException as err:
            status, error, kind = ExecStatus.DENIED, _clean(err), "denied"
        except _PREPARE_ERRORS as err:
            status, error, kind = ExecStatus.PREPARE_ERROR, _clean(err), "engine_error"
        except duckdb.Error as err:
            status, error, kind = ExecStatus.RUNTIME_ERROR, _clean(err), "engine_error"
        except (MemoryError, OverflowError, RecursionError) as err:
            status, error = ExecStatus.RUNTIME_ERROR, f"{type(err).__name__}: {err}"
            kind = "out_of_memory" if isinstance(err, MemoryError) else "engine_error"
        finally:
            watchdog.stop()
        if watchdog.fired and status is not ExecStatus.OK:
            status, error, kind = ExecStatus.TIMEOUT, "stopped at the time budget", ""
        seconds = timer() - start
        counters = _counters(profile) if profile else {}
        counters["rows"] = len(rows)
        counters["values"] = len(rows) * len(columns)
        work = self.work_of(counters)
        if status is ExecStatus.TIMEOUT and budget.max_work is not None:
            work = max(work, budget.max_work)
        if status is ExecStatus.OK and budget.max_work is not None and work > budget.max_work:
            status, error = ExecStatus.TIMEOUT, f"work {work:,} exceeded the budget of {budget.max_work:,}"
        limit = budget.max_value_bytes
        if status is ExecStatus.OK and limit is not None and largest_value(rows) > limit:
            status, error, kind = ExecStatus.DENIED, "a value exceeds the size limit", "too_big"
            rows = []
        if status is not ExecStatus.OK:
            self._recover_scratch()
        elif not sandboxed:
            self._note_trusted(sql)
        return ExecResult(
            status=status,
            rows=rows,
            columns=columns,
            work=work,
            seconds=seconds,
            error=error,
            error_kind=kind,
            counters=counters,
            tables_read=tables_read,
        )

    def query(self, sql: str, params: Sequence[object] = (), *, max_work: int | None = None) -> list[tuple]:
        """Run one of the harness's own statements (no sandbox) and return its rows.

        ``max_work`` is checked when it ends (DuckDB has no progress callback).

        Raises:
            EngineError: DuckDB refused or failed it, or it exceeded ``max_work``.
        """
        try:
            result = self._conn.execute(sql, list(params) if params else None)
            rows = [tuple(r) for r in result.fetchall()] if result.description else []
        except duckdb.Error as err:
            self._recover_scratch()
            raise EngineError(_clean(err)) from None
        if max_work is not None and self.work_of(_counters(self._profile() or {})) > max_work:
            raise EngineError("the statement exceeded its work budget")
        self._note_trusted(sql, tuple(params))
        return rows

    def execute_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one of the harness's own parameterized statements once per row (no sandbox).

        Raises:
            EngineError: DuckDB refused or failed it.
        """
        rows = [list(r) for r in rows]
        if not rows:
            return
        try:
            self._conn.executemany(sql, rows)
        except duckdb.Error as err:
            self._recover_scratch()
            raise EngineError(_clean(err)) from None
        for row in rows:
            self._note_trusted(sql, tuple(row))

    @contextlib.contextmanager
    def transient(self) -> Iterator[None]:
        """A transaction rolled back on exit.

        DuckDB has no savepoints, so it cannot be entered inside :meth:`scratch_indexes` (or
        itself): :attr:`nested_transient` is false and twins are applied to a clone instead.

        Raises:
            EngineError: a transient or scratch state is already open.
        """
        if self._scratch or self._in_transient:
            raise EngineError("DuckDB cannot nest a transient state (it has no savepoints)")
        tables_before = self._tables
        self._conn.execute("BEGIN TRANSACTION")
        self._in_transient = True
        try:
            yield
        finally:
            self._in_transient = False
            self._rollback()
            self._tables = tables_before

    def _profile(self) -> dict | None:
        try:
            return json.loads(self._conn.get_profiling_information(format="json"))
        except (duckdb.Error, ValueError):
            return None

    def work_of(self, counters: Mapping[str, int], *, reference: Mapping[str, int] | None = None) -> int:
        """The deterministic work of one statement from its counters (see the module docstring).

        >>> DuckDBBackend.empty().work_of({"cardinality": 10, "rows_scanned": 100, "nested_loop_pairs": 4})
        114
        """
        return int(
            counters.get("cardinality", 0)
            + counters.get("rows_scanned", 0)
            + counters.get("nested_loop_pairs", 0)
        )

    def _note_trusted(self, sql: str, params: tuple = ()) -> None:
        """Record a trusted statement that changed the database (for :meth:`clone`)."""
        self._tables = None
        if self._scratch or self._in_transient:
            return  # rolled back with the scratch or transient state
        try:
            kinds = {s.type for s in self._conn.extract_statements(sql)}
        except duckdb.Error:
            kinds = {duckdb.StatementType.INVALID}
        if kinds - {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}:
            self._recipe.log.append((sql, params))

    def explain(self, sql: str) -> str:
        """DuckDB's physical plan of ``sql`` as an indented tree (``(no plan: ...)`` when refused)."""
        gate = self._gate(sql)
        if gate.status is not None:
            return f"(no plan: {gate.error})"
        try:
            row = self._conn.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()
        except duckdb.Error as err:
            self._recover_scratch()
            return f"(no plan: {_clean(err)})"
        if not row:
            return ""
        lines: list[str] = []
        stack = [(node, 0) for node in reversed(json.loads(row[1]))]
        while stack:
            node, depth = stack.pop()
            info = node.get("extra_info") or {}
            details = []
            for key, value in info.items():
                text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
                text = text.replace("memory.main.", "")
                if key == "Estimated Cardinality":
                    details.append(f"~{text} rows")
                elif text:
                    details.append(f"{key}: {text}")
            line = "  " * depth + str(node.get("name", "?")).strip()
            lines.append(line + (" (" + "; ".join(details) + ")" if details else ""))
            stack.extend((child, depth + 1) for child in reversed(node.get("children") or []))
        return "\n".join(lines)

    # --- scratch indexes -------------------------------------------------------------------

    @contextlib.contextmanager
    def scratch_indexes(self, indexes: Sequence[IndexSpec], budget: Budget | None = None) -> Iterator[None]:
        """Build ``indexes`` inside a transaction that is rolled back on exit.

        DuckDB's ``CREATE INDEX`` is transactional: the rollback drops the indexes and the
        database is as before. ``budget`` bounds the build's wall time (interrupt) and its work
        (rows scanned plus produced, checked after each index). Note that DuckDB's planner uses
        an ART index only for point lookups and highly selective filters (an equality or IN on
        the leading column, roughly at most ``index_scan_max_count`` rows); it never uses one for
        joins, ranges over many rows, ordering or grouping, so most candidate indexes do not
        change a DuckDB plan. A statement that fails at run time inside the scratch state aborts
        DuckDB's transaction; the backend then rebuilds the scratch indexes in a new one.

        Raises:
            IndexBuildError: building an index failed or ran out of budget (rolled back first).
        """
        if not indexes:
            yield
            return
        if self._scratch:
            raise IndexBuildError("scratch indexes are already being built on this database")
        budget = budget or Budget()
        conn = self._conn
        tables_before = self._tables
        statements = [spec.to_sql(f"quill_scratch_{i}", self.dialect) for i, spec in enumerate(indexes)]
        conn.execute("BEGIN TRANSACTION")
        try:
            self._build(statements, budget)
            self._scratch = statements
            self._tables = None
            yield
        finally:
            self._scratch = []
            self._rollback()
            self._tables = tables_before

    def _build(self, statements: Sequence[str], budget: Budget) -> None:
        work = 0
        with Watchdog(self._conn.interrupt, budget.max_seconds) as watchdog:
            try:
                for stmt in statements:
                    self._conn.execute(stmt)
                    work += self.work_of(_counters(self._profile() or {}))
                    if budget.max_work is not None and work > budget.max_work:
                        raise IndexBuildError("building the indexes exceeded the budget")
            except duckdb.InterruptException:
                raise IndexBuildError("building the indexes exceeded the budget") from None
            except duckdb.OutOfMemoryException:
                raise IndexBuildError("building the indexes ran out of memory") from None
            except duckdb.Error as err:
                if watchdog.fired:
                    raise IndexBuildError("building the indexes exceeded the budget") from None
                raise IndexBuildError(_clean(err)) from None

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self._conn.execute("ROLLBACK")

    def _recover_scratch(self) -> None:
        """After a failed statement inside scratch indexes, rebuild them if the transaction died.

        A run-time error (or an interrupt) aborts DuckDB's transaction; a bind error does not.
        """
        if not self._scratch:
            return
        try:
            self._conn.execute("SELECT 1").fetchall()
            return
        except duckdb.Error:
            pass
        self._rollback()
        self._conn.execute("BEGIN TRANSACTION")
        for stmt in self._scratch:
            self._conn.execute(stmt)

    # --- schema ----------------------------------------------------------------------------

    def tables(self) -> dict[str, TableInfo]:
        """Tables and views with columns, keys, indexes and row counts (cached)."""
        if self._tables is None:
            self._tables = self._introspect()
        return self._tables

    def _introspect(self) -> dict[str, TableInfo]:
        con = self._conn
        objects = con.execute(
            "SELECT oid, schema_name, name, sql, is_view, comment FROM ("
            " SELECT table_oid AS oid, schema_name, table_name AS name, sql, false AS is_view, comment"
            " FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary"
            " UNION ALL"
            " SELECT view_oid, schema_name, view_name, sql, true, comment"
            " FROM duckdb_views() WHERE database_name = current_database() AND NOT internal"
            " AND NOT temporary) ORDER BY oid"
        ).fetchall()
        out: dict[str, TableInfo] = {}
        for _oid, schema, name, sql, is_view, comment in objects:
            cols = con.execute(
                "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
                "ORDER BY column_index",
                [schema, name],
            ).fetchall()
            constraints = con.execute(
                "SELECT constraint_type, constraint_column_names, referenced_table, "
                "referenced_column_names, constraint_name FROM duckdb_constraints() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
                "ORDER BY constraint_index",
                [schema, name],
            ).fetchall()
            pk: list[str] = []
            notnull: set[str] = set()
            foreign_keys: list[ForeignKey] = []
            indexes: list[IndexInfo] = []
            for ctype, ccols, ref_table, ref_cols, cname in constraints:
                ccols = tuple(ccols or ())
                if ctype == "PRIMARY KEY":
                    pk = list(ccols)
                    notnull |= set(ccols)
                    indexes.append(IndexInfo(cname or f"{name}_pkey", ccols, True, "pk"))
                elif ctype == "UNIQUE":
                    indexes.append(IndexInfo(cname or f"{name}_unique", ccols, True, "u"))
                elif ctype == "NOT NULL":
                    notnull |= set(ccols)
                elif ctype == "FOREIGN KEY":
                    foreign_keys.append(ForeignKey(ccols, str(ref_table), tuple(ref_cols or ())))
            kept = ddl.comment_keys(comment)
            foreign_keys += kept
            for iname, unique, isql in con.execute(
                "SELECT index_name, is_unique, sql FROM duckdb_indexes() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
                "ORDER BY index_oid",
                [schema, name],
            ).fetchall():
                indexes.append(IndexInfo(iname, _index_columns(isql), bool(unique), "c", isql))
            columns = tuple(
                ColumnInfo(
                    name=cname,
                    type=str(ctype).upper(),
                    notnull=cname in notnull or not nullable,
                    pk=pk.index(cname) + 1 if cname in pk else 0,
                )
                for cname, ctype, nullable in cols
            )
            display = name if schema == "main" else f"{schema}.{name}"
            row_count = 0
            if not is_view:
                table = exp.Table(
                    this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True)
                )
                count = exp.select(exp.Count(this=exp.Star())).from_(table).sql("duckdb")
                row_count = int(con.execute(count).fetchone()[0])
            out[display.lower()] = TableInfo(
                name=display,
                columns=columns,
                foreign_keys=tuple(foreign_keys),
                indexes=tuple(indexes),
                row_count=row_count,
                sql=ddl.with_foreign_keys((sql or "").strip().rstrip(";"), kept, "duckdb"),
                is_view=bool(is_view),
            )
        return out

    # --- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the in-memory database (its memory is released)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(duckdb.Error):
            self._conn.close()

    def __repr__(self) -> str:
        return self._label


def _index_columns(sql: str | None) -> tuple[str, ...]:
    """The key columns (or expressions) of a ``CREATE INDEX`` statement."""
    if not sql:
        return ()
    try:
        import sqlglot

        tree = sqlglot.parse_one(sql, read="duckdb")
    except Exception:  # an unparseable index lists no columns
        return ()
    params = tree.find(exp.IndexParameters)
    if params is None:
        return ()
    out = []
    for item in params.args.get("columns") or []:
        node = item.this if isinstance(item, exp.Ordered) else item
        out.append(node.name if isinstance(node, exp.Column) else node.sql("duckdb"))
    return tuple(out)


def _counters(profile: Mapping[str, Any]) -> dict[str, int]:
    """The raw profiler figures of one statement (see the module docstring)."""
    if not profile:
        return {}
    pairs = 0
    operators = 0
    for node in _walk(profile.get("children", [])):
        if "operator_type" not in node:
            continue
        operators += 1
        if node.get("operator_type") in NESTED_LOOP_OPERATORS:
            children = node.get("children") or []
            if len(children) == 2:
                pairs += int(children[0].get("operator_cardinality", 0)) * int(
                    children[1].get("operator_cardinality", 0)
                )
    return {
        "cardinality": int(profile.get("cumulative_cardinality", 0) or 0),
        "rows_scanned": int(profile.get("cumulative_rows_scanned", 0) or 0),
        "nested_loop_pairs": pairs,
        "operators": operators,
        "rows_returned": int(profile.get("rows_returned", 0) or 0),
        "result_set_size": int(profile.get("result_set_size", 0) or 0),
        "memory_allocated": int(profile.get("total_memory_allocated", 0) or 0),
        "peak_buffer_memory": int(profile.get("system_peak_buffer_memory", 0) or 0),
    }
