"""PostgreSQL servers as Quill uses them: connections, Quill's own databases, leftovers.

Quill never writes to a database it did not create. It works on databases of its own on a
server (by default the server of the database it was given; ``QUILL_PG_SCRATCH_URL`` names
another), each named ``quill_<kind>_...`` and commented with who made it:

- ``quill_suite_<suite>_<data hash>_<scale>``: a suite's generated data (kept; a template);
- ``quill_src_...``: a copy of a user's database, read once in one snapshot (a template);
- ``quill_w_...``: a working copy of a template (a main database, a twin), made with
  ``CREATE DATABASE ... TEMPLATE`` and dropped when closed;
- ``quill_scratch_...``: one per process, where small databases (variants) live as schemas.

Working copies and scratch databases are dropped when their process closes them or exits; one
left by a process that was killed is dropped by the next Quill process on the same host
(:meth:`Server.sweep`). Credentials come from the URL, the ``PG*`` environment variables or a
service file (libpq reads them), never from Quill's code.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from quill_env.backends import redact_url as redact
from quill_env.errors import DatabaseError, MissingExtraError

try:
    import psycopg
    from psycopg import sql as pgsql
    from psycopg.adapt import Loader
    from psycopg.conninfo import conninfo_to_dict, make_conninfo
except ImportError:  # pragma: no cover - the postgres extra is not installed
    raise MissingExtraError("postgres", "psycopg") from None

READER_ROLE = "quill_reader"
"""The role candidates run as where Quill may use it: it can read the tables and nothing else."""

SCRATCH_URL_ENV = "QUILL_PG_SCRATCH_URL"
"""Environment variable naming the server (any database on it) where Quill creates its databases."""

MAX_IDLE_CONNECTIONS = 24
"""Idle connections kept open per process; the least recently used beyond them are closed."""

SESSION_SETTINGS: tuple[tuple[str, str], ...] = (
    ("jit", "off"),
    ("max_parallel_workers_per_gather", "0"),
    ("plan_cache_mode", "force_custom_plan"),
    ("cursor_tuple_fraction", "1"),
    ("geqo_seed", "0"),
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("lock_timeout", "30s"),
    ("work_mem", "16MB"),
    ("maintenance_work_mem", "64MB"),
    ("default_statistics_target", "10000"),
)
"""Settings of every connection: no JIT, no parallel workers and custom plans only (so the plan
and the work counter repeat), cursors planned as whole queries, the genetic optimizer seeded,
UTC and ISO dates, bounded memory per sort or hash, and statistics sampled from every row of
tables up to 3,000,000 rows (a deterministic ``ANALYZE``)."""

AUTO_EXPLAIN_SETTINGS: tuple[tuple[str, str], ...] = (
    ("auto_explain.log_min_duration", "-1"),
    ("auto_explain.log_analyze", "on"),
    ("auto_explain.log_timing", "off"),
    ("auto_explain.log_buffers", "on"),
    ("auto_explain.log_format", "json"),
    ("auto_explain.log_level", "notice"),
    ("auto_explain.log_nested_statements", "off"),
)
"""``auto_explain`` reports each measured statement's executed plan to the client (a superuser
session enables it per statement with ``SET LOCAL auto_explain.log_min_duration = 0``)."""

TID_FACTOR = 292
"""A row's ``ctid`` ``(block, offset)`` is read as the integer ``block * TID_FACTOR + offset``: a
heap page of 8 KB holds at most 291 rows (a server with larger pages is refused)."""

_KEEP_OIDS = frozenset({16, 17, 18, 19, 20, 21, 23, 25, 26, 700, 701, 1042, 1043, 1700, 27})
"""Types loaded as Python values (bool, bytea, char, name, integers, text, oid, floats, numeric,
tid); every other type is read as its text (dates, times, JSON, arrays, ...), so results are
plain, hashable and JSON-serializable values."""


def decode_tid(text: str) -> int:
    """The integer a ``ctid`` text stands for (see :data:`TID_FACTOR`).

    >>> decode_tid("(3,17)")
    893
    """
    block, _, offset = text.strip("()").partition(",")
    return int(block) * TID_FACTOR + int(offset)


def encode_tid(value: int) -> str:
    """The ``ctid`` text of an integer from :func:`decode_tid`.

    >>> encode_tid(893), encode_tid(-1)
    ('(3,17)', '(0,0)')

    A negative integer is no row's: it becomes ``(0,0)``, which no row has (offsets start at 1).
    """
    if value < 0:
        return "(0,0)"
    block, offset = divmod(int(value), TID_FACTOR)
    return f"({block},{offset})"


class _TidLoader(Loader):
    def load(self, data: Any) -> int:
        return decode_tid(bytes(data).decode())


class _NumericLoader(Loader):
    """``numeric`` as ``int`` when whole, else ``float`` (as SQLite and DuckDB return sums)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        if "." not in text and "e" not in text.lower():
            return int(text)
        return float(text)


def is_postgres_url(text: str) -> bool:
    """Whether ``text`` is a PostgreSQL URL.

    >>> is_postgres_url("postgresql://u@h/db"), is_postgres_url("shop.db")
    (True, False)
    """
    return text.split("://", 1)[0].lower().split("+")[0] in ("postgres", "postgresql")


def _libpq_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep and scheme.lower() != "postgresql" else url


@dataclass
class _Conn:
    """One open connection and what it is set to."""

    pg: psycopg.Connection
    search_path: str | None = None
    notices: list[str] = field(default_factory=list)


_IDLE_LOCK = threading.Lock()
_IDLE: OrderedDict[int, tuple[Pool, _Conn]] = OrderedDict()


class Pool:
    """Connections to one database, shared by the backends whose data lives there.

    A backend takes one for each statement or for the whole of a transaction; idle ones are
    kept (at most :data:`MAX_IDLE_CONNECTIONS` per process, across all pools).
    """

    def __init__(self, server: Server, dbname: str) -> None:
        self.server = server
        self.dbname = dbname
        self._free: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def connection(self, search_path: str | None = None) -> Iterator[_Conn]:
        """A connection set to ``search_path``, returned to the pool afterwards."""
        conn = self._take()
        try:
            if search_path is not None and conn.search_path != search_path:
                conn.pg.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(search_path)))
                conn.search_path = search_path
            yield conn
        except BaseException:
            self._discard(conn)
            raise
        else:
            self._give(conn)

    def _take(self) -> _Conn:
        with self._lock:
            while self._free:
                conn = self._free.pop()
                with _IDLE_LOCK:
                    _IDLE.pop(id(conn), None)
                if not conn.pg.closed:
                    return conn
        return self.server.open(self.dbname)

    def _give(self, conn: _Conn) -> None:
        if conn.pg.closed or self._closed:
            _close(conn)
            return
        if conn.pg.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._discard(conn)
            return
        conn.notices.clear()
        with self._lock:
            self._free.append(conn)
        evicted = []
        with _IDLE_LOCK:
            _IDLE[id(conn)] = (self, conn)
            while len(_IDLE) > MAX_IDLE_CONNECTIONS:
                evicted.append(_IDLE.popitem(last=False)[1])
        for pool, old in evicted:
            pool._forget(old)

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            if conn in self._free:
                self._free.remove(conn)
        _close(conn)

    def _discard(self, conn: _Conn) -> None:
        with _IDLE_LOCK:
            _IDLE.pop(id(conn), None)
        _close(conn)

    def close(self) -> None:
        """Close every idle connection (connections in use close when given back)."""
        self._closed = True
        with self._lock:
            free, self._free = self._free, []
        for conn in free:
            self._discard(conn)


def _close(conn: _Conn) -> None:
    with contextlib.suppress(Exception):
        conn.pg.close()


class Server:
    """One PostgreSQL server: how to connect to it and what Quill may do there.

    Args:
        params: libpq connection parameters without ``dbname`` (host, port, user, ...).
    """

    def __init__(self, params: dict[str, str]) -> None:
        self.params = {k: v for k, v in params.items() if k != "dbname"}
        self.maintenance_db = params.get("dbname") or "postgres"
        self._lock = threading.Lock()
        self._facts: dict[str, Any] | None = None
        self._swept = False
        self._scratch: Pool | None = None
        self._created: set[str] = set()

    # --- connections -----------------------------------------------------------------------

    def connect(self, dbname: str, *, setup: bool = False) -> psycopg.Connection:
        """A new autocommit connection to ``dbname`` (Quill's session settings when ``setup``).

        Raises:
            DatabaseError: the server refused the connection.
        """
        try:
            conn = psycopg.connect(
                make_conninfo(**self.params, dbname=dbname), autocommit=True, connect_timeout=10
            )
        except psycopg.Error as err:
            raise DatabaseError(f"cannot connect to {self.describe(dbname)}: {first_line(err)}") from None
        return conn

    def open(self, dbname: str) -> _Conn:
        """A connection to ``dbname`` with Quill's session settings, loaders and notice capture."""
        pg = self.connect(dbname)
        conn = _Conn(pg)
        pg.add_notice_handler(lambda diag: conn.notices.append(diag.message_primary or ""))
        for name, value in SESSION_SETTINGS:
            pg.execute("SELECT set_config(%s, %s, false)", (name, value))
        if self.facts["auto_explain"]:
            pg.execute("LOAD 'auto_explain'")
            for name, value in AUTO_EXPLAIN_SETTINGS:
                pg.execute("SELECT set_config(%s, %s, false)", (name, value))
        adapters = pg.adapters
        for oid in self.facts["text_oids"]:
            adapters.register_loader(oid, psycopg.types.string.TextLoader)
        adapters.register_loader("tid", _TidLoader)
        adapters.register_loader("numeric", _NumericLoader)
        return conn

    @property
    def facts(self) -> dict[str, Any]:
        """What the connecting role may do here (read once)."""
        with self._lock:
            if self._facts is None:
                self._facts = self._read_facts()
            return self._facts

    def _read_facts(self) -> dict[str, Any]:
        with self.connect(self.maintenance_db) as conn:
            version, superuser, createdb, block = conn.execute(
                "SELECT current_setting('server_version_num')::int, rolsuper, rolcreatedb, "
                "current_setting('block_size')::int FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            if int(block) != 8192:
                raise DatabaseError(f"{self.describe()} uses {block}-byte pages; Quill supports 8192")
            if int(version) < 130000:
                raise DatabaseError(f"{self.describe()} runs PostgreSQL {version}; Quill needs 13 or newer")
            auto_explain = False
            if superuser:
                try:
                    conn.execute("LOAD 'auto_explain'")
                    auto_explain = True
                except psycopg.Error:
                    auto_explain = False
            keep = sorted(_KEEP_OIDS)
            text_oids = [r[0] for r in conn.execute("SELECT oid FROM pg_type WHERE oid <> ALL(%s)", (keep,))]
            reader = self._ensure_reader(conn)
            hypopg = bool(
                superuser
                and conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone()
            )
            full = conn.execute("SELECT version()").fetchone()[0]
        return {
            "version_num": int(version),
            "version": "PostgreSQL " + str(full).split()[1].rstrip(","),
            "superuser": bool(superuser),
            "createdb": bool(createdb or superuser),
            "auto_explain": auto_explain,
            "text_oids": text_oids,
            "reader": reader,
            "hypopg": hypopg,
        }

    @staticmethod
    def _ensure_reader(conn: psycopg.Connection) -> bool:
        """Whether this role can switch to :data:`READER_ROLE` (created when it may)."""
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.Error):
                conn.execute(
                    pgsql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT").format(
                        pgsql.Identifier(READER_ROLE)
                    )
                )
        try:
            conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(READER_ROLE)))
            conn.execute("RESET ROLE")
            return True
        except psycopg.Error:
            return False

    def describe(self, dbname: str | None = None) -> str:
        """The server (and database) as a password-free URL."""
        user = self.params.get("user") or os.environ.get("PGUSER", "")
        host = self.params.get("host") or os.environ.get("PGHOST", "localhost")
        port = self.params.get("port") or os.environ.get("PGPORT", "")
        where = f"{host}:{port}" if port else host
        return f"postgresql://{user + '@' if user else ''}{where}/{dbname or ''}"

    def url(self, dbname: str) -> str:
        """A URL of ``dbname`` on this server (with the password, if one was given)."""
        return _to_url({**self.params, "dbname": dbname})

    # --- Quill's own databases -------------------------------------------------------------

    def exists(self, dbname: str) -> bool:
        """Whether a database of that name exists."""
        with self.connect(self.maintenance_db) as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None
            )

    def comment(self, dbname: str) -> dict[str, Any]:
        """The JSON comment Quill put on one of its databases (empty when none)."""
        with self.connect(self.maintenance_db) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
        return _parse_comment(row[0] if row else None)

    def create(self, kind: str, *, template: str | None = None, name: str | None = None, **note: Any) -> str:
        """Create a database of Quill's (``quill_<kind>_...``) and return its name.

        Raises:
            DatabaseError: the role may not create databases here (with what to do about it).
        """
        self.sweep()
        if not self.facts["createdb"]:
            raise DatabaseError(
                f"the role on {self.describe()} may not create databases, and Quill works on copies of "
                f"its own: grant it CREATEDB, or set {SCRATCH_URL_ENV} to a server where it may "
                "(Quill only ever reads the database you give it)"
            )
        name = name or f"quill_{kind}_{os.getpid()}_{secrets.token_hex(4)}"
        comment = json.dumps({"quill": kind, "host": socket.gethostname(), "pid": os.getpid(),
                              "created": int(time.time()), **note})  # fmt: skip
        statement = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
        if template is not None:
            statement = pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                pgsql.Identifier(name), pgsql.Identifier(template)
            )
        with self.connect(self.maintenance_db) as conn:
            try:
                conn.execute(statement)
                conn.execute(
                    pgsql.SQL("COMMENT ON DATABASE {} IS {}").format(
                        pgsql.Identifier(name), pgsql.Literal(comment)
                    )
                )
            except psycopg.Error as err:
                raise DatabaseError(
                    f"cannot create database {name} on {self.describe()}: {first_line(err)}"
                ) from None
        if kind != "suite":
            with self._lock:
                self._created.add(name)
        return name

    def drop(self, dbname: str) -> None:
        """Drop one of Quill's databases (connections to it are ended first)."""
        with self._lock:
            self._created.discard(dbname)
        with contextlib.suppress(psycopg.Error), self.connect(self.maintenance_db) as conn:
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(dbname))
            )

    def rename(self, old: str, new: str) -> None:
        """Rename one of Quill's databases (nobody may be connected to it)."""
        with self.connect(self.maintenance_db) as conn:
            conn.execute(
                pgsql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    pgsql.Identifier(old), pgsql.Identifier(new)
                )
            )

    def set_comment(self, dbname: str, **note: Any) -> None:
        """Replace the JSON comment of one of Quill's databases."""
        with self.connect(self.maintenance_db) as conn:
            conn.execute(
                pgsql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    pgsql.Identifier(dbname), pgsql.Literal(json.dumps(note))
                )
            )

    def sweep(self) -> None:
        """Drop working copies and scratch databases left by dead Quill processes on this host (once)."""
        with self._lock:
            if self._swept:
                return
            self._swept = True
        here = socket.gethostname()
        with self.connect(self.maintenance_db) as conn:
            rows = conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname LIKE 'quill\\_%%'"
            ).fetchall()
        for name, text in rows:
            note = _parse_comment(text)
            mine = note.get("quill") in ("w", "scratch", "src", "building") and note.get("host") == here
            if mine and not _alive(int(note.get("pid", 0))):
                self.drop(name)

    def scratch(self) -> Pool:
        """The pool of this process's scratch database (created on first use)."""
        with self._lock:
            pool = self._scratch
        if pool is not None:
            return pool
        name = self.create("scratch")
        with self.connect(name) as conn:
            lock_functions(conn, self)
        pool = Pool(self, name)
        with self._lock:
            if self._scratch is None:
                self._scratch = pool
                return pool
        self.drop(name)
        return self._scratch

    def close(self) -> None:
        """Drop every database this process created here (at exit)."""
        with self._lock:
            pool, self._scratch = self._scratch, None
            names = sorted(self._created)
        if pool is not None:
            pool.close()
        for name in names:
            self.drop(name)


LOCKED_FUNCTIONS = (
    "set_config", "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema", "cursor_to_xml",
    "cursor_to_xmlschema", "ts_stat", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_notify",
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock", "pg_try_advisory_xact_lock", "current_setting", "pg_backend_pid",
)  # fmt: skip
"""Built-ins whose ``EXECUTE`` Quill revokes from ``PUBLIC`` in its own databases (where it is a
superuser): ``set_config('role', ...)`` and the functions that run SQL text would let a statement
switch back from the reader role to the session's superuser, since ``SET ROLE`` is checked
against the session user; the others wait, lock, signal or read settings."""


def lock_functions(pg: psycopg.Connection, server: Server) -> None:
    """Revoke :data:`LOCKED_FUNCTIONS` from ``PUBLIC`` in the connected database (a superuser's own)."""
    if not server.facts["superuser"]:
        return
    for (signature,) in pg.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'pg_catalog' AND p.proname = ANY(%s)",
        (list(LOCKED_FUNCTIONS),),
    ).fetchall():
        pg.execute(pgsql.SQL("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC").format(pgsql.SQL(signature)))


def _parse_comment(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def first_line(err: BaseException) -> str:
    """The first line of an error's message (no statement excerpt), at most 500 characters."""
    return str(err).strip().split("\n", 1)[0][:500]


def _to_url(params: dict[str, str]) -> str:
    from urllib.parse import quote

    user = params.get("user")
    password = params.get("password")
    auth = ""
    if user:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    host = params.get("host", "")
    port = params.get("port")
    rest = {k: v for k, v in params.items() if k not in ("user", "password", "host", "port", "dbname")}
    query = "&".join(f"{quote(k)}={quote(str(v), safe='')}" for k, v in sorted(rest.items()))
    if "/" in host:  # a Unix socket directory goes in the query
        query = "&".join(filter(None, [f"host={quote(host, safe='')}", query]))
        host = ""
    where = host + (f":{port}" if port else "")
    return f"postgresql://{auth}{where}/{quote(params.get('dbname', ''), safe='')}" + (
        f"?{query}" if query else ""
    )


_SERVERS_LOCK = threading.Lock()
_SERVERS: dict[tuple, Server] = {}


def parse(url: str) -> tuple[Server, str]:
    """The server of a PostgreSQL URL and the database it names.

    Parameters missing from the URL come from the ``PG*`` environment variables or a service
    file, as libpq reads them.

    Raises:
        DatabaseError: the URL cannot be read, or names no database.
    """
    try:
        params = conninfo_to_dict(_libpq_url(url))
    except psycopg.ProgrammingError as err:
        raise DatabaseError(f"cannot read the PostgreSQL URL {redact(url)!r}: {first_line(err)}") from None
    dbname = params.get("dbname") or os.environ.get("PGDATABASE", "")
    if not dbname:
        raise DatabaseError(f"the PostgreSQL URL {redact(url)!r} names no database")
    return server_for(params), dbname


def server_for(params: dict[str, str]) -> Server:
    """The one :class:`Server` of these connection parameters in this process."""
    key = tuple(sorted((k, v) for k, v in params.items() if k != "dbname"))
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is None:
            server = _SERVERS[key] = Server(params)
        return server


def scratch_server(source: Server) -> Server:
    """Where Quill creates its databases for a source on ``source`` (``QUILL_PG_SCRATCH_URL`` or itself)."""
    url = os.environ.get(SCRATCH_URL_ENV)
    if not url:
        return source
    try:
        params = conninfo_to_dict(_libpq_url(url))
    except psycopg.ProgrammingError as err:
        raise DatabaseError(f"cannot read {SCRATCH_URL_ENV}: {first_line(err)}") from None
    return server_for(params)


@atexit.register
def _close_servers() -> None:
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
    with _IDLE_LOCK:
        idle = list(_IDLE.values())
        _IDLE.clear()
    for _pool, conn in idle:
        _close(conn)
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


__all__ = [
    "LOCKED_FUNCTIONS",
    "READER_ROLE",
    "SCRATCH_URL_ENV",
    "Pool",
    "Server",
    "decode_tid",
    "encode_tid",
    "first_line",
    "is_postgres_url",
    "lock_functions",
    "parse",
    "redact",
    "scratch_server",
    "server_for",
]
