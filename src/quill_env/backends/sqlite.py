"""The embedded SQLite backend, through APSW's bundled SQLite.

APSW ships its own SQLite, so every machine runs the same engine and planner. The task database
file is opened read-only once and copied into memory; every statement runs on that copy, so the
file is byte-identical after any action. Indexes are built inside a savepoint that is rolled
back. Work is the exact VM step count from ``trace_v2`` profile events; budgets are enforced by a
progress handler; the authorizer denies anything but reads and allowlisted functions.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import apsw

from quill_env import sqlbuild
from quill_env.backends.base import (
    Backend,
    Budget,
    ColumnInfo,
    ExecResult,
    ExecStatus,
    ForeignKey,
    IndexInfo,
    TableInfo,
    Timer,
)
from quill_env.errors import DatabaseError, IndexBuildError
from quill_env.policy import IndexSpec

ALLOWED_FUNCTIONS = frozenset(
    [
        "abs",
        "avg",
        "char",
        "coalesce",
        "concat",
        "concat_ws",
        "count",
        "format",
        "glob",
        "group_concat",
        "hex",
        "ifnull",
        "iif",
        "if",
        "instr",
        "length",
        "like",
        "likelihood",
        "likely",
        "lower",
        "ltrim",
        "max",
        "min",
        "nullif",
        "octet_length",
        "printf",
        "quote",
        "replace",
        "round",
        "rtrim",
        "sign",
        "soundex",
        "string_agg",
        "substr",
        "substring",
        "sum",
        "total",
        "trim",
        "typeof",
        "unhex",
        "unicode",
        "unlikely",
        "upper",
        "zeroblob",
        "date",
        "time",
        "datetime",
        "julianday",
        "strftime",
        "unixepoch",
        "timediff",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atan2",
        "atanh",
        "ceil",
        "ceiling",
        "cos",
        "cosh",
        "degrees",
        "exp",
        "floor",
        "ln",
        "log",
        "log10",
        "log2",
        "mod",
        "pi",
        "pow",
        "power",
        "radians",
        "sin",
        "sinh",
        "sqrt",
        "tan",
        "tanh",
        "trunc",
        "json",
        "json_array",
        "json_array_length",
        "json_extract",
        "json_insert",
        "json_object",
        "json_patch",
        "json_quote",
        "json_remove",
        "json_replace",
        "json_set",
        "json_type",
        "json_valid",
        "json_group_array",
        "json_group_object",
        "jsonb",
        "->",
        "->>",
        "row_number",
        "rank",
        "dense_rank",
        "percent_rank",
        "cume_dist",
        "ntile",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "nth_value",
        "median",
        "percentile",
        "percentile_cont",
        "percentile_disc",
    ]
)
"""Functions a sandboxed statement may call (deterministic, no files, no engine state)."""

DEFAULT_LIMITS: dict[int, int] = {
    apsw.SQLITE_LIMIT_LENGTH: 10_000_000,
    apsw.SQLITE_LIMIT_SQL_LENGTH: 1_000_000,
    apsw.SQLITE_LIMIT_COLUMN: 2000,
    apsw.SQLITE_LIMIT_EXPR_DEPTH: 1000,
    apsw.SQLITE_LIMIT_COMPOUND_SELECT: 100,
    apsw.SQLITE_LIMIT_VDBE_OP: 250_000,
    apsw.SQLITE_LIMIT_FUNCTION_ARG: 100,
    apsw.SQLITE_LIMIT_ATTACHED: 0,
    apsw.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1000,
    apsw.SQLITE_LIMIT_VARIABLE_NUMBER: 32,
    apsw.SQLITE_LIMIT_TRIGGER_DEPTH: 0,
}
"""Engine limits on every connection: value size, SQL length, nesting, attach count ..."""

PROGRESS_OPS = 1000
"""VM instructions between two progress-handler calls (budget granularity)."""

_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}


class _Sandbox:
    """The authorizer: what a sandboxed statement may do, and which tables it reads."""

    def __init__(self) -> None:
        self.phase = "off"
        self.denied: str | None = None
        self.tables_read: set[str] = set()

    def __call__(self, code: int, a1: str | None, a2: str | None, db: str | None, _: object) -> int:
        if self.phase == "off":
            return apsw.SQLITE_OK
        if code == apsw.SQLITE_SELECT or code == apsw.SQLITE_RECURSIVE:
            return apsw.SQLITE_OK
        if code == apsw.SQLITE_READ:
            if db in ("main", None) and a1 and a1.lower() not in _SCHEMA_TABLES:
                self.tables_read.add(a1.lower())
                return apsw.SQLITE_OK
            if db == "main" and self.phase == "index":
                return apsw.SQLITE_OK
            return self._deny(f"reading {db}.{a1} is not allowed")
        if code == apsw.SQLITE_FUNCTION:
            if (a2 or "").lower() in ALLOWED_FUNCTIONS:
                return apsw.SQLITE_OK
            return self._deny(f"function {a2}() is not allowed")
        if self.phase == "index":
            if code in (apsw.SQLITE_CREATE_INDEX, apsw.SQLITE_REINDEX) and db == "main":
                return apsw.SQLITE_OK
            if code in (apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE) and (a1 or "").lower() in _SCHEMA_TABLES:
                return apsw.SQLITE_OK
        return self._deny(f"operation {apsw.mapping_authorizer_function.get(code, code)} is not allowed")

    def _deny(self, reason: str) -> int:
        self.denied = self.denied or reason
        return apsw.SQLITE_DENY


class SQLiteBackend(Backend):
    """SQLite through APSW: exact VM-step work counter, authorizer, limits, progress budget."""

    name: ClassVar[str] = "sqlite"
    dialect: ClassVar[str] = "sqlite"
    work_unit: ClassVar[str] = "vm_steps"
    calibration_alpha: ClassVar[float] = 0.894
    calibration_statement_work: ClassVar[float] = 3162.0
    calibration_row_work: ClassVar[float] = 5.0
    # Fitted by benchmarks/core.py over the shop suite's reference rewrites at the medium scale
    # (benchmarks/results/core.json): wall ~ (steps + 3162 + 5 * rows) ** 0.894. FACTS.md's
    # 0.83 was a pure power law on two hand-picked queries.

    def __init__(
        self, connection: apsw.Connection, *, label: str = ":memory:", timer: Timer = time.perf_counter
    ) -> None:
        self._conn = connection
        self._label = label
        self._timer = timer
        self._sandbox = _Sandbox()
        self._profile: dict | None = None
        self._tables: dict[str, TableInfo] | None = None
        self._configure()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, timer: Timer = time.perf_counter) -> SQLiteBackend:
        """Copy the database file at ``path`` into memory, opening the file read-only.

        Raises:
            DatabaseError: the file does not exist or is not a SQLite database.
        """
        path = Path(path)
        if not path.is_file():
            raise DatabaseError(f"no such database file: {path}")
        uri = f"file:{path.resolve().as_posix()}?mode=ro&immutable=1"
        try:
            src = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            try:
                src.authorizer = _deny_writes
                mem = apsw.Connection(":memory:")
                with mem.backup("main", src, "main") as backup:
                    backup.step()
            finally:
                src.close()
        except apsw.Error as err:
            raise DatabaseError(f"cannot open {path} as a SQLite database: {err}") from None
        return cls(mem, label=str(path), timer=timer)

    @classmethod
    def from_bytes(
        cls, image: bytes, *, label: str = ":memory:", timer: Timer = time.perf_counter
    ) -> SQLiteBackend:
        """Open an in-memory database from a serialized image (see :meth:`serialize`)."""
        conn = apsw.Connection(":memory:")
        conn.deserialize("main", image)
        return cls(conn, label=label, timer=timer)

    @classmethod
    def empty(cls, *, timer: Timer = time.perf_counter) -> SQLiteBackend:
        """A new empty in-memory database (used to build variants)."""
        return cls(apsw.Connection(":memory:"), timer=timer)

    def serialize(self) -> bytes:
        """The database image, for cloning into another backend or process."""
        return self._conn.serialize("main") or b""

    def _configure(self) -> None:
        conn = self._conn
        conn.enable_load_extension(False)
        for option in ("SQLITE_DBCONFIG_DEFENSIVE", "SQLITE_DBCONFIG_TRUSTED_SCHEMA"):
            if hasattr(apsw, option):
                conn.config(getattr(apsw, option), 1 if option.endswith("DEFENSIVE") else 0)
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA foreign_keys = OFF")
        for limit, value in DEFAULT_LIMITS.items():
            conn.limit(limit, value)
        conn.authorizer = self._sandbox
        conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, self._on_profile)

    def _on_profile(self, event: dict) -> None:
        self._profile = event

    @property
    def label(self) -> str:
        """Where this database came from (a path or a variant name)."""
        return self._label

    @property
    def connection(self) -> apsw.Connection:
        """The underlying APSW connection (harness use only; bypasses the sandbox)."""
        return self._conn

    # --- identity --------------------------------------------------------------------------

    def engine_version(self) -> str:
        """The bundled SQLite's version."""
        return f"SQLite {apsw.sqlite_lib_version()}"

    # --- execution -------------------------------------------------------------------------

    def execute(self, sql: str, budget: Budget | None = None, *, sandboxed: bool = True) -> ExecResult:
        """Run one statement under ``budget`` and fetch its rows (see :class:`Backend`)."""
        budget = budget or Budget()
        state = {"calls": 0, "statements": 0}
        timer = self._timer
        start = timer()
        deadline = start + budget.max_seconds if budget.max_seconds else None
        max_calls = None if budget.max_work is None else max(1, budget.max_work // PROGRESS_OPS)

        def progress() -> bool:
            state["calls"] += 1
            if max_calls is not None and state["calls"] > max_calls:
                return True
            return deadline is not None and timer() > deadline

        def one_statement(cur: apsw.Cursor, _sql: str, _bindings: object) -> bool:
            state["statements"] += 1
            if state["statements"] == 1:
                columns.extend(d[0] for d in cur.get_description())
                return True
            return False

        self._sandbox.phase = "query" if sandboxed else "off"
        self._sandbox.denied = None
        self._sandbox.tables_read = set()
        self._profile = None
        self._conn.set_progress_handler(progress, PROGRESS_OPS)
        rows: list[tuple] = []
        columns: list[str] = []
        status, error = ExecStatus.OK, ""
        cursor = self._conn.cursor()
        cursor.exec_trace = one_statement
        try:
            cursor.execute(sql, can_cache=False)
            cap = budget.max_rows
            for row in cursor:
                rows.append(row)
                if cap is not None and len(rows) > cap:
                    status, error = ExecStatus.ROW_CAP, f"more than {cap:,} rows"
                    break
        except apsw.InterruptError:
            status, error = ExecStatus.TIMEOUT, "stopped at the budget"
        except apsw.ExecTraceAbort:
            status, error = ExecStatus.DENIED, "multiple statements are not allowed"
        except apsw.AuthError as err:
            status, error = ExecStatus.DENIED, self._sandbox.denied or str(err)
        except apsw.TooBigError as err:
            status, error = ExecStatus.DENIED, f"engine limit exceeded: {err}"
        except (apsw.SQLError, apsw.SchemaChangeError) as err:
            if self._sandbox.denied:
                status, error = ExecStatus.DENIED, self._sandbox.denied
            else:
                prepared = state["statements"] > 0
                kind = ExecStatus.RUNTIME_ERROR if prepared else ExecStatus.PREPARE_ERROR
                status, error = kind, _clean(err)
        except apsw.Error as err:
            prepared = state["statements"] > 0
            kind = ExecStatus.RUNTIME_ERROR if prepared else ExecStatus.PREPARE_ERROR
            status, error = kind, _clean(err)
        except (MemoryError, OverflowError, RecursionError) as err:
            status, error = ExecStatus.RUNTIME_ERROR, f"{type(err).__name__}: {err}"
        finally:
            with contextlib.suppress(apsw.Error):
                cursor.close(force=True)
            self._conn.set_progress_handler(None)
            tables_read = frozenset(self._sandbox.tables_read)
            self._sandbox.phase = "off"
        seconds = timer() - start
        counters = dict((self._profile or {}).get("stmt_status") or {})
        work = int(counters.get("SQLITE_STMTSTATUS_VM_STEP", 0))
        if status is ExecStatus.TIMEOUT:
            work = max(work, state["calls"] * PROGRESS_OPS)
        return ExecResult(
            status=status,
            rows=rows,
            columns=columns,
            work=work,
            seconds=seconds,
            error=error,
            counters={k.removeprefix("SQLITE_STMTSTATUS_").lower(): int(v) for k, v in counters.items()},
            tables_read=tables_read,
        )

    def explain(self, sql: str) -> str:
        """``EXPLAIN QUERY PLAN`` of ``sql`` as an indented tree (empty when it fails)."""
        self._sandbox.phase = "query"
        self._sandbox.denied = None
        try:
            rows = list(self._conn.execute("EXPLAIN QUERY PLAN " + sql, can_cache=False))
        except apsw.Error as err:
            return f"(no plan: {_clean(err)})"
        finally:
            self._sandbox.phase = "off"
        depth: dict[int, int] = {0: -1}
        lines = []
        for node_id, parent, _unused, detail in rows:
            depth[node_id] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node_id] + str(detail))
        return "\n".join(lines)

    @contextlib.contextmanager
    def scratch_indexes(self, indexes: Sequence[IndexSpec], budget: Budget | None = None) -> Iterator[None]:
        """Build ``indexes`` inside a savepoint that is rolled back on exit.

        Raises:
            IndexBuildError: building an index failed or ran out of budget (rolled back first).
        """
        if not indexes:
            yield
            return
        self._conn.execute("SAVEPOINT quill_scratch")
        try:
            self._sandbox.phase = "index"
            self._sandbox.denied = None
            if budget and budget.max_work:
                limit = max(1, budget.max_work // PROGRESS_OPS)
                calls = [0]

                def progress() -> bool:
                    calls[0] += 1
                    return calls[0] > limit

                self._conn.set_progress_handler(progress, PROGRESS_OPS)
            try:
                for i, spec in enumerate(indexes):
                    self._conn.execute(spec.to_sql(f"quill_scratch_{i}", self.dialect))
            except apsw.InterruptError:
                raise IndexBuildError("building the indexes exceeded the budget") from None
            except apsw.Error as err:
                raise IndexBuildError(_clean(err)) from None
            finally:
                self._conn.set_progress_handler(None)
                self._sandbox.phase = "off"
            self._tables = None
            yield
        finally:
            self._conn.execute("ROLLBACK TO quill_scratch")
            self._conn.execute("RELEASE quill_scratch")
            self._tables = None

    # --- schema ----------------------------------------------------------------------------

    def tables(self) -> dict[str, TableInfo]:
        """Tables and views with columns, keys, indexes and row counts (cached)."""
        if self._tables is None:
            self._tables = self._introspect()
        return self._tables

    def _introspect(self) -> dict[str, TableInfo]:
        conn = self._conn
        out: dict[str, TableInfo] = {}
        master = list(
            conn.execute(
                "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        )
        for kind, name, sql in master:
            cols = tuple(
                ColumnInfo(name=r[1], type=(r[2] or "").upper(), notnull=bool(r[3]), pk=int(r[5]))
                for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", (name,))
                if r[6] == 0
            )
            fks: dict[int, list] = {}
            for r in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", (name,)):
                fks.setdefault(r[0], []).append(r)
            foreign_keys = tuple(
                ForeignKey(
                    columns=tuple(r[3] for r in group),
                    ref_table=group[0][2],
                    ref_columns=tuple(r[4] for r in group if r[4] is not None),
                )
                for group in fks.values()
            )
            indexes = []
            for _seq, iname, unique, origin, _partial in conn.execute(
                "SELECT * FROM pragma_index_list(?)", (name,)
            ):
                icols = tuple(r[2] for r in conn.execute("SELECT * FROM pragma_index_info(?)", (iname,)))
                isql = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (iname,)).get
                indexes.append(IndexInfo(iname, icols, bool(unique), origin, isql))
            row_count = 0 if kind == "view" else int(conn.execute(sqlbuild.count_rows(name)).get)
            out[name.lower()] = TableInfo(
                name=name,
                columns=cols,
                foreign_keys=foreign_keys,
                indexes=tuple(reversed(indexes)),
                row_count=row_count,
                sql=sql or "",
                is_view=kind == "view",
            )
        return out

    def close(self) -> None:
        """Close the in-memory copy."""
        with contextlib.suppress(apsw.Error):
            self._conn.close()

    def __repr__(self) -> str:
        return self._label


def _deny_writes(code: int, *_: object) -> int:
    if code in (apsw.SQLITE_READ, apsw.SQLITE_SELECT, apsw.SQLITE_PRAGMA, apsw.SQLITE_FUNCTION):
        return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _clean(err: BaseException) -> str:
    text = str(err)
    for prefix in ("SQLError: ", "Error: "):
        text = text.removeprefix(prefix)
    return text.strip()[:500]
