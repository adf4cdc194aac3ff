"""The backend interface: what Quill needs from a database engine.

A backend opens a task database, runs one statement under a budget and reports rows, columns
and a *work* figure (the engine's own deterministic cost counter), builds indexes in a scratch
state that is discarded, explains query plans, and introspects the schema. Engine differences
live in the documented class attributes below, not in branches elsewhere. SQLite ships with
Quill; DuckDB and PostgreSQL backends implement the same interface.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Protocol

from quill_env.policy import IndexSpec


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

    # --- identity --------------------------------------------------------------------------

    @abc.abstractmethod
    def engine_version(self) -> str:
        """Engine name and version, e.g. ``SQLite 3.54.1``."""

    # --- schema ----------------------------------------------------------------------------

    @abc.abstractmethod
    def tables(self) -> dict[str, TableInfo]:
        """Tables and views of the database by lower-cased name, in creation order."""

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
    def execute(self, sql: str, budget: Budget | None = None, *, sandboxed: bool = True) -> ExecResult:
        """Run one statement and fetch its rows.

        Args:
            sql: exactly one statement; more than one is ``DENIED``.
            budget: work, time and row limits.
            sandboxed: apply the engine-level sandbox (read-only authorizer and function
                allowlist). Only the harness's own trusted statements run unsandboxed.
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
    def scratch_indexes(self, indexes: Sequence[IndexSpec]) -> contextlib.AbstractContextManager[None]:
        """Build ``indexes`` in a scratch state that is discarded when the context exits."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def no_indexes() -> Iterator[None]:
    """A scratch context that builds nothing."""
    yield
