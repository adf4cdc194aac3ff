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
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import apsw
import sqlglot

from quill_env import sqlbuild
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
)
from quill_env.errors import DatabaseError, EngineError, IndexBuildError
from quill_env.paths import cache_dir

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
    apsw.SQLITE_LIMIT_VARIABLE_NUMBER: 32766,
    apsw.SQLITE_LIMIT_TRIGGER_DEPTH: 0,
}
"""Engine limits on every connection: value size, SQL length, nesting, attach count ..."""

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite 3 database file."""

PROGRESS_OPS = 1000
"""VM instructions between two progress-handler calls (budget granularity)."""

_COUNTER_WRAP = 1 << 32
"""SQLite keeps a statement's counters (``SQLITE_STMTSTATUS_VM_STEP``) in 32 bits."""


def unwrapped_steps(reported: int, progress_calls: int) -> int:
    """A statement's true VM step count from SQLite's 32-bit counter and the progress calls.

    ``sqlite3_stmt_status`` returns the count modulo 2**32, as a signed int: a query of more
    than 2**31 steps reads as negative (and one of 2**32 as small), which made such a baseline's
    cost negative, so every rewrite of it was stopped at once. The progress handler, called
    about every :data:`PROGRESS_OPS` steps, gives the count to within a few thousand; the true
    count is the one of that neighbourhood with the counter's low 32 bits.

    >>> unwrapped_steps(17_000_015, 17_000)
    17000015
    >>> unwrapped_steps(3_000_000_000 - 2**32, 3_000_000)   # read as negative
    3000000000
    >>> unwrapped_steps(9_000_000_123 % 2**32, 9_000_000)    # wrapped twice
    9000000123
    """
    low = reported % _COUNTER_WRAP
    estimate = progress_calls * PROGRESS_OPS
    return low + round((estimate - low) / _COUNTER_WRAP) * _COUNTER_WRAP


FIXED_NOW_UNIX = 1_767_225_600
"""The instant every connection's clock reads: 2026-01-01 00:00:00 UTC. ``'now'`` reached by
any path (a computed string, a value in the data) is this constant, so no statement can see the
real time and every result is reproducible."""

_FIXED_CLOCK_VFS = "quill-fixed-clock"
_CLOCK_LOCK = threading.Lock()
_HEAP_LOCK = threading.Lock()


class _FixedClock(apsw.VFS):
    """The default VFS with its clock pinned to :data:`FIXED_NOW_UNIX` (and no randomness)."""

    def __init__(self) -> None:
        super().__init__(_FIXED_CLOCK_VFS, "")

    def xCurrentTimeInt64(self) -> int:
        return 210_866_760_000_000 + FIXED_NOW_UNIX * 1000

    def xCurrentTime(self) -> float:
        return 2_440_587.5 + FIXED_NOW_UNIX / 86_400

    def xRandomness(self, numbytes: int) -> bytes:
        return bytes(numbytes)


_CLOCK: list[_FixedClock] = []


def _clock_vfs() -> str:
    """Register the fixed-clock VFS once per process (on first use, never at import)."""
    with _CLOCK_LOCK:
        if not _CLOCK:
            _CLOCK.append(_FixedClock())
    return _FIXED_CLOCK_VFS


def _memory_connection() -> apsw.Connection:
    return apsw.Connection(":memory:", vfs=_clock_vfs())


SNAPSHOT_BYTES = 256 << 20
"""Database files larger than this are copied to a disk snapshot, not into memory."""

SNAPSHOT_PRAGMAS = (
    "PRAGMA journal_mode = MEMORY",
    "PRAGMA synchronous = OFF",
    "PRAGMA cache_size = -65536",
)
"""How a disk snapshot is opened: it is a private scratch copy, so nothing needs to be durable."""


def _snapshot_bytes() -> int:
    value = os.environ.get("QUILL_SNAPSHOT_MB")
    return int(float(value) * (1 << 20)) if value else SNAPSHOT_BYTES


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, owned by another user
        return True
    return True


def _sweep_snapshots(directory: Path) -> None:
    """Delete the snapshots that a process which no longer runs left behind (killed, crashed).

    A snapshot is named ``<stem>-<pid>-<random>.sqlite``; it is removed when its owner exits
    normally, but a ``SIGKILL`` or an OOM kill would otherwise leave a database-sized file.
    """
    for entry in directory.glob("*.sqlite"):
        parts = entry.stem.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                entry.unlink()


def _remove_snapshot(conn: apsw.Connection, path: str) -> None:
    with contextlib.suppress(apsw.Error):
        conn.close()
    with contextlib.suppress(OSError):
        os.unlink(path)


_SCHEMA_TABLES = {"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"}

SANDBOX_RULES = SandboxRules(
    denied_functions=COMMON_DENIED_FUNCTIONS
    | {
        "randomblob", "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
        "changes", "total_changes", "last_insert_rowid", "sqlite_version", "sqlite_source_id",
        "sqlite_compileoption_get", "sqlite_compileoption_used", "sqlite_offset",
    },
    clock_functions=frozenset({"date", "time", "datetime", "julianday", "unixepoch", "timediff", "strftime"}),
    internal_table_prefixes=("sqlite_",),
)  # fmt: skip
"""What the action policy refuses before a statement reaches SQLite (the authorizer and the
function allowlist refuse it again)."""


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
    display_name: ClassVar[str] = "SQLite"
    dialect: ClassVar[str] = "sqlite"
    work_unit: ClassVar[str] = "vm_steps"
    file_suffixes: ClassVar[tuple[str, ...]] = (".db", ".sqlite", ".sqlite3")
    file_header: ClassVar[tuple[int, bytes] | None] = (0, b"SQLite format 3\x00")
    row_id: ClassVar[str | None] = "rowid"
    sandbox_rules: ClassVar[SandboxRules] = SANDBOX_RULES
    calibration_alpha: ClassVar[float] = 0.866
    calibration_statement_work: ClassVar[float] = 489.0
    calibration_row_work: ClassVar[float] = 0.0
    page_work: ClassVar[float] = 13.8
    """Work units per b-tree page fetched: charges index seeks and non-covering row lookups."""
    function_work: ClassVar[float] = 83.7
    """Extra work units per function call, estimated from the share of calls in the program's loops."""
    column_work: ClassVar[float] = 2.23
    """Extra work units per column read from a record (``OP_Column``), estimated the same way."""
    value_work: ClassVar[float] = 10.4
    """Work units per value returned to the caller (rows times columns)."""
    # Fitted by benchmarks/calibration.py over the 685 shipped references that are truly faster
    # (wall lower bound >= 1.5x) at the medium scale, against interleaved bare wall time
    # (benchmarks/results/calibration.json): wall ~ (steps * (1 + 83.7 * function share +
    # 2.23 * column share) + 13.8 * pages + 10.4 * values + 489) ** 0.866.

    def __init__(
        self, connection: apsw.Connection, *, label: str = ":memory:", timer: Timer = time.perf_counter
    ) -> None:
        self._conn = connection
        self._label = label
        self._timer = timer
        self._sandbox = _Sandbox()
        self._profile: dict | None = None
        self._tables: dict[str, TableInfo] | None = None
        self._index_key: tuple[str, ...] = ()
        self._profiles: OrderedDict[tuple, tuple[int, int, int]] = OrderedDict()
        self._snapshot_path: str | None = None
        self._configure()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        timer: Timer = time.perf_counter,
        snapshot_bytes: int | None = None,
    ) -> SQLiteBackend:
        """Open a private copy of the database file at ``path``, reading the file only.

        A file up to ``snapshot_bytes`` (default :data:`SNAPSHOT_BYTES`, or ``QUILL_SNAPSHOT_MB``)
        is copied into memory; a larger one is copied to a *disk snapshot*, a temporary file
        under the cache directory that this backend alone writes to (its scratch indexes, in
        savepoints that are rolled back) and deletes when it is closed. Either way the user's
        file is never opened for writing, and memory does not grow with the database's size.

        Raises:
            DatabaseError: the file does not exist or is not a SQLite database.
        """
        path = Path(path)
        if not path.is_file():
            raise DatabaseError(f"no such database file: {path}")
        with path.open("rb") as file:
            header = file.read(16)
        if header and header != SQLITE_HEADER:
            raise DatabaseError(
                f"{path} is not a SQLite database (it does not start with the SQLite 3 file header); "
                "pass a SQLite file, or a sqlite:/// URL"
            )
        limit = snapshot_bytes if snapshot_bytes is not None else _snapshot_bytes()
        if path.stat().st_size > limit:
            return cls._snapshot(path, timer)
        uri = f"file:{path.resolve().as_posix()}?mode=ro&immutable=1"
        try:
            src = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
            try:
                src.authorizer = _deny_writes
                mem = _memory_connection()
                with mem.backup("main", src, "main") as backup:
                    backup.step()
            finally:
                src.close()
        except apsw.Error as err:
            raise DatabaseError(f"cannot open {path} as a SQLite database: {err}") from None
        return cls(mem, label=str(path), timer=timer)

    @classmethod
    def _snapshot(cls, path: Path, timer: Timer) -> SQLiteBackend:
        directory = cache_dir() / "snapshots"
        directory.mkdir(parents=True, exist_ok=True)
        _sweep_snapshots(directory)
        prefix = f"{path.stem}-{os.getpid()}-"
        fd, copy = tempfile.mkstemp(prefix=prefix, suffix=".sqlite", dir=directory)
        os.close(fd)
        try:
            shutil.copyfile(path, copy)
            conn = apsw.Connection(copy, vfs=_clock_vfs())
            for pragma in SNAPSHOT_PRAGMAS:
                conn.execute(pragma)
            conn.execute("SELECT COUNT(*) FROM sqlite_schema").fetchall()
        except (OSError, apsw.Error) as err:
            with contextlib.suppress(OSError):
                os.unlink(copy)
            raise DatabaseError(f"cannot open {path} as a SQLite database: {err}") from None
        backend = cls(conn, label=str(path), timer=timer)
        backend._snapshot_path = copy
        backend._finalizer = weakref.finalize(backend, _remove_snapshot, conn, copy)
        conn.execute("PRAGMA temp_store = FILE")
        return backend

    @classmethod
    def from_bytes(
        cls, image: bytes, *, label: str = ":memory:", timer: Timer = time.perf_counter
    ) -> SQLiteBackend:
        """Open an in-memory database from a serialized image (see :meth:`serialize`)."""
        conn = _memory_connection()
        conn.deserialize("main", image)
        return cls(conn, label=label, timer=timer)

    @classmethod
    def empty(cls, *, timer: Timer = time.perf_counter) -> SQLiteBackend:
        """A new empty in-memory database (used to build variants)."""
        return cls(_memory_connection(), timer=timer)

    @classmethod
    def from_rows(
        cls,
        schema_sql: Sequence[str],
        rows: Mapping[str, Sequence[tuple]],
        *,
        label: str = ":memory:",
        dialect: str | None = None,
        timer: Timer = time.perf_counter,
    ) -> SQLiteBackend:
        """An in-memory database built from DDL statements and rows per table (column order).

        Rows are inserted as given (foreign keys are not enforced: a variant keeps what its
        builder wrote). ``dialect`` names the DDL's dialect when it is not SQLite's.

        Raises:
            DatabaseError: a statement or a row was refused by the engine.
        """
        conn = _memory_connection()
        try:
            _write(conn, _ported_ddl(schema_sql, dialect), rows)
        except apsw.Error as err:
            conn.close()
            raise DatabaseError(f"cannot build the database: {_clean(err)}") from None
        return cls(conn, label=label, timer=timer)

    @classmethod
    def create_file(
        cls,
        path: str | os.PathLike[str],
        schema_sql: Sequence[str],
        columns: Mapping[str, Mapping[str, Sequence[object]]],
        *,
        dialect: str | None = None,
    ) -> None:
        """Write a new SQLite file at ``path`` from DDL and column-major data per table.

        Raises:
            DatabaseError: ``path`` exists, or the engine refused a statement or a row.
        """
        if os.path.exists(path):
            raise DatabaseError(f"{path} exists; a new database file is written only where none is")
        conn = apsw.Connection(os.fspath(path))
        try:
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA page_size = 4096")
            rows = {table: list(zip(*data.values())) for table, data in columns.items()}
            names = {table: list(data) for table, data in columns.items()}
            _write(conn, _ported_ddl(schema_sql, dialect), rows, names)
        except apsw.Error as err:
            raise DatabaseError(f"cannot write {path}: {_clean(err)}") from None
        finally:
            conn.close()

    def serialize(self) -> bytes:
        """The database image, for cloning into another backend or process."""
        return self._conn.serialize("main") or b""

    def _configure(self) -> None:
        conn = self._conn
        conn.enable_load_extension(False)
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0)
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
            sql: exactly one statement.
            budget: work (in :meth:`work_of` units), time, row, heap and value-size limits.
            sandboxed: apply the authorizer and function allowlist.
            double_quoted_strings: let ``"text"`` that names no column be a string literal, as
                SQLite does by default (a rewrite only gets it when the original needs it).
        """
        budget = budget or Budget()
        state = {"calls": 0, "statements": 0}
        timer = self._timer
        start = timer()
        deadline = start + budget.max_seconds if budget.max_seconds else None
        conn = self._conn
        function_ppm, column_ppm, loop_opcodes = self._loop_profile(sql)
        conn.execute(_LOAD_SCHEMA).fetchall()  # load the schema now, so no statement pays for it
        pages_at_start = self._pages()
        max_work = budget.max_work
        weight = self.page_work
        step_weight = PROGRESS_OPS * (
            1 + self.function_work * (function_ppm / 1e6) + self.column_work * (column_ppm / 1e6)
        )

        def progress() -> bool:
            calls = state["calls"] = state["calls"] + 1
            if max_work is not None:
                work = calls * step_weight
                if work > max_work:
                    return True
                # pages are read every 4th call (4000 VM ops): cheaper, and still a tight budget
                if calls % 4 == 0 and work + weight * (self._pages() - pages_at_start) > max_work:
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
        conn.set_progress_handler(progress, PROGRESS_OPS)
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 1 if double_quoted_strings else 0)
        old_length = conn.limit(apsw.SQLITE_LIMIT_LENGTH, budget.max_value_bytes or -1)
        rows: list[tuple] = []
        columns: list[str] = []
        status, error, kind = ExecStatus.OK, "", ""
        cursor = conn.cursor()
        cursor.exec_trace = one_statement
        apsw.status(apsw.SQLITE_STATUS_MALLOC_SIZE, True)
        try:
            with _heap_cap(budget.max_heap_bytes):
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
            status, error, kind = ExecStatus.DENIED, f"engine limit exceeded: {_clean(err)}", "too_big"
        except apsw.NoMemError:
            status, error, kind = ExecStatus.RUNTIME_ERROR, "out of memory", "out_of_memory"
        except (apsw.SQLError, apsw.SchemaChangeError) as err:
            if self._sandbox.denied:
                status, error = ExecStatus.DENIED, self._sandbox.denied
            else:
                prepared = state["statements"] > 0
                status = ExecStatus.RUNTIME_ERROR if prepared else ExecStatus.PREPARE_ERROR
                error, kind = _clean(err), "engine_error"
        except apsw.Error as err:
            prepared = state["statements"] > 0
            status = ExecStatus.RUNTIME_ERROR if prepared else ExecStatus.PREPARE_ERROR
            error, kind = _clean(err), _error_kind(err)
        except (MemoryError, OverflowError, RecursionError) as err:
            status, error = ExecStatus.RUNTIME_ERROR, f"{type(err).__name__}: {err}"
            kind = "out_of_memory" if isinstance(err, MemoryError) else "engine_error"
        finally:
            with contextlib.suppress(apsw.Error):
                cursor.close(force=True)
            conn.set_progress_handler(None)
            conn.limit(apsw.SQLITE_LIMIT_LENGTH, old_length)
            conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 1)
            tables_read = frozenset(self._sandbox.tables_read)
            self._sandbox.phase = "off"
        seconds = timer() - start
        counters = {
            k.removeprefix("SQLITE_STMTSTATUS_").lower(): int(v)
            for k, v in ((self._profile or {}).get("stmt_status") or {}).items()
        }
        counters["pages"] = self._pages() - pages_at_start
        counters["values"] = len(rows) * len(columns)
        counters["loop_function_ppm"] = function_ppm
        counters["loop_column_ppm"] = column_ppm
        counters["loop_opcodes"] = loop_opcodes
        counters["largest_alloc"] = int(apsw.status(apsw.SQLITE_STATUS_MALLOC_SIZE, False)[1])
        steps = counters["vm_step"] = unwrapped_steps(counters.get("vm_step", 0), state["calls"])
        if status is ExecStatus.TIMEOUT:
            counters["vm_step"] = steps = max(steps, state["calls"] * PROGRESS_OPS)
        return ExecResult(
            status=status,
            rows=rows,
            columns=columns,
            work=self.work_of(counters),
            seconds=seconds,
            error=error,
            error_kind=kind,
            counters=counters,
            tables_read=tables_read,
        )

    def query(self, sql: str, params: Sequence[object] = (), *, max_work: int | None = None) -> list[tuple]:
        """Run one of the harness's own statements (no sandbox) and return its rows.

        ``max_work`` bounds its VM steps.

        Raises:
            EngineError: SQLite refused or failed it, or it exceeded ``max_work``.
        """
        conn = self._conn
        stop_after = None if max_work is None else max(1, max_work // PROGRESS_OPS)
        calls = [0]

        def progress() -> bool:
            calls[0] += 1
            return stop_after is not None and calls[0] > stop_after

        if stop_after is not None:
            conn.set_progress_handler(progress, PROGRESS_OPS)
        try:
            with self._unprofiled():
                return [tuple(row) for row in conn.execute(sql, tuple(params))]
        except apsw.InterruptError:
            raise EngineError("the statement exceeded its work budget") from None
        except apsw.Error as err:
            raise EngineError(_clean(err)) from None
        finally:
            if stop_after is not None:
                conn.set_progress_handler(None)

    def execute_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one of the harness's own parameterized statements once per row (no sandbox).

        Raises:
            EngineError: SQLite refused or failed it.
        """
        try:
            with self._unprofiled():
                self._conn.executemany(sql, rows)
        except apsw.Error as err:
            raise EngineError(_clean(err)) from None
        self._tables = None

    @contextlib.contextmanager
    def _unprofiled(self) -> Iterator[None]:
        """The harness's own statements are not measured: no profile event per statement."""
        self._conn.trace_v2(0, None)
        try:
            yield
        finally:
            self._conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, self._on_profile)

    @contextlib.contextmanager
    def transient(self) -> Iterator[None]:
        """A savepoint rolled back on exit; it nests inside :meth:`scratch_indexes`."""
        tables_before = self._tables
        self._conn.execute("SAVEPOINT quill_transient")
        try:
            yield
        finally:
            rollback_savepoint(self._conn, "quill_transient")
            self._tables = tables_before

    def work_of(self, counters: dict[str, int], *, reference: dict[str, int] | None = None) -> int:
        """The deterministic work of one statement from its counters, in VM-step units.

        One VM step can hide much more work than another, so more is charged than the steps:
        the b-tree pages fetched (:attr:`page_work` each: index seeks and the row lookups of a
        non-covering index), function calls and record-column reads (:attr:`function_work`,
        :attr:`column_work` each, estimated as the steps times the share of those opcodes among
        the opcodes of the program's loops), and the values returned (:attr:`value_work` each).

        Opcodes that run are steps too, so padding that runs cannot dilute the shares; padding
        that never runs (a dead branch or an empty loop with hundreds of terms) would. So when
        ``reference`` (the original query's counters on the same database) is given, the shares
        are taken over at most the original's loop length (function calls) or three times it (column
        reads, which a decorrelated rewrite legitimately spreads over longer loops): see
        :func:`loop_shares`.

        >>> backend = SQLiteBackend.empty()
        >>> backend.work_of({"vm_step": 1000, "pages": 10, "values": 0}) == int(1000 + 10 * backend.page_work)
        True
        """
        steps = counters.get("vm_step", 0)
        functions, columns = loop_shares(counters, reference)
        return int(
            steps * (1 + self.function_work * functions + self.column_work * columns)
            + self.page_work * counters.get("pages", 0)
            + self.value_work * counters.get("values", 0)
        )

    def loop_profile(self, sql: str) -> tuple[float, float]:
        """The shares of function calls and of column reads among the opcodes in ``sql``'s loops.

        The program comes from ``EXPLAIN`` under the current indexes (cached per statement and
        index set); a loop is the span of a backward jump.

        >>> backend = SQLiteBackend.empty()
        >>> _ = backend.connection.execute("CREATE TABLE t(a TEXT)")
        >>> functions, _ = backend.loop_profile("SELECT a FROM t")
        >>> functions == 0, backend.loop_profile("SELECT upper(a) FROM t")[0] > 0
        (True, True)
        """
        functions, columns, _ = self._loop_profile(sql)
        return functions / 1e6, columns / 1e6

    def loop_opcodes(self, sql: str) -> int:
        """How many opcodes ``sql``'s loops hold (the denominator of :meth:`loop_profile`)."""
        return self._loop_profile(sql)[2]

    def _loop_profile(self, sql: str) -> tuple[int, int, int]:
        key = (sql, self._index_key)
        profile = self._profiles.get(key)
        if profile is None:
            profile = _loop_profile_ppm(self._conn, sql)
            self._profiles[key] = profile
            while len(self._profiles) > 512:
                self._profiles.popitem(last=False)
        return profile

    def size_bytes(self) -> int:
        """The database's size (pages times page size)."""
        pages = self._conn.execute("PRAGMA page_count").get
        return int(pages) * int(self._conn.execute("PRAGMA page_size").get)

    def _pages(self) -> int:
        """B-tree pages fetched by this connection so far (cache hits plus misses)."""
        conn = self._conn
        return (
            conn.status(apsw.SQLITE_DBSTATUS_CACHE_HIT)[0] + conn.status(apsw.SQLITE_DBSTATUS_CACHE_MISS)[0]
        )

    def needs_double_quoted_strings(self, sql: str) -> bool:
        """Whether ``sql`` compiles only when ``"text"`` may be a string literal (legacy SQL).

        Compiled with ``EXPLAIN``, so nothing runs.
        """
        conn = self._conn
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
        try:
            conn.execute("EXPLAIN " + sql, can_cache=False).close(force=True)
        except apsw.Error:
            return True
        finally:
            conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 1)
        return False

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

        ``budget`` bounds the build's VM steps, wall time and heap.

        Raises:
            IndexBuildError: building an index failed or ran out of budget (rolled back first).
        """
        if not indexes:
            yield
            return
        budget = budget or Budget()
        conn = self._conn
        tables_before, index_key_before = self._tables, self._index_key
        statements = [spec.to_sql(f"quill_scratch_{i}", self.dialect) for i, spec in enumerate(indexes)]
        conn.execute("SAVEPOINT quill_scratch")
        try:
            self._sandbox.phase = "index"
            self._sandbox.denied = None
            limit = max(1, budget.max_work // PROGRESS_OPS) if budget.max_work else None
            deadline = self._timer() + budget.max_seconds if budget.max_seconds else None
            calls = [0]

            def progress() -> bool:
                calls[0] += 1
                if limit is not None and calls[0] > limit:
                    return True
                return deadline is not None and self._timer() > deadline

            conn.set_progress_handler(progress, PROGRESS_OPS)
            try:
                with _heap_cap(budget.max_heap_bytes):
                    for stmt in statements:
                        conn.execute(stmt)
            except apsw.InterruptError:
                raise IndexBuildError("building the indexes exceeded the budget") from None
            except (apsw.NoMemError, apsw.FullError):
                raise IndexBuildError("building the indexes ran out of memory") from None
            except apsw.Error as err:
                raise IndexBuildError(_clean(err)) from None
            finally:
                conn.set_progress_handler(None)
                self._sandbox.phase = "off"
            self._tables = None
            self._index_key = (*index_key_before, *statements)
            yield
        finally:
            rollback_savepoint(conn, "quill_scratch")
            self._tables, self._index_key = tables_before, index_key_before

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
        """Close the private copy (and delete it when it is a disk snapshot)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        with contextlib.suppress(apsw.Error):
            self._conn.close()

    def clone(self) -> SQLiteBackend:
        """Another private copy of this database (in memory, or a new disk snapshot)."""
        if self._snapshot_path is not None:
            return SQLiteBackend._snapshot(Path(self._snapshot_path), self._timer)._relabel(self._label)
        return SQLiteBackend.from_bytes(self.serialize(), label=self._label, timer=self._timer)

    def _relabel(self, label: str) -> SQLiteBackend:
        self._label = label
        return self

    def __repr__(self) -> str:
        return self._label


SAVEPOINTS = frozenset({"quill_scratch", "quill_transient", "quill_twin", "quill_twin_check"})
"""The harness's savepoint names (fixed identifiers, never text from an action)."""


def rollback_savepoint(conn: apsw.Connection, name: str) -> None:
    """Roll back and release savepoint ``name``, unless the engine already rolled it back.

    SQLite ends the whole transaction on some errors (``SQLITE_FULL``, out of memory); then the
    savepoint is gone and rolling back to it would raise "no such savepoint".
    """
    if name not in SAVEPOINTS:
        raise ValueError(f"not a harness savepoint: {name!r}")
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK TO " + name)
        conn.execute("RELEASE " + name)
    except apsw.SQLError:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


@contextlib.contextmanager
def _heap_cap(max_bytes: int | None) -> Iterator[None]:
    """Cap SQLite's heap at its current use plus ``max_bytes`` while the block runs.

    SQLite's hard heap limit is process-wide; the lock keeps two capped statements of one
    process from restoring each other's limit out of order.
    """
    if not max_bytes:
        yield
        return
    with _HEAP_LOCK:
        previous = apsw.hard_heap_limit(apsw.memory_used() + max_bytes)
        try:
            yield
        finally:
            apsw.hard_heap_limit(previous)


_LOAD_SCHEMA = "SELECT 1 FROM sqlite_schema LIMIT 0"
"""Compiling any statement that names a table loads a schema invalidated by a rolled-back index."""

_LOOP_ENDS = frozenset({"Next", "Prev", "SorterNext", "VNext", "Goto"})
_FUNCTIONS = frozenset({"Function", "PureFunc"})


COLUMN_LOOP_SLACK = 3.0
"""How much longer than the original's a rewrite's loops may be before column reads stop diluting
(decorrelated references reach 3.1x the original's loop length; dead code reaches any length)."""


def loop_shares(
    counters: Mapping[str, int], reference: Mapping[str, int] | None = None
) -> tuple[float, float]:
    """The shares of function calls and column reads that :meth:`SQLiteBackend.work_of` charges.

    Taken over the loops' opcodes, but over no more than the original's loop length for function
    calls (``COLUMN_LOOP_SLACK`` times it for column reads) when ``reference``, the original's
    counters, is given: code that never runs cannot dilute them.

    >>> loop_shares({"loop_function_ppm": 10_000, "loop_opcodes": 1000}, {"loop_opcodes": 50})
    (0.2, 0.0)
    """
    functions = counters.get("loop_function_ppm", 0) / 1e6
    columns = counters.get("loop_column_ppm", 0) / 1e6
    opcodes = counters.get("loop_opcodes", 0)
    limit = (reference or {}).get("loop_opcodes", 0)
    if 0 < limit < opcodes:
        functions = min(1.0, functions * opcodes / limit)
        if opcodes > COLUMN_LOOP_SLACK * limit:
            columns = min(1.0, columns * opcodes / (COLUMN_LOOP_SLACK * limit))
    return functions, columns


def _loop_profile_ppm(conn: apsw.Connection, sql: str) -> tuple[int, int, int]:
    """Function-call and column-read opcodes per million loop opcodes of ``sql``, and the loop opcodes."""
    try:
        program = [(r[0], r[1], r[3]) for r in conn.execute("EXPLAIN " + sql, can_cache=False)]
    except apsw.Error:
        return 0, 0, 0
    in_loop = [False] * len(program)
    for addr, opcode, target in program:
        if opcode in _LOOP_ENDS and isinstance(target, int) and 0 < target < addr:
            for i in range(target, min(addr, len(program) - 1) + 1):
                in_loop[i] = True
    body = [op for (_, op, _), inside in zip(program, in_loop) if inside]
    if not body:
        return 0, 0, 0
    functions = sum(op in _FUNCTIONS for op in body)
    columns = sum(op == "Column" for op in body)
    return int(1e6 * functions / len(body)), int(1e6 * columns / len(body)), len(body)


def _error_kind(err: apsw.Error) -> str:
    if isinstance(err, (apsw.NoMemError, apsw.FullError)):
        return "out_of_memory"
    if isinstance(err, apsw.ConstraintError):
        return "constraint"
    return "engine_error"


def _ported_ddl(schema_sql: Sequence[str], dialect: str | None) -> list[str]:
    if dialect in (None, SQLiteBackend.dialect):
        return list(schema_sql)
    return [sqlglot.transpile(ddl, read=dialect, write="sqlite")[0] for ddl in schema_sql]


def _write(
    conn: apsw.Connection,
    schema_sql: Sequence[str],
    rows: Mapping[str, Sequence[tuple]],
    names: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Run the DDL and insert the rows, in one transaction (trusted: no authorizer yet)."""
    with conn:
        for ddl in schema_sql:
            conn.execute(ddl)
        for table, table_rows in rows.items():
            if not table_rows:
                continue
            if names:
                conn.executemany(sqlbuild.insert(table, names[table]), table_rows)
            else:
                conn.executemany(sqlbuild.insert_row(table, len(table_rows[0])), table_rows)


def _deny_writes(code: int, *_: object) -> int:
    if code in (apsw.SQLITE_READ, apsw.SQLITE_SELECT, apsw.SQLITE_PRAGMA, apsw.SQLITE_FUNCTION):
        return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _clean(err: BaseException) -> str:
    text = str(err)
    for prefix in ("SQLError: ", "Error: "):
        text = text.removeprefix(prefix)
    return text.strip()[:500]
