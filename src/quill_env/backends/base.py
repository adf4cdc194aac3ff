"""The backend interface: what Quill needs from a database engine.

A backend is the only place that knows its engine. It provides one lifecycle that the rest of
Quill calls without asking which engine it has:

- **open** a database file read-only, as a private copy (:meth:`Backend.open`), or build one
  from a schema and rows (:meth:`Backend.from_rows`: how variant databases are loaded on any
  engine) or write such a file (:meth:`Backend.create_file`: how suite databases are made);
  :meth:`Backend.clone` makes another private copy;
- **run** one untrusted statement under a :class:`Budget`, returning rows, columns and *work*
  (the engine's own deterministic cost counter), with the engine-level sandbox
  (:meth:`Backend.execute`);
- **scratch** states that are discarded: indexes built under a budget
  (:meth:`Backend.scratch_indexes`) and the harness's own changes (:meth:`Backend.transient`,
  how twins are applied);
- the harness's own **trusted** statements (:meth:`Backend.query`, :meth:`Backend.execute_many`),
  with engine failures raised as :class:`~quill_env.errors.EngineError`;
- **introspection**: tables, explain, engine version, dialect, row identity and capabilities,
  as documented class attributes rather than branches elsewhere.

SQLite ships with Quill; DuckDB (the ``duckdb`` extra) implements the same interface.
"""

from __future__ import annotations

import abc
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Protocol

from sqlglot import exp

from quill_env import sqlbuild
from quill_env.dialect import SUITE_DIALECT


@dataclass(frozen=True)
class IndexSpec:
    """A ``CREATE INDEX`` an action asks for: plain columns of one existing table."""

    table: str
    columns: tuple[tuple[str, bool], ...]
    """``(column, descending)`` pairs, in index order."""

    def to_sql(self, name: str, dialect: str = SUITE_DIALECT) -> str:
        """Render the statement with a harness-chosen index ``name`` (never the agent's)."""
        cols = [exp.Ordered(this=sqlbuild.column(c), desc=d, nulls_first=not d) for c, d in self.columns]
        stmt = exp.Create(
            kind="INDEX",
            this=exp.Index(
                this=exp.to_identifier(name, quoted=True),
                table=sqlbuild.table(self.table),
                params=exp.IndexParameters(columns=cols),
            ),
        )
        return stmt.sql(dialect)


COMMON_DENIED_FUNCTIONS = frozenset(
    {"random", "rand", "now", "current_date", "current_time", "current_timestamp", "current_datetime"}
)
"""Functions no engine's action may call: they read the clock or a random source."""


@dataclass(frozen=True)
class SandboxRules:
    """What an engine's actions may not name: the action policy's first line of defence.

    The backend's own sandbox (authorizer, catalog checks, read-only state, budgets) is the
    second line and refuses the same things again; these rules let the policy refuse them before
    anything runs, with a message naming what was refused.
    """

    denied_functions: frozenset[str] = COMMON_DENIED_FUNCTIONS
    """Function names (lower case) that are non-deterministic, touch files or leak engine state."""
    clock_functions: frozenset[str] = frozenset()
    """Date functions that read the clock when called without arguments or with a time value
    such as ``'now'`` (SQLite ``date``, ``strftime``, ...): their arguments must be columns,
    literals or other date functions."""
    clock_values: frozenset[str] = frozenset({"now", "localtime", "utc"})
    """String literals that a date function reads as the current time (refused anywhere)."""
    internal_table_prefixes: tuple[str, ...] = ()
    """Name prefixes of the engine's catalog tables (refused with a message saying so)."""
    default_schema: str = "main"
    """The one schema name a table may be qualified with."""


class ExecStatus(str, Enum):
    """How one statement execution ended."""

    OK = "ok"
    """Ran to completion; all rows fetched."""
    TIMEOUT = "timeout"
    """Stopped at its work or time budget."""
    ROW_CAP = "row_cap"
    """Returned more rows than allowed; fetching stopped."""
    PREPARE_ERROR = "prepare_error"
    """The engine refused to compile it (syntax, unknown column, ...)."""
    RUNTIME_ERROR = "runtime_error"
    """Failed while running."""
    DENIED = "denied"
    """Blocked by the engine-level sandbox (authorizer, limits, multiple statements)."""


@dataclass(frozen=True)
class Budget:
    """Limits for one execution; ``None`` means unlimited."""

    max_work: int | None = None
    """Engine work units (SQLite: VM steps)."""
    max_seconds: float | None = None
    """Wall-clock seconds, a safety net above the work budget."""
    max_rows: int | None = None
    """Rows fetched before stopping with ``ROW_CAP``."""
    max_heap_bytes: int | None = None
    """Engine heap the statement may add; exhausting it is a ``RUNTIME_ERROR`` (out of memory)."""
    max_value_bytes: int | None = None
    """The largest string or blob the statement may build; a larger one is ``DENIED``."""


@dataclass
class ExecResult:
    """The outcome of one execution."""

    status: ExecStatus
    rows: list[tuple] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    work: int = 0
    """Engine work counter of the statement (deterministic)."""
    seconds: float = 0.0
    """Wall-clock time of the execution including fetching rows."""
    error: str = ""
    """The engine's own message. It may carry database values: never show it to an agent."""
    error_kind: str = ""
    """A data-free category of the failure (``out_of_memory``, ``too_big``, ``engine_error`` ...)."""
    counters: dict[str, int] = field(default_factory=dict)
    """All engine counters of the statement (SQLite: stmt_status)."""
    tables_read: frozenset[str] = frozenset()
    """Base tables the engine reports the statement reads."""

    @property
    def ok(self) -> bool:
        """Whether the statement ran to completion."""
        return self.status is ExecStatus.OK


@dataclass(frozen=True)
class ColumnInfo:
    """A column of a table."""

    name: str
    type: str
    notnull: bool
    pk: int
    """1-based position in the primary key, 0 when not part of it."""


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key from ``columns`` to ``ref_table(ref_columns)``."""

    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class IndexInfo:
    """An index of a table."""

    name: str
    columns: tuple[str, ...]
    unique: bool
    origin: str
    """``c`` for CREATE INDEX, ``u`` for UNIQUE constraints, ``pk`` for primary keys."""
    sql: str | None = None


@dataclass(frozen=True)
class TableInfo:
    """Everything Quill needs to know about one table."""

    name: str
    columns: tuple[ColumnInfo, ...]
    foreign_keys: tuple[ForeignKey, ...]
    indexes: tuple[IndexInfo, ...]
    row_count: int
    sql: str
    is_view: bool = False

    @property
    def column_names(self) -> list[str]:
        """The column names in declaration order."""
        return [c.name for c in self.columns]

    @property
    def primary_key(self) -> tuple[str, ...]:
        """The primary-key columns in key order (empty for rowid tables without one)."""
        return tuple(c.name for c in sorted(self.columns, key=lambda c: c.pk) if c.pk)

    @property
    def unique_sets(self) -> list[tuple[str, ...]]:
        """Column sets that must be unique (primary key and UNIQUE indexes/constraints)."""
        sets = [self.primary_key] if self.primary_key else []
        sets += [i.columns for i in self.indexes if i.unique and i.columns not in sets]
        return sets


class Timer(Protocol):
    """A clock; inject a fake one in tests (``time.perf_counter`` by default)."""

    def __call__(self) -> float:
        """Seconds since an arbitrary origin."""
        ...


class Backend(abc.ABC):
    """A connection to one task database, owned by one worker.

    Subclasses declare their capabilities as class attributes and implement the abstract
    methods. A backend never writes to the task database itself.
    """

    name: ClassVar[str]
    """Registry name (``sqlite``, ``duckdb``, ``postgres``)."""
    display_name: ClassVar[str]
    """The engine's name as people write it (``SQLite``): what an observation names."""
    dialect: ClassVar[str]
    """The sqlglot dialect used to parse actions for this engine."""
    work_unit: ClassVar[str]
    """What the ``work`` counter counts (e.g. ``vm_steps``)."""
    calibration_alpha: ClassVar[float]
    """Exponent of the calibrated speedup (see :func:`quill_env.measure.calibrated`), fitted by
    ``benchmarks/core.py`` over the reference rewrites of the shipped suites."""
    calibration_statement_work: ClassVar[float] = 0.0
    """Fixed cost of one statement in work units (harness and driver overhead)."""
    calibration_row_work: ClassVar[float] = 0.0
    """Cost of returning one row to the caller, in work units."""
    deterministic_work: ClassVar[bool] = True
    """Whether the work counter repeats exactly from run to run."""
    file_suffixes: ClassVar[tuple[str, ...]] = ()
    """File name endings of this engine's database files (how a bare path picks its engine)."""
    file_header: ClassVar[tuple[int, bytes] | None] = None
    """``(offset, bytes)`` that every database file of this engine holds (how a file is recognized)."""
    row_id: ClassVar[str | None] = None
    """The engine's implicit row identity column (SQLite ``rowid``), ``None`` if it has none;
    harness code that must address rows by identity (twins, lineage) uses it."""
    nested_transient: ClassVar[bool] = True
    """Whether :meth:`transient` can be entered inside :meth:`scratch_indexes` (savepoints);
    an engine without savepoints applies a twin to a clone of the database instead."""
    is_server: ClassVar[bool] = False
    """Whether databases live on a server and are named by URL (PostgreSQL), not files."""
    url_schemes: ClassVar[tuple[str, ...]] = ()
    """URL schemes that name this engine besides its registry name (``postgresql``)."""
    harness_writes_linger: ClassVar[bool] = False
    """Whether the harness's rolled-back changes leave traces that could change later plans (rows
    that stay in a table's pages until a vacuum): twins are then derived on a copy."""
    indexes_matter: ClassVar[bool] = True
    """Whether ``CREATE INDEX`` can change this engine's plan of a typical analytical query
    (DuckDB: rarely; the reward still pays only measured work)."""
    sandbox_rules: ClassVar[SandboxRules] = SandboxRules()
    """What the action policy refuses before a statement reaches this engine."""

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def open(cls, path: str | os.PathLike[str], *, timer: Timer = time.perf_counter) -> Backend:
        """A private copy of the database file at ``path``; the file is only ever read.

        Raises:
            DatabaseError: there is no such file or it is not a database of this engine.
        """

    @classmethod
    @abc.abstractmethod
    def empty(cls, *, timer: Timer = time.perf_counter) -> Backend:
        """A new empty in-memory database (constant folding, scratch work)."""

    @classmethod
    @abc.abstractmethod
    def from_rows(
        cls,
        schema_sql: Sequence[str],
        rows: Mapping[str, Sequence[tuple]],
        *,
        label: str = ":memory:",
        dialect: str | None = None,
    ) -> Backend:
        """An in-memory database built from DDL statements and rows per table (column order).

        This is how variant databases are loaded on every engine. ``dialect`` is the DDL's
        dialect when it is not this engine's own (it is translated).

        Raises:
            DatabaseError: the engine refused a statement or a row.
        """

    @classmethod
    def create_file(
        cls,
        path: str | os.PathLike[str],
        schema_sql: Sequence[str],
        columns: Mapping[str, Mapping[str, Sequence[object]]],
        *,
        dialect: str | None = None,
    ) -> None:
        """Write a new database file at ``path`` from DDL and column-major data per table.

        How suite databases are generated for each engine. ``path`` must not exist yet.
        """
        raise NotImplementedError(f"the {cls.name} backend cannot write database files")

    @abc.abstractmethod
    def clone(self) -> Backend:
        """Another private copy of this database, independent of this one."""

    @abc.abstractmethod
    def size_bytes(self) -> int:
        """The space this database's data occupies (how much an index build may add)."""

    @property
    def label(self) -> str:
        """Where this database came from (a path or a variant name)."""
        return repr(self)

    @property
    def data_version(self) -> str:
        """A digest of the data a server database's copy was made from ("" for a file: its key says it)."""
        return ""

    # --- the harness's own statements ------------------------------------------------------

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[object] = (), *, max_work: int | None = None) -> list[tuple]:
        """Run one of the harness's own statements without the sandbox and return its rows.

        Raises:
            EngineError: the engine refused or failed it, or it exceeded ``max_work``.
        """

    @abc.abstractmethod
    def execute_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one of the harness's own parameterized statements once per row of ``rows``.

        Raises:
            EngineError: the engine refused or failed it.
        """

    @abc.abstractmethod
    def transient(self) -> contextlib.AbstractContextManager[None]:
        """A state whose changes (the harness's own) are all discarded when the context exits."""

    @classmethod
    def port(cls, sql: str, dialect: str) -> str:
        """``sql`` written in ``dialect`` translated to this engine's dialect (unchanged if the same).

        Suites are written once (in SQLite's dialect); every other engine runs them ported.

        Raises:
            sqlglot.errors.SqlglotError: ``sql`` cannot be parsed in ``dialect``.
        """
        if dialect == cls.dialect:
            return sql
        import sqlglot

        return ";\n".join(sqlglot.transpile(sql, read=dialect, write=cls.dialect))

    def needs_double_quoted_strings(self, sql: str) -> bool:
        """Whether ``sql`` only works because the engine reads double-quoted names as strings."""
        return False

    # --- identity --------------------------------------------------------------------------

    @abc.abstractmethod
    def engine_version(self) -> str:
        """Engine name and version, e.g. ``SQLite 3.54.1``."""

    # --- schema ----------------------------------------------------------------------------

    @abc.abstractmethod
    def tables(self) -> dict[str, TableInfo]:
        """Tables and views of the database by lower-cased name, in creation order."""

    def type_sql(self) -> list[str]:
        """DDL of the database's own types that its tables use, in creation order.

        PostgreSQL's enums and domains, in the engine's dialect; none on engines without such types.
        """
        return []

    def schema_text(self) -> str:
        """The schema as DDL with each table's row count and existing indexes."""
        parts = []
        for info in self.tables().values():
            kind = "view" if info.is_view else f"{info.row_count:,} rows"
            parts.append(f"-- {info.name}: {kind}\n{info.sql.strip()};")
            parts += [f"{i.sql.strip()};" for i in info.indexes if i.sql]
        return "\n".join(parts)

    # --- execution -------------------------------------------------------------------------

    @abc.abstractmethod
    def execute(
        self,
        sql: str,
        budget: Budget | None = None,
        *,
        sandboxed: bool = True,
        double_quoted_strings: bool = False,
    ) -> ExecResult:
        """Run one statement and fetch its rows.

        Args:
            sql: exactly one statement; more than one is ``DENIED``.
            budget: work, time and row limits.
            sandboxed: apply the engine-level sandbox (read-only authorizer and function
                allowlist). Only the harness's own trusted statements run unsandboxed.
            double_quoted_strings: read a double-quoted name that is no column as a string
                (only where the original query needs it: :meth:`needs_double_quoted_strings`).
        """

    def work_of(self, counters: dict[str, int], *, reference: dict[str, int] | None = None) -> int:
        """The work of one statement from its :attr:`ExecResult.counters`.

        ``reference`` is the original query's counters on the same database: an engine whose
        estimate depends on the shape of the compiled program uses it so that a rewrite cannot
        look cheaper by adding code that never runs (see ``SQLiteBackend.work_of``). The default
        reads the engine's own counter, ``counters["work"]``.
        """
        return int(counters.get("work", 0))

    @abc.abstractmethod
    def explain(self, sql: str) -> str:
        """The engine's query plan of ``sql`` as indented text."""

    @abc.abstractmethod
    def scratch_indexes(
        self, indexes: Sequence[IndexSpec], budget: Budget | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Build ``indexes`` in a scratch state that is discarded when the context exits.

        Raises:
            IndexBuildError: the build failed or ran past ``budget`` (work, seconds, heap).
        """

    def plan_with_indexes(self, sql: str, indexes: Sequence[IndexSpec]) -> str:
        """The engine's plan of ``sql`` as if ``indexes`` existed, index ``i`` named ``quill_scratch_<i>``.

        What an index advisor asks. The default builds them in a scratch state (an engine with
        hypothetical indexes, PostgreSQL with HypoPG, only pretends).

        Raises:
            IndexBuildError: the indexes cannot be built.
        """
        with self.scratch_indexes(indexes):
            return self.explain(sql)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watchdog:
    """Calls ``action`` (an engine's interrupt or cancel) when ``seconds`` pass before :meth:`stop`.

    A timer thread; ``seconds=None`` starts none. After :meth:`stop` returns, ``action`` is not
    called any more, so a statement that ended in time is never interrupted afterwards.

    >>> calls = []
    >>> with Watchdog(lambda: calls.append(1), 0.0) as dog:
    ...     _ = dog._done.wait(1.0) or dog._thread.join()
    >>> dog.fired, calls
    (True, [1])
    """

    def __init__(self, action: Callable[[], object], seconds: float | None) -> None:
        self._action = action
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.fired = False
        """Whether ``action`` was called."""
        self._thread: threading.Thread | None = None
        if seconds is not None:
            self._thread = threading.Thread(target=self._run, args=(max(seconds, 0.0),), daemon=True)
            self._thread.start()

    def _run(self, seconds: float) -> None:
        if self._done.wait(seconds):
            return
        with self._lock:
            if not self._done.is_set():
                self.fired = True
                with contextlib.suppress(Exception):
                    self._action()

    def stop(self) -> None:
        """Stop the timer; after this returns, ``action`` is not called."""
        with self._lock:
            self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def largest_value(rows: Sequence[tuple]) -> int:
    """The size in bytes of the largest string or blob in ``rows`` (how a value-size budget is checked).

    >>> largest_value([(1, "ab"), (b"xyz", None)])
    3
    """
    largest = 0
    for row in rows:
        for value in row:
            if isinstance(value, (str, bytes, bytearray, memoryview)):
                largest = max(largest, len(value.encode()) if isinstance(value, str) else len(value))
    return largest


@contextlib.contextmanager
def no_indexes() -> Iterator[None]:
    """A scratch context that builds nothing."""
    yield
