"""The PostgreSQL backend (the ``postgres`` extra: psycopg 3 and pglast), on a real server.

Copies, never the user's database
    Quill only ever reads the database it is given. :meth:`PostgresBackend.open` works on a
    *working copy* made with ``CREATE DATABASE ... TEMPLATE`` from a template of Quill's own: a
    suite's generated database (``quill tasks build --engine postgres``), or a copy of the user's
    database read once per process in one ``REPEATABLE READ`` snapshot (schema from the catalog,
    rows with ``COPY``; foreign keys become metadata, see :mod:`quill_env.backends.ddl`). Every
    template is ``VACUUM ANALYZE``-d with ``default_statistics_target = 10000`` (statistics from
    every row of a table up to 3,000,000 rows, so they repeat) and autovacuum off, and its
    copies inherit the statistics, so plans repeat too. Small databases (variants) are schemas
    of one scratch database per process. See :mod:`quill_env.backends.pg_server` for naming,
    clean-up and ``QUILL_PG_SCRATCH_URL``.

Sandbox (``sandboxed=True``)
    The statement must pass the gate (:mod:`quill_env.backends.pg_gate`: PostgreSQL's own
    parser, one ``SELECT``, allowlisted functions and casts, no system columns, no clock). It
    then runs in a read-only transaction (a read-only savepoint inside a scratch state, which
    ``SET LOCAL transaction_read_only`` makes read-only even after the index builds), as the
    role ``quill_reader`` where the connecting role may switch to it (a role that can only read
    the tables: no superuser functions, no files, no ``COPY``, no ``SET ROLE`` back), with
    ``statement_timeout`` and a timer that cancels it (``TIMEOUT``), and ``work_mem`` pinned.
    Rows are fetched from a cursor in chunks (``ROW_CAP``). Everything it did is rolled back.

Work counter
    From the executed plan (see :func:`quill_env.backends.pg_gate.work_of`): a superuser
    session loads ``auto_explain`` and has each measured statement's plan sent back as a notice
    (one execution); otherwise the statement is run again under ``EXPLAIN ANALYZE`` in the same
    snapshot (two executions, the same figures). The work budget is checked when the statement
    ends; the wall-clock limit bounds what it can do before that.

Scratch states
    Candidate indexes are built in a transaction that is rolled back (:meth:`scratch_indexes`),
    the harness's own changes likewise (:meth:`transient`). Rolled-back rows still occupy pages
    until a vacuum, which could change later plans, so twins are never applied to the main
    copy: :attr:`nested_transient` is false and each twin is a copy of its own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg
import sqlglot
from psycopg import errors as pgerrors
from psycopg import sql as pgsql
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres

from quill_env.backends import ddl, pg_catalog, pg_gate, pg_server
from quill_env.backends.base import (
    COMMON_DENIED_FUNCTIONS,
    Backend,
    Budget,
    ExecResult,
    ExecStatus,
    IndexSpec,
    SandboxRules,
    TableInfo,
    Timer,
    Watchdog,
    largest_value,
)
from quill_env.errors import DatabaseError, EngineError, IndexBuildError

FETCH_CHUNK = 50_000
"""The most rows fetched from the cursor at a time (a row cap fetches one more than it allows, at once)."""

FETCH = pgsql.SQL("FETCH FORWARD {} FROM {}")

CURSOR = "quill_cursor"

SANDBOX_RULES = SandboxRules(
    denied_functions=COMMON_DENIED_FUNCTIONS | pg_gate.DENIED_NAMES,
    clock_values=frozenset({"now", "today", "tomorrow", "yesterday", "localtime", "utc"}),
    internal_table_prefixes=("pg_", "information_schema"),
    default_schema="public",
)
"""What the action policy refuses before a statement reaches PostgreSQL (the gate refuses
everything outside its allowlists again)."""


@dataclass
class _Recipe:
    """How to make another copy of a backend's database (for :meth:`PostgresBackend.clone`)."""

    template: str | None = None
    """The template database (a database-backed copy)."""
    schema_sql: list[str] = field(default_factory=list)
    rows: dict[str, list[tuple]] = field(default_factory=dict)
    log: list[tuple[str, tuple]] = field(default_factory=list)
    """Trusted statements that changed the database, in order."""


class PostgresBackend(Backend):
    """A private copy of a PostgreSQL database on a server (see the module docstring)."""

    name: ClassVar[str] = "postgres"
    display_name: ClassVar[str] = "PostgreSQL"
    dialect: ClassVar[str] = "postgres"
    work_unit: ClassVar[str] = "rows_processed"
    calibration_alpha: ClassVar[float] = 0.72
    """Chosen against interleaved bare wall time over every eighth shipped reference at the medium
    scale (``benchmarks/engines.py --engine postgres --scale medium --every 8``: 90 pairs, results in
    ``benchmarks/results/engines-postgres.json``). The least-squares fit (alpha 0.751, statement
    work 1,707, row work 0.62: Spearman 0.905, tier exact 66%, within one 99%) paid 17% of the
    references a tier above their wall tier; these constants pay 7% above at about the same
    agreement (Spearman 0.915, exact 64%, within one 98%). A statement costs about as much as
    producing 2,000 rows before it produces any (parse, plan, executor start and the round trips)."""
    calibration_statement_work: ClassVar[float] = 2_000.0
    calibration_row_work: ClassVar[float] = 5.0
    deterministic_work: ClassVar[bool] = True
    url_schemes: ClassVar[tuple[str, ...]] = ("postgres", "postgresql")
    is_server: ClassVar[bool] = True
    row_id: ClassVar[str | None] = "ctid"
    """Rows are addressed by ``ctid``, read as an integer (see :func:`.pg_server.decode_tid`)."""
    nested_transient: ClassVar[bool] = False
    """Twins are copies of their own (rolled-back rows would stay in the main copy's pages)."""
    harness_writes_linger: ClassVar[bool] = True
    sandbox_rules: ClassVar[SandboxRules] = SANDBOX_RULES
    server: ClassVar[pg_server.Server | None] = None
    """Where this class's small databases go (``None``: :func:`default_server`)."""

    def __init__(
        self,
        pool: pg_server.Pool,
        schema: str,
        *,
        label: str,
        recipe: _Recipe,
        owns_database: bool,
        timer: Timer = time.perf_counter,
        data_version: str = "",
    ) -> None:
        """Wrap a database or scratch schema that is loaded (use the constructors)."""
        self._pool = pool
        self._server = pool.server
        self._schema = schema
        self._label = label
        self._recipe = recipe
        self._owns_database = owns_database
        self._timer = timer
        self._data_version = data_version
        self._held: pg_server._Conn | None = None
        self._depth = 0
        self._tables: dict[str, TableInfo] | None = None
        self._catalog: pg_gate.Catalog | None = None
        self._closed = False
        self._lock = threading.RLock()

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def on(cls, server: pg_server.Server) -> type[PostgresBackend]:
        """The class bound to ``server``: its :meth:`from_rows` and :meth:`empty` databases go there."""
        return _bound(server)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, timer: Timer = time.perf_counter) -> PostgresBackend:
        """A private working copy of the database at the URL ``path`` (that database is only read).

        Raises:
            DatabaseError: the URL cannot be read, the server refused, or the role may not
                create Quill's databases (the message says what to do).
        """
        url = os.fspath(path)
        source, dbname = pg_server.parse(url)
        home = pg_server.scratch_server(source)
        if home is source and dbname.startswith("quill_suite_"):
            template, version = dbname, dbname
        else:
            template, version = pg_catalog.source_copy(source, dbname, home)
        working = home.create("w", template=template)
        pool = pg_server.Pool(home, working)
        recipe = _Recipe(template=template)
        return cls.on(home)(
            pool, "public", label=pg_server.redact(url), recipe=recipe, owns_database=True, timer=timer,
            data_version=version,
        )  # fmt: skip

    @classmethod
    def empty(cls, *, timer: Timer = time.perf_counter) -> PostgresBackend:
        """A new empty database (a schema of the scratch database)."""
        return cls.from_rows([], {}, label=":scratch:", timer=timer)

    @classmethod
    def from_rows(
        cls,
        schema_sql: Sequence[str],
        rows: Mapping[str, Sequence[tuple]],
        *,
        label: str = ":scratch:",
        dialect: str | None = None,
        timer: Timer = time.perf_counter,
    ) -> PostgresBackend:
        """A small database from DDL and rows, as a schema of this process's scratch database.

        Raises:
            DatabaseError: a statement or a row was refused by the server.
        """
        server = cls.server or default_server()
        recipe = _Recipe(schema_sql=ddl.port_ddl(schema_sql, dialect, "postgres"),
                         rows={k: list(v) for k, v in rows.items()})  # fmt: skip
        return cls.on(server)._schema_copy(recipe, label, timer)

    @classmethod
    def _schema_copy(cls, recipe: _Recipe, label: str, timer: Timer) -> PostgresBackend:
        server = cls.server or default_server()
        pool = server.scratch()
        schema = f"s_{os.getpid()}_{next(_SCHEMAS)}"
        with pool.connection() as conn:
            pg = conn.pg
            try:
                with pg.transaction():
                    pg.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
                    pg.execute(pgsql.SQL("SET LOCAL search_path TO {}").format(pgsql.Identifier(schema)))
                    for stmt in recipe.schema_sql:
                        pg.execute(stmt)
                    for table, data in recipe.rows.items():
                        pg_catalog.copy_rows(pg, table, data)
                    for stmt, params in recipe.log:
                        _run(pg, stmt, params)
                    pg_catalog.grant_reader(pg, schema, server)
            except psycopg.Error as err:
                raise DatabaseError(f"cannot build the database: {pg_server.first_line(err)}") from None
        return cls(pool, schema, label=label, recipe=recipe, owns_database=False, timer=timer)

    @classmethod
    def suite_database(
        cls,
        key: str,
        schema_sql: Sequence[str],
        columns: Any,
        *,
        dialect: str | None = None,
        rebuild: bool = False,
    ) -> str:
        """The URL of a suite's database ``key`` on the default server, built when missing.

        ``columns`` is a callable returning column-major data per table (called only to build).

        Raises:
            DatabaseError: no server is configured or the build failed.
        """
        server = cls.server or default_server()
        name = "quill_suite_" + hashlib.sha1(key.encode()).hexdigest()[:10] + "_" + _slug(key)[:30]
        if rebuild and server.exists(name):
            server.drop(name)
        if server.exists(name) and server.comment(name).get("complete"):
            return server.url(name)
        building = server.create("building", key=key)
        try:
            with server.connect(building) as pg:
                for stmt in ddl.port_ddl(schema_sql, dialect, "postgres"):
                    pg.execute(stmt)
                data = columns()
                for table, cols in data.items():
                    pg_catalog.copy_rows(pg, table, list(zip(*cols.values())), list(cols))
                pg_catalog.finish_template(pg, server)
            server.set_comment(building, quill="suite", key=key, complete=True)
            if server.exists(name):  # another process finished first: its copy is the same data
                server.drop(building)
                return server.url(name)
            server.rename(building, name)
        except BaseException:
            server.drop(building)
            raise
        return server.url(name)

    def clone(self) -> PostgresBackend:
        """Another private copy of this database (a new working copy, or a new scratch schema)."""
        recipe = _Recipe(self._recipe.template, list(self._recipe.schema_sql), self._recipe.rows,
                         list(self._recipe.log))  # fmt: skip
        if recipe.template is None:
            return type(self)._schema_copy(recipe, self._label, self._timer)
        working = self._server.create("w", template=recipe.template)
        pool = pg_server.Pool(self._server, working)
        copy = type(self)(pool, "public", label=self._label, recipe=recipe, owns_database=True,
                          timer=self._timer, data_version=self._data_version)  # fmt: skip
        try:
            with pool.connection() as conn:
                for stmt, params in recipe.log:
                    _run(conn.pg, stmt, params)
        except psycopg.Error as err:
            copy.close()
            raise DatabaseError(f"cannot clone {self._label}: {pg_server.first_line(err)}") from None
        return copy

    @classmethod
    def port(cls, sql: str, dialect: str) -> str:
        """``sql`` in PostgreSQL's dialect, a derived table without an alias given one.

        PostgreSQL before 16 requires the alias; SQLite does not.

        Raises:
            sqlglot.errors.SqlglotError: ``sql`` cannot be parsed in ``dialect``.
        """
        if dialect == cls.dialect:
            return sql
        out = []
        for tree in sqlglot.parse(sql, read=dialect):
            if tree is None:
                continue
            for n, sub in enumerate(tree.find_all(exp.Subquery)):
                if not sub.alias and isinstance(sub.parent, (exp.From, exp.Join)):
                    sub.set("alias", exp.TableAlias(this=exp.to_identifier(f"quill_derived_{n}")))
            out.append(tree.sql(cls.dialect))
        return ";\n".join(out)

    # --- identity --------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """Where this database came from (a password-free URL, or a variant name)."""
        return self._label

    @property
    def data_version(self) -> str:
        """A digest of the data this copy was made from (part of cached baselines' keys)."""
        return self._data_version

    def engine_version(self) -> str:
        """The server's version, e.g. ``PostgreSQL 15.18``."""
        return self._server.facts["version"]

    def size_bytes(self) -> int:
        """The space the tables of this database occupy."""
        rows = self.query(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            (self._schema,),
        )
        return int(rows[0][0])

    @property
    def reader_role(self) -> bool:
        """Whether candidates run as the read-only role ``quill_reader``."""
        return bool(self._server.facts["reader"])

    # --- connections -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[pg_server._Conn]:
        if self._held is not None:
            yield self._held
            return
        with self._pool.connection(self._schema) as conn:
            yield conn

    @contextlib.contextmanager
    def _hold(self) -> Iterator[pg_server._Conn]:
        """Keep one connection for a transaction (scratch indexes, a transient state)."""
        if self._held is not None:
            self._depth += 1
            try:
                yield self._held
            finally:
                self._depth -= 1
            return
        with self._pool.connection(self._schema) as conn:
            self._held = conn
            try:
                yield conn
            finally:
                self._held = None

    # --- the harness's own statements ------------------------------------------------------

    def query(self, sql: str, params: Sequence[object] = (), *, max_work: int | None = None) -> list[tuple]:
        """Run one of the harness's own statements (no sandbox) and return its rows.

        ``max_work`` is not counted for trusted statements; they run under a 60-second limit
        when it is given.

        Raises:
            EngineError: the server refused or failed it.
        """
        text, values = self._harness_sql(sql, params)
        with self._lock, self._connection() as conn:
            pg = conn.pg
            try:
                if max_work is not None and self._held is None:
                    with pg.transaction():
                        pg.execute("SET LOCAL statement_timeout = '60s'")
                        cur = _run(pg, text, values)
                        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
                else:
                    with _savepoint(pg, self._held is not None):
                        cur = _run(pg, text, values)
                        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
                status = cur.statusmessage or ""
            except psycopg.Error as err:
                raise EngineError(pg_server.first_line(err)) from None
        self._note_trusted(text, tuple(values), status)
        return rows

    def execute_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        """Run one of the harness's own parameterized statements once per row (no sandbox).

        Raises:
            EngineError: the server refused or failed it (nothing of it is kept).
        """
        rows = [list(r) for r in rows]
        if not rows:
            return
        converted = [self._harness_sql(sql, r) for r in rows]
        text = converted[0][0]
        with self._lock, self._connection() as conn:
            pg = conn.pg
            try:
                with _savepoint(pg, self._held is not None) if self._held is not None else pg.transaction():
                    cur = psycopg.RawCursor(pg)
                    for _, values in converted:  # one by one: psycopg's pipelined executemany
                        cur.execute(text, values)  # warns on stderr when a row is refused
            except psycopg.Error as err:
                raise EngineError(pg_server.first_line(err)) from None
        for _, values in converted:
            self._note_trusted(text, tuple(values), "CHANGE")

    def _note_trusted(self, sql: str, params: tuple, status: str) -> None:
        word = status.split(" ", 1)[0].upper()
        if word in ("SELECT", "EXPLAIN", "SHOW", "SET", "RESET", ""):
            return
        self._tables = None
        self._catalog = None
        if self._held is None:
            self._recipe.log.append((sql, params))

    def _harness_sql(self, sql: str, params: Sequence[object]) -> tuple[str, list]:
        """``sql`` with numbered placeholders, and ``ctid`` compared with integers as tids."""
        text, tid_params = _harness_text(sql)
        values = list(params)
        for index in tid_params:
            if index < len(values) and isinstance(values[index], int):
                values[index] = pg_server.encode_tid(values[index])
        return text, values

    @contextlib.contextmanager
    def transient(self) -> Iterator[None]:
        """A transaction (a savepoint inside another) rolled back on exit."""
        with self._rolled_back("quill_transient"):
            yield

    @contextlib.contextmanager
    def _rolled_back(self, savepoint: str) -> Iterator[psycopg.Connection]:
        """A transaction on the held connection (``savepoint`` inside another), rolled back on exit.

        The cached tables are as they were before, afterwards.
        """
        tables_before = self._tables
        with self._lock, self._hold() as conn:
            pg = conn.pg
            nested = self._depth > 0
            name = pgsql.Identifier(savepoint).as_string(pg)
            pg.execute(f"SAVEPOINT {name}" if nested else "BEGIN")
            try:
                yield pg
            finally:
                with contextlib.suppress(psycopg.Error):
                    pg.execute(f"ROLLBACK TO SAVEPOINT {name}" if nested else "ROLLBACK")
                self._tables = tables_before
                self._catalog = None

    # --- schema ----------------------------------------------------------------------------

    def tables(self) -> dict[str, TableInfo]:
        """Tables and views with columns, keys, indexes and row counts (cached)."""
        if self._tables is None:
            with self._lock, self._connection() as conn:
                self._tables = pg_catalog.introspect(conn.pg, self._schema)
        return self._tables

    def type_sql(self) -> list[str]:
        """``CREATE TYPE ... AS ENUM`` and ``CREATE DOMAIN`` of the types this database defines."""
        with self._lock, self._connection() as conn:
            return pg_catalog.type_statements(conn.pg, self._schema)

    def _gate_catalog(self) -> pg_gate.Catalog:
        if self._catalog is None:
            functions, types = pg_catalog.allowed(self._server, self._pool, self._schema)
            if self._tables is not None:
                names = frozenset(self._tables)
            else:
                with self._lock, self._connection() as conn:
                    names = frozenset(
                        str(r[0]).lower()
                        for r in conn.pg.execute(
                            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm')",
                            (self._schema,),
                        )
                    )
            self._catalog = pg_gate.Catalog(functions, types, names, self._schema)
        return self._catalog

    # --- execution -------------------------------------------------------------------------

    def execute(
        self,
        sql: str,
        budget: Budget | None = None,
        *,
        sandboxed: bool = True,
        double_quoted_strings: bool = False,
    ) -> ExecResult:
        """Run one statement under ``budget`` and fetch its rows (see the module docstring)."""
        del double_quoted_strings
        budget = budget or Budget()
        if sandboxed:
            gate = pg_gate.check(sql, self._gate_catalog())
            if gate.status is not None:
                return ExecResult(status=gate.status, error=gate.error, error_kind=gate.kind)
        text = self._on_schema(sql)
        with self._lock, self._connection() as conn:
            return self._run_measured(conn, text, budget, sandboxed)

    def _on_schema(self, sql: str) -> str:
        """On a scratch schema, ``public.t`` means the schema's own ``t``."""
        if self._schema == "public" or "public" not in sql.lower():
            return sql
        try:
            tree = sqlglot.parse_one(sql, read="postgres")
        except sqlglot.errors.SqlglotError:
            return sql
        for table in tree.find_all(exp.Table):
            if table.args.get("db") is not None and table.db.lower() == "public":
                table.set("db", None)
        return tree.sql("postgres")

    def _run_measured(self, conn: pg_server._Conn, sql: str, budget: Budget, sandboxed: bool) -> ExecResult:
        pg = conn.pg
        facts = self._server.facts
        timer = self._timer
        nested = self._held is not None
        text = sql.strip().rstrip(";")
        rows: list[tuple] = []
        columns: list[str] = []
        status, error, kind = ExecStatus.OK, "", ""
        plan: dict | None = None
        settings: list[tuple[str, str]] = []
        if budget.max_seconds is not None:
            settings.append(("statement_timeout", str(max(1, int(budget.max_seconds * 1000) + 50))))
        if facts["auto_explain"]:  # superuser settings first: the reader role may not set them
            settings.append(("auto_explain.log_min_duration", "0"))
            if budget.max_heap_bytes is not None:
                settings.append(("temp_file_limit", str(max(1024, budget.max_heap_bytes // 1024))))
        if sandboxed:
            settings.append(("transaction_read_only", "on"))
            if facts["reader"]:
                settings.append(("role", pg_server.READER_ROLE))
        begin = (
            "SAVEPOINT quill_run"
            if nested
            else "BEGIN ISOLATION LEVEL REPEATABLE READ" + (" READ ONLY" if sandboxed else "")
        )
        calls = pgsql.SQL(", ").join(
            pgsql.SQL("set_config({}, {}, true)").format(pgsql.Literal(k), pgsql.Literal(v))
            for k, v in settings
        )
        end = (
            "ROLLBACK TO SAVEPOINT quill_run; RELEASE SAVEPOINT quill_run"
            if nested
            else ("ROLLBACK" if sandboxed else "COMMIT")
        )
        start = timer()
        watchdog = Watchdog(functools.partial(pg.cancel_safe, timeout=5.0), budget.max_seconds)
        try:
            pg.execute(
                begin + ("; " + pgsql.SQL("SELECT {}").format(calls).as_string(pg) if settings else "")
            )
            try:
                conn.notices.clear()
                declare = pgsql.SQL("DECLARE {} NO SCROLL CURSOR FOR ").format(pgsql.Identifier(CURSOR))
                _single(pg, declare.as_string(pg) + text)  # one statement, whatever the text holds
                cap = budget.max_rows
                while True:
                    want = FETCH_CHUNK if cap is None else max(1, min(FETCH_CHUNK, cap + 1 - len(rows)))
                    cur = pg.execute(FETCH.format(pgsql.Literal(want), pgsql.Identifier(CURSOR)))
                    if not columns and cur.description:
                        columns = [d.name for d in cur.description]
                    chunk = cur.fetchall()
                    rows.extend(tuple(r) for r in chunk)
                    if cap is not None and len(rows) > cap:
                        del rows[cap + 1 :]
                        status, error = ExecStatus.ROW_CAP, f"more than {cap:,} rows"
                        break
                    if len(chunk) < want:
                        break
                pg.execute(pgsql.SQL("CLOSE {}").format(pgsql.Identifier(CURSOR)))
                if status is ExecStatus.OK:
                    plan = _plan_from_notices(conn.notices)
                    if plan is None:
                        cur = _single(pg, "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) " + text)
                        plan = _json_plan(cur.fetchone()[0])
            finally:
                with contextlib.suppress(psycopg.Error):
                    pg.execute(end)
        except psycopg.Error as err:
            status, error, kind = _classify(err)
        except (MemoryError, RecursionError) as err:
            status, error, kind = ExecStatus.RUNTIME_ERROR, type(err).__name__, "out_of_memory"
        finally:
            watchdog.stop()
        if watchdog.fired and status is not ExecStatus.OK:
            status, error, kind = ExecStatus.TIMEOUT, "stopped at the time budget", ""
        seconds = timer() - start
        counters = pg_gate.plan_counters(plan["Plan"]) if plan else {}
        counters["rows_returned"] = len(rows)
        work = self.work_of(counters)
        tables_read = pg_gate.relations(plan["Plan"]) if plan else frozenset()
        if status is ExecStatus.TIMEOUT and budget.max_work is not None:
            work = max(work, budget.max_work)
        if status is ExecStatus.OK and budget.max_work is not None and work > budget.max_work:
            status, error = ExecStatus.TIMEOUT, f"work {work:,} exceeded the budget of {budget.max_work:,}"
        if (
            status is ExecStatus.OK
            and budget.max_value_bytes is not None
            and largest_value(rows) > budget.max_value_bytes
        ):
            status, error, kind, rows = ExecStatus.DENIED, "a value exceeds the size limit", "too_big", []
        if status is ExecStatus.OK and not sandboxed:
            self._note_trusted(
                sql, (), "CHANGE" if not sql.lstrip().lower().startswith(("select", "with")) else "SELECT"
            )
        return ExecResult(status=status, rows=rows, columns=columns, work=work, seconds=seconds, error=error,
                          error_kind=kind, counters=counters, tables_read=tables_read)  # fmt: skip

    def work_of(self, counters: Mapping[str, int], *, reference: Mapping[str, int] | None = None) -> int:
        """The deterministic work of one statement (:func:`quill_env.backends.pg_gate.work_of`)."""
        return pg_gate.work_of(counters)

    def _plan_refused(self, sql: str) -> str | None:
        """``(no plan: why)`` when the gate refuses ``sql``: no plan of it is made."""
        gate = pg_gate.check(sql, self._gate_catalog())
        return f"(no plan: {gate.error})" if gate.status is not None else None

    def explain(self, sql: str) -> str:
        """PostgreSQL's plan of ``sql`` (``EXPLAIN``, costs on) as text (``(no plan: ...)`` when refused)."""
        refused = self._plan_refused(sql)
        if refused is not None:
            return refused
        with self._lock, self._connection() as conn:
            pg = conn.pg
            try:
                with _savepoint(pg, self._held is not None) if self._held is not None else pg.transaction():
                    pg.execute("SET LOCAL transaction_read_only = on")
                    if self._server.facts["reader"]:
                        pg.execute(
                            pgsql.SQL("SET LOCAL ROLE {}").format(pgsql.Identifier(pg_server.READER_ROLE))
                        )
                    cur = _single(pg, "EXPLAIN " + self._on_schema(sql).strip().rstrip(";"))
                    lines = [r[0] for r in cur.fetchall()]
                    raise _Rollback(lines)
            except _Rollback as done:
                return "\n".join(done.lines)
            except psycopg.Error as err:
                return f"(no plan: {pg_server.first_line(err)})"

    # --- scratch indexes -------------------------------------------------------------------

    @contextlib.contextmanager
    def scratch_indexes(self, indexes: Sequence[IndexSpec], budget: Budget | None = None) -> Iterator[None]:
        """Build ``indexes`` in a transaction that is rolled back on exit.

        ``budget`` bounds the build's time (``statement_timeout`` and a cancelling timer) and
        its work (the rows of the indexed tables).

        Raises:
            IndexBuildError: a build failed or ran out of budget (rolled back first).
        """
        if not indexes:
            yield
            return
        budget = budget or Budget()
        counts = {k: t.row_count for k, t in self.tables().items()}
        with self._rolled_back("quill_indexes") as pg:
            self._build(pg, indexes, budget, counts)
            self._tables = None
            self._catalog = None
            yield

    def _build(
        self, pg: psycopg.Connection, indexes: Sequence[IndexSpec], budget: Budget, counts: dict
    ) -> None:
        work = 0
        if budget.max_seconds is not None:
            ms = max(1, int(budget.max_seconds * 1000))
            pg.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(pgsql.Literal(ms)))
        with Watchdog(functools.partial(pg.cancel_safe, timeout=5.0), budget.max_seconds) as watchdog:
            for i, spec in enumerate(indexes):
                work += max(1, int(counts.get(spec.table.lower(), 0)))
                if budget.max_work is not None and work > budget.max_work:
                    raise IndexBuildError("building the indexes exceeded the budget")
                try:
                    pg.execute(spec.to_sql(f"quill_scratch_{i}", "postgres"))
                except pgerrors.QueryCanceled:
                    raise IndexBuildError("building the indexes exceeded the budget") from None
                except (pgerrors.OutOfMemory, pgerrors.DiskFull, pgerrors.ConfigurationLimitExceeded):
                    raise IndexBuildError("building the indexes ran out of memory") from None
                except psycopg.Error as err:
                    if watchdog.fired:
                        raise IndexBuildError("building the indexes exceeded the budget") from None
                    raise IndexBuildError(pg_server.first_line(err)) from None

    def plan_with_indexes(self, sql: str, indexes: Sequence[IndexSpec]) -> str:
        """The plan of ``sql`` with ``indexes`` as HypoPG's hypothetical indexes, where it is installed.

        HypoPG (Debian's ``postgresql-NN-hypopg``) is created in a transaction that is rolled
        back, so nothing of it stays; without it, or without the superuser right to create it,
        the indexes are built in a scratch state instead (see :meth:`Backend.plan_with_indexes`).

        Raises:
            IndexBuildError: the indexes cannot be built (the fallback only).
        """
        if not indexes or not self._server.facts["hypopg"] or self._held is not None:
            return super().plan_with_indexes(sql, indexes)
        refused = self._plan_refused(sql)
        if refused is not None:
            return refused
        with self._lock, self._connection() as conn:
            pg = conn.pg
            try:
                with pg.transaction():
                    pg.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
                    names = []
                    try:  # hypothetical indexes live in the session, not the transaction: reset them
                        for i, spec in enumerate(indexes):
                            ddl_text = spec.to_sql(f"quill_scratch_{i}", "postgres")
                            made = pg.execute("SELECT indexname FROM hypopg_create_index(%s)", (ddl_text,))
                            names.append(str(made.fetchone()[0]))
                        explain = "EXPLAIN " + self._on_schema(sql).strip().rstrip(";")
                        lines = [r[0] for r in _single(pg, explain)]
                    finally:
                        pg.execute("SELECT hypopg_reset()")
                    raise _Rollback(lines)
            except _Rollback as done:
                text = "\n".join(done.lines)
                for i, name in sorted(enumerate(names), key=lambda p: -len(p[1])):
                    text = text.replace(name, f"quill_scratch_{i}")
                return text
            except psycopg.Error as err:
                raise IndexBuildError(pg_server.first_line(err)) from None

    @property
    def hypothetical_indexes(self) -> bool:
        """Whether :meth:`plan_with_indexes` uses HypoPG here (installed, and the role may create it)."""
        return bool(self._server.facts["hypopg"])

    # --- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Drop this copy (its database, or its scratch schema)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_database:
            self._pool.close()
            self._server.drop(self._pool.dbname)
            return
        with contextlib.suppress(psycopg.Error, DatabaseError), self._pool.connection() as conn:
            conn.pg.execute(
                pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(self._schema))
            )

    def __repr__(self) -> str:
        return self._label


class _Rollback(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("rollback")
        self.lines = lines


_SCHEMAS = iter(range(1, 1 << 62))


@functools.cache
def _bound(server: pg_server.Server) -> type[PostgresBackend]:
    return type("PostgresBackend", (PostgresBackend,), {"server": server, "__module__": __name__})


def default_server() -> pg_server.Server:
    """The server for suites and small databases when none is implied: ``QUILL_POSTGRES_URL``.

    Falls back on ``QUILL_PG_SCRATCH_URL``, then on the ``PG*`` environment variables.

    Raises:
        DatabaseError: none is configured.
    """
    url = os.environ.get("QUILL_POSTGRES_URL") or os.environ.get(pg_server.SCRATCH_URL_ENV)
    if url:
        server, _ = pg_server.parse(url if "/" in url.split("://", 1)[-1] else url + "/postgres")
        return server
    if os.environ.get("PGHOST") or os.environ.get("PGSERVICE"):
        return pg_server.server_for({})
    raise DatabaseError(
        "no PostgreSQL server is configured: set QUILL_POSTGRES_URL=postgresql://user@host:port/postgres "
        "(or PGHOST and friends), or pass --url"
    )


@contextlib.contextmanager
def _savepoint(pg: psycopg.Connection, nested: bool) -> Iterator[None]:
    if not nested:
        yield
        return
    pg.execute("SAVEPOINT quill_stmt")
    try:
        yield
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            pg.execute("ROLLBACK TO SAVEPOINT quill_stmt")
        raise
    pg.execute("RELEASE SAVEPOINT quill_stmt")


@functools.lru_cache(maxsize=4096)
def _harness_text(sql: str) -> tuple[str, tuple[int, ...]]:
    """A harness statement as the server runs it, and which parameters are row ids.

    Cached: the same statements run for every row and every variant. Placeholders are numbered
    (:func:`_numbered`); an integer compared with ``ctid`` becomes the tid it stands for, and a
    parameter compared with it is listed (0-based) for conversion.
    """
    text = _numbered(sql)
    if "ctid" not in text.lower():
        return text, ()
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except sqlglot.errors.SqlglotError:
        return text, ()
    changed = False
    params: list[int] = []
    for node in list(tree.find_all(exp.Column)):
        if node.name.lower() != "ctid":
            continue
        parent = node.parent
        others: list[exp.Expression] = []
        if isinstance(parent, exp.In) and parent.this is node:
            others = list(parent.expressions)
        elif isinstance(parent, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
            others = [parent.expression if parent.this is node else parent.this]
        for other in others:
            number = _integer_literal(other)
            if number is not None:
                other.replace(exp.Literal.string(pg_server.encode_tid(number)))
                changed = True
            elif isinstance(other, exp.Parameter):
                params.append(int(other.this.this) - 1)
    return (tree.sql("postgres") if changed else text), tuple(params)


def _integer_literal(node: exp.Expression) -> int | None:
    """The integer a literal (or a negated one) stands for, else ``None``."""
    sign = 1
    if isinstance(node, exp.Neg):
        node, sign = node.this, -1
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return sign * int(node.this)
        except ValueError:
            return None
    return None


def _single(pg: psycopg.Connection, sql: str) -> psycopg.Cursor:
    """Run ``sql`` as one prepared statement: the server refuses a text of several statements."""
    cur = psycopg.RawCursor(pg)
    cur.execute(sql, prepare=True)
    return cur


def _run(pg: psycopg.Connection, sql: str, params: Sequence[object] = ()) -> psycopg.Cursor:
    cur = psycopg.RawCursor(pg) if params else pg.cursor()
    cur.execute(sql, list(params) if params else None)
    return cur


@functools.lru_cache(maxsize=4096)
def _numbered(sql: str) -> str:
    """``sql`` with its ``%s`` or ``?`` placeholders as ``$1``, ``$2``, ... (strings untouched).

    >>> _numbered("SELECT a FROM t WHERE b LIKE '%s?' AND c = %s AND d IN (?, ?)")
    "SELECT a FROM t WHERE b LIKE '%s?' AND c = $1 AND d IN ($2, $3)"
    """
    if "%s" not in sql and "?" not in sql:
        return sql
    try:
        tokens = Postgres().tokenize(sql)
    except sqlglot.errors.SqlglotError:
        return sql
    out, last, n = [], 0, 0
    TT = sqlglot.tokens.TokenType
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        span: tuple[int, int] | None = None
        if tok.token_type == TT.PLACEHOLDER and tok.text == "?":
            span = (tok.start, tok.end + 1)
        elif (
            tok.token_type == TT.MOD
            and i + 1 < len(tokens)
            and tokens[i + 1].text == "s"
            and tokens[i + 1].start == tok.end + 1
        ):
            span = (tok.start, tokens[i + 1].end + 1)
            i += 1
        if span is not None:
            n += 1
            out.append(sql[last : span[0]] + f"${n}")
            last = span[1]
        i += 1
    return "".join(out) + sql[last:]


def _classify(err: psycopg.Error) -> tuple[ExecStatus, str, str]:
    """Status, message and data-free kind of a server error."""
    message = pg_server.first_line(err)
    state = getattr(err, "sqlstate", None) or ""
    if isinstance(err, pgerrors.QueryCanceled):
        return ExecStatus.TIMEOUT, "stopped at the time budget", ""
    if state in ("42501", "25006") or isinstance(
        err, (pgerrors.InsufficientPrivilege, pgerrors.ReadOnlySqlTransaction)
    ):
        return ExecStatus.DENIED, message, "denied"
    if state.startswith("42") or state.startswith("0A"):
        return ExecStatus.PREPARE_ERROR, message, "engine_error"
    if state.startswith("53"):
        return ExecStatus.RUNTIME_ERROR, message, "out_of_memory"
    if state.startswith("54"):
        return ExecStatus.RUNTIME_ERROR, message, "too_big"
    return ExecStatus.RUNTIME_ERROR, message, "engine_error"


def _plan_from_notices(notices: list[str]) -> dict | None:
    for text in reversed(notices):
        start = text.find("{")
        if text.startswith("duration:") and start >= 0:
            with contextlib.suppress(ValueError):
                return json.loads(text[start:])
    return None


def _json_plan(value: Any) -> dict | None:
    raw = json.loads(value) if isinstance(value, str) else value
    return raw[0] if isinstance(raw, list) and raw else None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())


__all__ = ["PostgresBackend", "default_server"]
