"""A throwaway PostgreSQL cluster for the tests: ``initdb`` and ``pg_ctl`` on a free port.

Started at most once per test process, on first use, in a temporary directory, listening on
127.0.0.1 only; stopped and removed when the process exits. Run as root (as CI is), the cluster
belongs to the unprivileged ``postgres`` user that Debian's package creates, since ``initdb``
refuses to run as root. Tests that need it are marked ``postgres`` and skip, with the reason,
only where no PostgreSQL binaries are installed.
"""

from __future__ import annotations

import atexit
import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time

USER = "quill"
"""The cluster's superuser (trust authentication on 127.0.0.1)."""

_LOCK = threading.Lock()
_STARTED: list[str] = []


def bin_dir() -> str | None:
    """The directory of ``initdb`` and ``pg_ctl`` (Debian's versioned one, else the PATH's)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def unavailable() -> str | None:
    """Why no cluster can be started here, or ``None`` when one can."""
    if bin_dir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
    try:
        import pglast  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError:
        return 'the postgres extra is not installed: pip install "quill-sql[postgres]"'
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to own the cluster"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def url(dbname: str = "postgres") -> str:
    """The URL of ``dbname`` on this process's cluster (started now if needed).

    Also sets ``QUILL_POSTGRES_URL``, where Quill builds suites and small databases.
    """
    with _LOCK:
        if not _STARTED:
            _STARTED.append(_start())
        base = _STARTED[0]
    return f"{base}/{dbname}"


def _start() -> str:
    reason = unavailable()
    if reason:
        raise RuntimeError(reason)
    binaries = bin_dir()
    root = tempfile.mkdtemp(prefix="quill-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    subprocess.run(
        _as_owner(
            [f"{binaries}/initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-locale"]
        ),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
        "-c synchronous_commit=off -c max_connections=300 -c shared_buffers=64MB"
    )
    subprocess.run(
        _as_owner(
            [f"{binaries}/pg_ctl", "-D", data, "-o", options, "-l", os.path.join(root, "log"), "-w", "start"]
        ),
        check=True,
        capture_output=True,
    )
    atexit.register(_stop, binaries, data, root)
    base = f"postgresql://{USER}@127.0.0.1:{port}"
    os.environ["QUILL_POSTGRES_URL"] = f"{base}/postgres"
    return base


def _stop(binaries: str, data: str, root: str) -> None:
    subprocess.run(
        _as_owner([f"{binaries}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]), capture_output=True
    )
    for _ in range(20):
        if not os.path.exists(os.path.join(data, "postmaster.pid")):
            break
        time.sleep(0.1)
    shutil.rmtree(root, ignore_errors=True)


def create_database(
    name: str, schema_sql: list[str], rows: dict[str, list[tuple]], dialect: str = "sqlite"
) -> str:
    """A user's database ``name`` (not one of Quill's) with real keys, from DDL and rows; its URL."""
    import psycopg
    from psycopg import sql as pgsql

    from quill_env.backends.ddl import port_ddl

    with psycopg.connect(url(), autocommit=True) as admin:
        admin.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    target = url(name)
    with psycopg.connect(target, autocommit=True) as conn:
        for stmt in port_ddl(schema_sql, dialect, "postgres", keep_foreign_keys=True):
            conn.execute(stmt)
        for table, data in rows.items():
            if data:
                with conn.cursor().copy(
                    pgsql.SQL("COPY {} FROM STDIN").format(pgsql.Identifier(table))
                ) as copy:
                    for row in data:
                        copy.write_row(row)
        conn.execute("ANALYZE")
    return target


def fingerprint(database_url: str) -> str:
    """A digest of every table's rows, every table's definition and the catalog's index list."""
    import psycopg
    from psycopg import sql as pgsql

    digest = hashlib.sha256()
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v') ORDER BY 1"
            )
        ]
        for table in tables:
            digest.update(table.encode())
            for row in conn.execute(
                pgsql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t").format(
                    pgsql.Identifier(table)
                )
            ):
                digest.update(str(row[0]).encode())
        for row in conn.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index x "
            "JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' ORDER BY 1"
        ):
            digest.update(repr(row).encode())
        for row in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
            "ORDER BY 1"
        ):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def user_databases() -> list[str]:
    """Databases on the cluster that are not Quill's own (nor the cluster's templates)."""
    import psycopg

    with psycopg.connect(url(), autocommit=True) as conn:
        return sorted(
            r[0]
            for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")
            if not r[0].startswith("quill_") and r[0] != "postgres"
        )
