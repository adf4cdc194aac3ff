"""The sandbox (DESIGN §5): hostile actions are refused or contained, never rewarded, never escape.

Every action of the corpus below is scored through :func:`quill_env.evaluate` and through
``env.step`` of a ``Quill-v1`` environment on a small database of its own. For each one: no
exception escapes, the verdict is a failing one with a reward <= 0, the database file keeps
its sha256, no file appears next to it (no journal, WAL, attached or vacuumed copy), and the
action finishes well inside a generous wall bound (the work budget, not a performance check).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import pgcluster
from tests.engines import engine_params, fingerprint, write_database

import quill_env
from quill_env import evaluate
from quill_env.action_policy import PolicyViolation, SchemaView, parse_action
from quill_env.backends import get_backend
from quill_env.backends.base import COMMON_DENIED_FUNCTIONS, SandboxRules
from quill_env.evaluator import EvalOptions, TaskRunner

SLOW_SQL = (
    "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) FROM users u WHERE u.country = 'NZ'"
)
FAILING = {"rejected", "syntax_error", "runtime_error", "timeout", "wrong_result"}
VOCABULARY = FAILING | {"improved", "no_gain", "unchanged"}
WALL_BOUND_S = 20.0
"""Generous: a budget check (work budget, row cap, limits), not a performance assertion."""

IX = "CREATE INDEX i ON orders(user_id); "
"""A useful index: with it the slow query is really faster, so an action built on it would be
rewarded ``improved`` if the sandbox let its hostile part through."""


@dataclass(frozen=True)
class Db:
    path: str
    directory: str
    sha256: str
    listing: tuple[str, ...]
    engine: str = "sqlite"


def _listing(engine: str, directory: str) -> tuple[str, ...]:
    """The files beside a database file, or the user databases (not Quill's) on the server."""
    if engine == "postgres":
        return tuple(pgcluster.user_databases())
    return tuple(sorted(os.listdir(directory)))


@pytest.fixture(scope="module", params=engine_params())
def db(request, tmp_path_factory) -> Db:
    """The same small database on each engine (the corpus is written once, ported by the harness)."""
    directory = tmp_path_factory.mktemp(f"sandbox-db-{request.param}")
    rng = random.Random(0)
    countries = ["NZ", "AU", "US", "FR", None]
    users = [(i, f"user{i}", rng.choice(countries)) for i in range(1, 1001)]
    orders = [
        (i, rng.randint(1, 1000), round(rng.random() * 100, 2), f"2024-01-{rng.randint(1, 28):02d}")
        for i in range(1, 4001)
    ]
    path = write_database(
        request.param,
        directory,
        "shop",
        [
            "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT)",
            "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
            " total REAL NOT NULL, created_at TEXT NOT NULL)",
        ],
        {"users": users, "orders": orders},
    )
    listing = _listing(request.param, str(directory))
    assert path.name in listing
    return Db(str(path), str(directory), fingerprint(request.param, str(path)), listing, request.param)


def _assert_untouched(db: Db) -> None:
    assert fingerprint(db.engine, db.path) == db.sha256, "the database changed"
    listing = _listing(db.engine, db.directory)
    assert listing == db.listing, f"files appeared next to the database: {set(listing) - set(db.listing)}"
    assert not [n for n in listing if n.endswith(("-journal", "-wal", "-shm"))]


# --- the corpus ----------------------------------------------------------------------------

NESTED_FROM = 100
OR_TERMS = 1000


NEST = 5000
_DEEP = "SELECT u.id FROM users u WHERE u.id = " + "(" * NEST + "1" + ")" * NEST
_MEGA = "SELECT u.id FROM users u WHERE u.name = '" + "x" * 1_100_000 + "'"
_NEAR_LIMIT = (
    "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) FROM users u "
    "WHERE u.country = 'NZ' AND u.name = '" + "y" * 99_000 + "'"
)
_IN_LIST = (
    "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) FROM users u "
    "WHERE u.country = 'NZ' AND u.id IN (" + ", ".join(str(i) for i in range(2, 24_000, 2)) + ")"
)
_GROWTH = (
    "SELECT u.id, length("
    + "replace(" * 12
    + "u.name"
    + ", 'u', 'uuuuuuuuuuuuuuuu')" * 12
    + ") FROM users u WHERE u.country = 'NZ'"
)

CORPUS: list = [
    # DML
    pytest.param("dml", "INSERT INTO users VALUES (99999, 'x', 'NZ')", id="insert"),
    pytest.param("dml", "INSERT INTO users SELECT * FROM users", id="insert-select"),
    pytest.param("dml", "UPDATE users SET country = 'NZ'", id="update"),
    pytest.param("dml", "DELETE FROM orders", id="delete"),
    pytest.param("dml", "REPLACE INTO users VALUES (1, 'x', 'NZ')", id="replace"),
    pytest.param(
        "dml", "INSERT INTO users VALUES (1, 'x', 'NZ') ON CONFLICT(id) DO UPDATE SET name = 'y'", id="upsert"
    ),
    pytest.param("dml", "DELETE FROM orders RETURNING id", id="delete-returning"),
    pytest.param("dml", IX + "UPDATE users SET name = 'x'", id="index-then-update"),
    # other DDL
    pytest.param("ddl", "CREATE TABLE evil(a)", id="create-table"),
    pytest.param("ddl", "CREATE TABLE evil AS SELECT * FROM users", id="create-table-as"),
    pytest.param("ddl", "CREATE VIEW v AS SELECT * FROM users; SELECT * FROM v", id="create-view"),
    pytest.param(
        "ddl",
        "CREATE TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM orders; END; " + SLOW_SQL,
        id="create-trigger",
    ),
    pytest.param("ddl", "CREATE TEMP TABLE t AS SELECT * FROM users; SELECT * FROM t", id="temp-table"),
    pytest.param("ddl", "DROP TABLE orders; " + SLOW_SQL, id="drop-table"),
    pytest.param("ddl", "DROP TABLE orders", id="drop-table-alone"),
    pytest.param("ddl", "DROP INDEX IF EXISTS i; " + SLOW_SQL, id="drop-index"),
    pytest.param("ddl", "ALTER TABLE users ADD COLUMN x INTEGER; " + SLOW_SQL, id="alter-add"),
    pytest.param("ddl", "ALTER TABLE users RENAME TO people; " + SLOW_SQL, id="alter-rename"),
    pytest.param("ddl", "CREATE INDEX i ON nosuch(a); " + SLOW_SQL, id="index-unknown-table"),
    pytest.param("ddl", "CREATE INDEX i ON users(nosuch); " + SLOW_SQL, id="index-unknown-column"),
    pytest.param("ddl", "CREATE INDEX i ON sqlite_master(name); " + SLOW_SQL, id="index-on-sqlite-master"),
    pytest.param("ddl", "CREATE INDEX i ON temp.orders(user_id); " + SLOW_SQL, id="index-temp-schema"),
    pytest.param("ddl", "CREATE UNIQUE INDEX i ON orders(user_id); " + SLOW_SQL, id="unique-index"),
    pytest.param("ddl", "CREATE INDEX i ON orders(user_id) WHERE total > 0; " + SLOW_SQL, id="partial-index"),
    pytest.param("ddl", "CREATE INDEX i ON users(lower(name)); " + SLOW_SQL, id="expression-index"),
    pytest.param("ddl", "CREATE INDEX i ON users(name COLLATE NOCASE); " + SLOW_SQL, id="collate-index"),
    pytest.param("ddl", "CREATE INDEX i ON orders(user_id, user_id); " + SLOW_SQL, id="index-dup-column"),
    pytest.param(
        "ddl",
        "CREATE INDEX a ON orders(user_id); CREATE INDEX b ON orders(total); "
        "CREATE INDEX c ON users(country); CREATE INDEX d ON users(name); " + SLOW_SQL,
        id="four-indexes",
    ),
    # ATTACH / DETACH
    pytest.param("attach", "ATTACH DATABASE ':memory:' AS aux; " + SLOW_SQL, id="attach-memory"),
    pytest.param("attach", "ATTACH DATABASE '{dir}/evil.db' AS evil; " + SLOW_SQL, id="attach-new-file"),
    pytest.param("attach", "ATTACH '{dir}/evil.db' AS evil", id="attach-alone"),
    pytest.param("attach", "DETACH DATABASE main; " + SLOW_SQL, id="detach"),
    pytest.param("attach", "SELECT * FROM temp.users", id="temp-schema-read"),
    pytest.param("attach", "SELECT * FROM aux.users", id="other-schema-read"),
    # PRAGMA
    pytest.param("pragma", "PRAGMA writable_schema = ON; " + SLOW_SQL, id="pragma-writable-schema"),
    pytest.param("pragma", "PRAGMA journal_mode = WAL", id="pragma-journal-mode"),
    pytest.param("pragma", "PRAGMA main.journal_mode = DELETE; " + SLOW_SQL, id="pragma-journal-prefix"),
    pytest.param("pragma", "PRAGMA query_only = OFF; " + SLOW_SQL, id="pragma-query-only"),
    pytest.param("pragma", "SELECT * FROM pragma_table_info('users')", id="pragma-table-valued"),
    pytest.param(
        "pragma",
        "SELECT u.id, (SELECT COUNT(*) FROM pragma_table_info('users')) FROM users u WHERE u.country = 'NZ'",
        id="pragma-table-valued-subquery",
    ),
    pytest.param("pragma", "SELECT u.id FROM users u, json_each('[1,2]') j", id="json-each-table-valued"),
    # VACUUM
    pytest.param("vacuum", "VACUUM", id="vacuum"),
    pytest.param("vacuum", "VACUUM INTO '{dir}/copy.db'", id="vacuum-into"),
    pytest.param("vacuum", "VACUUM INTO '{dir}/copy.db'; " + SLOW_SQL, id="vacuum-into-prefix"),
    # transactions
    pytest.param("transaction", "BEGIN; " + SLOW_SQL, id="begin"),
    pytest.param("transaction", "BEGIN IMMEDIATE; DELETE FROM users; COMMIT", id="begin-delete-commit"),
    pytest.param("transaction", "COMMIT; " + SLOW_SQL, id="commit"),
    pytest.param("transaction", "ROLLBACK", id="rollback"),
    pytest.param("transaction", "SAVEPOINT s; " + SLOW_SQL, id="savepoint"),
    pytest.param("transaction", "RELEASE quill_scratch; " + SLOW_SQL, id="release-harness-savepoint"),
    pytest.param("transaction", "ROLLBACK TO quill_scratch; " + SLOW_SQL, id="rollback-to"),
    # files and extensions
    pytest.param("files", "SELECT u.id, load_extension('/tmp/evil.so') FROM users u", id="load-extension"),
    pytest.param(
        "files", "SELECT u.id, \"load_extension\"('/tmp/evil.so') FROM users u", id="load-ext-quoted"
    ),
    pytest.param("files", "SELECT u.id, readfile('/etc/passwd') FROM users u", id="readfile"),
    pytest.param("files", "SELECT u.id, writefile('{dir}/pwned.txt', 'x') FROM users u", id="writefile"),
    pytest.param("files", "SELECT u.id, edit('x') FROM users u", id="edit"),
    pytest.param("files", "SELECT u.id, fts3_tokenizer('simple') FROM users u", id="fts3-tokenizer"),
    pytest.param("files", "SELECT u.id, sqlite_version() FROM users u", id="sqlite-version"),
    pytest.param("files", "SELECT u.id, changes() FROM users u", id="changes"),
    # internal tables
    pytest.param("schema", "SELECT * FROM sqlite_master", id="sqlite-master"),
    pytest.param("schema", "SELECT sql FROM sqlite_schema", id="sqlite-schema"),
    pytest.param("schema", "SELECT * FROM sqlite_temp_master", id="sqlite-temp-master"),
    pytest.param("schema", "SELECT * FROM main.SQLITE_MASTER", id="sqlite-master-qualified"),
    pytest.param("schema", 'SELECT * FROM "sqlite_master"', id="sqlite-master-quoted"),
    pytest.param(
        "schema",
        "SELECT u.id, (SELECT COUNT(*) FROM sqlite_master) FROM users u WHERE u.country = 'NZ'",
        id="sqlite-master-subquery",
    ),
    pytest.param("schema", "SELECT * FROM sqlite_stat1", id="sqlite-stat1"),
    # statement stacking
    pytest.param("multi", "SELECT 1; SELECT 2", id="two-queries"),
    pytest.param("multi", SLOW_SQL + "; " + SLOW_SQL, id="two-slow-queries"),
    pytest.param("multi", "SELECT 1; DELETE FROM users", id="query-then-delete"),
    pytest.param("multi", SLOW_SQL + "; DROP TABLE users", id="slow-then-drop"),
    pytest.param("multi", "WITH x AS (DELETE FROM users RETURNING id) SELECT * FROM x", id="cte-delete"),
    pytest.param(
        "multi",
        "WITH x AS (INSERT INTO users VALUES (5000, 'a', 'b') RETURNING id) SELECT 1",
        id="cte-insert",
    ),
    pytest.param("multi", "```sql\nSELECT 1\n```\n```sql\nDELETE FROM users\n```", id="fence-last-wins"),
    pytest.param("multi", "<think>SELECT 1</think>DROP TABLE users", id="think-then-drop"),
    # comments
    pytest.param("comment", "SELECT 1 -- ;DROP TABLE users", id="line-comment"),
    pytest.param("comment", "SELECT 1 /* ; DROP TABLE users; */", id="block-comment"),
    pytest.param("comment", "SELECT 1 /* unterminated ; DROP TABLE users", id="unterminated-comment"),
    pytest.param("comment", "/* x */ DROP TABLE users /* ; SELECT 1 */", id="comment-wrapped-drop"),
    pytest.param("comment", "SELECT 1 -- \n; DELETE FROM users", id="comment-newline-delete"),
    pytest.param("comment", "SELECT [x;DELETE FROM users] FROM users", id="bracket-identifier"),
    pytest.param("comment", "SELECT 'a'';DELETE FROM users;--' FROM users", id="quoted-semicolon"),
    # PostgreSQL: files, roles, settings, server state, locks, catalogs (refused on every engine)
    pytest.param("files", "SELECT u.id, pg_read_file('/etc/passwd') FROM users u", id="pg-read-file"),
    pytest.param(
        "files",
        "SELECT u.id, pg_catalog.pg_read_file('postgresql.conf') FROM users u",
        id="pg-read-file-qualified",
    ),
    pytest.param("files", "SELECT * FROM pg_ls_dir('.')", id="pg-ls-dir"),
    pytest.param("files", "SELECT u.id, lo_import('/etc/passwd') FROM users u", id="lo-import"),
    pytest.param("files", "COPY users TO '{dir}/pwned.txt'", id="copy-to-file"),
    pytest.param("files", "COPY (SELECT 1) TO PROGRAM 'touch {dir}/pwned.txt'", id="copy-to-program"),
    pytest.param("files", "SELECT * FROM dblink('dbname=postgres', 'SELECT 1') AS t(a int)", id="dblink"),
    pytest.param("files", "SELECT u.id, pg_sleep(30) FROM users u", id="pg-sleep"),
    pytest.param("files", "SET ROLE postgres; " + SLOW_SQL, id="set-role"),
    pytest.param(
        "files", "SELECT u.id, set_config('role', 'postgres', true) FROM users u", id="set-config-role"
    ),
    pytest.param("files", "SELECT u.id, current_setting('work_mem') FROM users u", id="current-setting"),
    pytest.param("files", "SELECT u.id, version() FROM users u", id="pg-version"),
    pytest.param("files", "SELECT u.id, current_database() FROM users u", id="current-database"),
    pytest.param("files", "SELECT u.id, inet_server_port() FROM users u", id="inet-server-port"),
    pytest.param("files", "SELECT u.id, pg_backend_pid() FROM users u", id="backend-pid"),
    pytest.param("files", "SELECT u.id, pg_terminate_backend(1) FROM users u", id="terminate-backend"),
    pytest.param("files", "SELECT u.id, pg_advisory_lock(1) FROM users u", id="advisory-lock"),
    pytest.param("files", "SELECT u.id, pg_notify('c', 'x') FROM users u", id="pg-notify"),
    pytest.param("files", "SELECT u.id, txid_current() FROM users u", id="txid-current"),
    pytest.param("files", "SELECT u.id, pg_relation_size('orders') FROM users u", id="relation-size"),
    pytest.param("files", "SELECT u.id, 'orders'::regclass::oid FROM users u", id="regclass-cast"),
    pytest.param(
        "files", "SELECT u.id, query_to_xml('select 1', true, true, '') FROM users u", id="query-to-xml"
    ),
    pytest.param("files", "DO $$ BEGIN DELETE FROM orders; END $$", id="do-block"),
    pytest.param("files", "SELECT id INTO evil FROM users", id="select-into"),
    pytest.param("files", SLOW_SQL + " FOR UPDATE", id="for-update"),
    pytest.param("files", "LISTEN x; " + SLOW_SQL, id="listen"),
    pytest.param("schema", "SELECT * FROM pg_class", id="pg-class"),
    pytest.param(
        "schema",
        "SELECT reltuples FROM pg_catalog.pg_class WHERE relname = 'orders'",
        id="pg-class-reltuples",
    ),
    pytest.param("schema", "SELECT * FROM pg_stats", id="pg-stats"),
    pytest.param("schema", "SELECT * FROM pg_stat_activity", id="pg-stat-activity"),
    pytest.param("schema", "SELECT * FROM information_schema.tables", id="information-schema"),
    pytest.param(
        "schema",
        "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) FROM users u "
        "WHERE u.country = 'NZ' AND (SELECT max(ctid) FROM orders) IS NOT NULL",
        id="ctid-gate",
    ),
    pytest.param("schema", "SELECT u.id, u.xmin FROM users u WHERE u.country = 'NZ'", id="xmin"),
    pytest.param("schema", "SELECT u.id, u.tableoid FROM users u WHERE u.country = 'NZ'", id="tableoid"),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND now() > '2000-01-01'", id="pg-now"),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND 'today'::date > '2000-01-01'", id="pg-today-cast"),
    pytest.param(
        "nondeterministic", IX + SLOW_SQL + " AND clock_timestamp() > '2000-01-01'", id="clock-timestamp"
    ),
    pytest.param("nondeterministic", "SELECT u.id FROM users u TABLESAMPLE BERNOULLI (50)", id="tablesample"),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND CURRENT_USER IS NOT NULL", id="current-user"),
    pytest.param("nondeterministic", "SELECT u.id, gen_random_uuid() FROM users u", id="gen-random-uuid"),
    pytest.param(
        "bomb",
        "SELECT u.id, length(repeat(u.name, u.id * u.id * u.id)) FROM users u WHERE u.country = 'NZ'",
        id="repeat-bomb",
    ),
    pytest.param(
        "bomb",
        "SELECT u.id, length(lpad(u.name, u.id * u.id * u.id)) FROM users u WHERE u.country = 'NZ'",
        id="lpad-bomb",
    ),
    # non-determinism
    pytest.param("nondeterministic", "SELECT u.id, random() FROM users u", id="random"),
    pytest.param("nondeterministic", "SELECT u.id, randomblob(8) FROM users u", id="randomblob"),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND random() IS NOT NULL", id="random-where"),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND date('now') > '2000'", id="date-now"),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND date() > '2000'", id="date-noargs"),
    pytest.param(
        "nondeterministic", IX + SLOW_SQL + " AND CURRENT_TIMESTAMP > '2000'", id="current-timestamp"
    ),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND CURRENT_DATE > '2000'", id="current-date"),
    pytest.param(
        "nondeterministic", IX + SLOW_SQL + " AND strftime('%Y', 'now') > '2000'", id="strftime-now"
    ),
    pytest.param("nondeterministic", IX + SLOW_SQL + " AND strftime('%Y') > '2000'", id="strftime-noarg"),
    pytest.param(
        "nondeterministic",
        IX + SLOW_SQL + " AND datetime('NoW', 'localtime') > '2000'",
        id="datetime-now-localtime",
    ),
    pytest.param(
        "nondeterministic",
        IX + SLOW_SQL + " AND datetime() > '2000'",
        id="datetime-noargs",
    ),
    pytest.param(
        "nondeterministic",
        IX + SLOW_SQL + " AND time() > ''",
        id="time-noargs",
    ),
    pytest.param(
        "nondeterministic",
        IX + SLOW_SQL + " AND julianday() > 0",
        id="julianday-noargs",
    ),
    pytest.param(
        "nondeterministic",
        IX + SLOW_SQL + " AND unixepoch() > 0",
        id="unixepoch-noargs",
    ),
    pytest.param(
        "nondeterministic",
        IX + SLOW_SQL + " AND date('no' || 'w') > '2000'",
        id="date-now-concat",
    ),
    # hard-coded answers and reward gaming
    pytest.param("hardcoded", "VALUES (1, 2), (3, 4)", id="values"),
    pytest.param(
        "hardcoded",
        "SELECT u.id, v.column1 FROM users u JOIN (VALUES (0)) v WHERE u.country = 'NZ'",
        id="values-join",
    ),
    pytest.param("hardcoded", "SELECT 1, 2", id="select-no-from"),
    pytest.param("hardcoded", "SELECT 1, 2 UNION ALL SELECT 3, 4", id="union-no-from"),
    pytest.param("hardcoded", "WITH c(a, b) AS (SELECT 1, 2) SELECT a, b FROM c", id="cte-no-base-table"),
    pytest.param("hardcoded", IX + SLOW_SQL + " LIMIT 1", id="added-limit"),
    pytest.param("hardcoded", IX + SLOW_SQL + " LIMIT -1 OFFSET 1", id="added-offset"),
    pytest.param(
        "hardcoded",
        "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) "
        "FROM (SELECT * FROM users LIMIT 10) u WHERE u.country = 'NZ'",
        id="limit-in-subquery",
    ),
    # bound parameters
    pytest.param("params", IX + SLOW_SQL + " AND ? IS NULL", id="param-qmark"),
    pytest.param("params", IX + SLOW_SQL + " AND ?1 IS NULL", id="param-numbered"),
    pytest.param("params", IX + SLOW_SQL + " AND :x IS NULL", id="param-named"),
    pytest.param("params", IX + SLOW_SQL + " AND @x IS NULL", id="param-at"),
    pytest.param("params", IX + SLOW_SQL + " AND $x IS NULL", id="param-dollar"),
    # resource bombs
    pytest.param(
        "bomb",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
        "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) FROM users u "
        "WHERE u.country = 'NZ' AND (SELECT max(n) FROM r) > 0",
        id="infinite-recursive-cte",
    ),
    pytest.param(
        "bomb",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT u.id, n FROM users u, r",
        id="infinite-recursive-rows",
    ),
    pytest.param(
        "bomb",
        "SELECT u.id, (SELECT COUNT(*) FROM orders o, orders o2, orders o3 WHERE o.user_id = u.id) "
        "FROM users u WHERE u.country = 'NZ'",
        id="cartesian-count",
    ),
    pytest.param("bomb", "SELECT u.id, o.id, o2.id FROM users u, orders o, orders o2", id="cartesian-rows"),
    pytest.param(
        "bomb",
        "SELECT u.id, length(zeroblob(2000000000)) FROM users u WHERE u.country = 'NZ'",
        id="zeroblob",
    ),
    pytest.param(
        "bomb",
        "SELECT u.id, length(printf('%.*c', 1000000000, 'x')) FROM users u WHERE u.country = 'NZ'",
        id="printf-width",
    ),
    pytest.param("bomb", _GROWTH, id="replace-growth"),
    pytest.param(
        "bomb",
        "SELECT u.id, length(substr(hex(zeroblob(4000000)) || hex(zeroblob(4000000)), 1)) "
        "FROM users u WHERE u.country = 'NZ'",
        id="substr-growth",
    ),
    pytest.param(
        "bomb",
        "SELECT u.id, length(group_concat(hex(zeroblob(100000)))) FROM users u, orders o "
        "WHERE u.country = 'NZ' GROUP BY u.id",
        id="group-concat-growth",
    ),
    pytest.param("bomb", _DEEP, id="nested-parens-5000"),
    pytest.param(
        "bomb",
        SLOW_SQL.replace(
            "FROM users u W", "FROM " + "(SELECT * FROM " * NESTED_FROM + "users" + ")" * NESTED_FROM + " u W"
        ),
        id="nested-from-subqueries",
    ),
    pytest.param(
        "bomb",
        SLOW_SQL + " AND (" + " OR ".join(f"u.id = {i}" for i in range(OR_TERMS)) + ")",
        id="long-or-chain",
        marks=pytest.mark.timeout(WALL_BOUND_S),
    ),
    pytest.param("bomb", _MEGA, id="megabyte-sql"),
    pytest.param("bomb", _NEAR_LIMIT, id="near-limit-sql"),
    pytest.param("bomb", "SELECT u.id FROM users u WHERE u.name = 'a\x00b'", id="nul-in-string"),
    pytest.param("bomb", "SELECT 1;\x00DELETE FROM users", id="nul-between-statements"),
    pytest.param("bomb", "SELECT 1;" * 10_000, id="ten-thousand-statements"),
    pytest.param("bomb", ";" * 50_000, id="only-semicolons"),
    pytest.param("bomb", _IN_LIST, id="long-in-list"),
    pytest.param(
        "bomb",
        "SELECT " + ", ".join(f"u.id AS c{i}" for i in range(3000)) + " FROM users u",
        id="too-many-columns",
    ),
    pytest.param("bomb", " UNION ALL ".join(["SELECT u.id, 0 FROM users u"] * 200), id="compound-select-200"),
    # not SQL, not a string
    pytest.param("junk", "", id="empty"),
    pytest.param("junk", "   \n\t ", id="whitespace"),
    pytest.param("junk", "```sql\n```", id="empty-fence"),
    pytest.param("junk", "I think the answer is to add an index.", id="prose"),
    pytest.param("junk", "SELECT FROM WHERE", id="broken-sql"),
    pytest.param("junk", "SELECT * FROM nosuch", id="unknown-table"),
    pytest.param("junk", "\udcff\ud800", id="lone-surrogates"),
    pytest.param("junk", None, id="none"),
    pytest.param("junk", b"SELECT 1", id="bytes"),
    pytest.param("junk", 123, id="int"),
    # parsed but not renderable in DuckDB's dialect (SQLite's one-argument DATETIME): a syntax
    # error there, a wrong result on SQLite; never an exception out of the toolkit
    pytest.param("junk", "SELECT u.id, 0 FROM users u WHERE DATETIME(u.name) IS NULL", id="foreign-function"),
    pytest.param("junk", ["SELECT 1"], id="list"),
]

_ENV_SUBSET = {
    "insert",
    "upsert",
    "create-trigger",
    "attach-new-file",
    "pragma-writable-schema",
    "vacuum-into",
    "begin-delete-commit",
    "writefile",
    "sqlite-master",
    "query-then-delete",
    "cte-delete",
    "line-comment",
    "date-now",
    "values",
    "added-limit",
    "param-named",
    "infinite-recursive-cte",
    "cartesian-count",
    "zeroblob",
    "printf-width",
    "nested-parens-5000",
    "megabyte-sql",
    "nul-in-string",
    "ten-thousand-statements",
    "long-in-list",
    "none",
    "bytes",
    "int",
    "datetime-noargs",
}
ENV_CORPUS = [p for p in CORPUS if p.id in _ENV_SUBSET]


def _materialize(action: object, db: Db) -> object:
    return action.replace("{dir}", db.directory) if isinstance(action, str) else action


def _check_result(verdict: str, reward: float, error: str, seconds: float) -> None:
    assert seconds < WALL_BOUND_S, f"took {seconds:.1f}s"
    assert verdict in FAILING, f"verdict {verdict!r} (reward {reward})"
    assert reward <= 0
    assert error, "a failing verdict carries a message"


@pytest.fixture(scope="module")
def env(db):
    e = gym.make("Quill-v1", database=db.path, queries=[SLOW_SQL])
    yield e
    e.close()


def test_corpus_covers_every_category():
    categories = {p.values[0] for p in CORPUS}
    assert categories >= {
        "dml",
        "ddl",
        "attach",
        "pragma",
        "vacuum",
        "transaction",
        "files",
        "schema",
        "multi",
        "comment",
        "nondeterministic",
        "hardcoded",
        "params",
        "bomb",
        "junk",
    }
    assert len({p.id for p in CORPUS}) == len(CORPUS)


def test_sanity_good_action_is_improved(db):
    """The harness is sound: the action the hostile ones are built on is accepted, and on SQLite
    rewarded (DuckDB's planner decorrelates the subquery itself, so there the index is no gain:
    a failing verdict below is still the hostile part's doing, not the base action's)."""
    result = evaluate(db.path, SLOW_SQL, IX + SLOW_SQL)
    assert result.correct, (result.verdict, result.error)
    if db.path.endswith(".db"):
        assert result.verdict.value == "improved" and result.reward > 0
    _assert_untouched(db)


@pytest.mark.parametrize(("category", "action"), CORPUS)
def test_evaluate_refuses(db, category, action):
    action = _materialize(action, db)
    start = time.perf_counter()
    result = evaluate(db.path, SLOW_SQL, action)
    seconds = time.perf_counter() - start
    _assert_untouched(db)
    _check_result(result.verdict.value, result.reward, result.error, seconds)
    assert not result.correct


@pytest.mark.parametrize(("category", "action"), ENV_CORPUS)
def test_env_step_refuses(db, env, category, action):
    env.reset(seed=0)
    action = _materialize(action, db)
    start = time.perf_counter()
    _obs, reward, terminated, truncated, info = env.step(action)
    seconds = time.perf_counter() - start
    _assert_untouched(db)
    assert terminated and not truncated
    _check_result(info["verdict"], reward, info["error"], seconds)


def test_whole_corpus_leaves_database_untouched(db):
    """Every action, the known-bad ones included, in one go: same bytes, no new files."""
    for param in CORPUS:
        evaluate(db.path, SLOW_SQL, _materialize(param.values[1], db))
    _assert_untouched(db)
    assert not any(Path(db.directory, name).exists() for name in ("evil.db", "copy.db", "pwned.txt"))


_SQLISH = st.from_regex(
    r"(CREATE (UNIQUE )?INDEX \w+ ON (users|orders)\((id|name|user_id|total|\w+)\); ?){0,4}"
    r"(SELECT|WITH|VALUES|PRAGMA|ATTACH|DELETE|INSERT|UPDATE|DROP|VACUUM|BEGIN|--|/\*)"
    r"[ \w*(),.;'\"=<>!%|+\-/:?@$\[\]`\n]{0,200}",
    fullmatch=True,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(st.text(max_size=2000), _SQLISH))
def test_env_step_never_raises_on_random_text(db, env, action):
    env.reset(seed=0)
    _obs, reward, _terminated, _truncated, info = env.step(action)
    assert info["verdict"] in VOCABULARY
    assert isinstance(reward, float)
    if info["verdict"] in FAILING:
        assert reward <= 0


def test_random_text_left_database_untouched(db):
    _assert_untouched(db)


def test_quill_env_is_imported():
    assert "Quill-v1" in gym.registry and quill_env.Verdict("rejected")


def test_sandbox_rules_come_from_the_engine():
    """The policy refuses what the rules it is given name, and nothing engine-specific besides:
    a user table that merely shares a catalog prefix stays readable."""
    rules = SandboxRules(denied_functions=frozenset({"peek"}), internal_table_prefixes=("sys_",))
    view = SchemaView({"sys_notes": ["a"], "t": ["a"]})

    def parse(sql: str):
        return parse_action(sql, view, rules=rules, dialect="sqlite")

    assert parse("SELECT a FROM sys_notes").query_sql == "SELECT a FROM sys_notes"
    assert parse("SELECT date() FROM t")  # no clock functions named: the engine's own gate decides
    with pytest.raises(PolicyViolation, match="internal table 'sys_catalog'"):
        parse("SELECT * FROM sys_catalog")
    with pytest.raises(PolicyViolation, match=r"function peek\(\) is not allowed"):
        parse("SELECT peek(a) FROM t")
    with pytest.raises(PolicyViolation, match="'now' is non-deterministic"):
        parse("SELECT a FROM t WHERE a > 'now'")


@pytest.mark.parametrize("engine", engine_params())
def test_every_engine_refuses_clock_and_random(engine):
    """Whatever else an engine's rules name, the clock and random sources are always among them."""
    rules = get_backend(engine).sandbox_rules
    assert rules.denied_functions >= COMMON_DENIED_FUNCTIONS
    assert rules.internal_table_prefixes, "each engine names its catalog tables"


def test_engine_state_functions_are_refused_before_running(db):
    """Reading engine state is refused by the policy itself (the first line), before anything runs."""
    probe = "SELECT u.id, {f} FROM users u WHERE u.country = 'NZ'"
    call = "sqlite_version()" if db.path.endswith(".db") else "current_setting('threads')"
    runner = TaskRunner.for_database(db.path, SLOW_SQL, EvalOptions(num_variants=0, num_twins=0))
    with pytest.raises(PolicyViolation, match="not allowed") as refused:
        runner.parse_action(probe.format(f=call))
    assert call.split("(")[0] in refused.value.message.lower()
    assert evaluate(db.path, SLOW_SQL, probe.format(f=call)).verdict.value == "rejected"
    _assert_untouched(db)
