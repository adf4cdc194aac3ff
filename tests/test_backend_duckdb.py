"""The DuckDB backend, attacked: read-only private copy, sandbox, budgets, work counter, scratch indexes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb")

from quill_env.action_policy import IndexSpec  # noqa: E402
from quill_env.backends.base import Budget, ExecStatus  # noqa: E402
from quill_env.backends.duckdb import DuckDBBackend  # noqa: E402
from quill_env.errors import DatabaseError, IndexBuildError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIG_ROWS = 100_000

SCHEMA = [
    "CREATE TABLE customers(region VARCHAR, id INTEGER, name VARCHAR NOT NULL, email VARCHAR UNIQUE, "
    "PRIMARY KEY (region, id))",
    "CREATE TABLE orders(oid INTEGER PRIMARY KEY, region VARCHAR, cid INTEGER, total DECIMAL(10, 2), "
    "FOREIGN KEY (region, cid) REFERENCES customers(region, id))",
    "CREATE INDEX orders_total ON orders(total)",
    "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100",
]
ROWS = {
    "customers": [("eu", 1, "Ann", "ann@x"), ("eu", 2, "Bob", None), ("us", 1, "Cy", "cy@x")],
    "orders": [(10, "eu", 1, 50.5), (11, "eu", 2, 150), (12, "us", 1, 250.25), (13, "eu", 1, None)],
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with a 100k-row table keyed by ``id`` and a small keyed schema."""
    path = tmp_path_factory.mktemp("duck") / "task.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE big(id BIGINT PRIMARY KEY, v BIGINT, s VARCHAR)")
    con.execute(
        f"INSERT INTO big SELECT range, (range * 7) % 1000, md5(range::VARCHAR) FROM range({BIG_ROWS})"
    )
    for stmt in SCHEMA:
        con.execute(stmt)
    con.execute("INSERT INTO customers VALUES ('eu', 1, 'Ann', 'ann@x'), ('us', 1, 'Cy', 'cy@x')")
    con.execute("INSERT INTO orders VALUES (10, 'eu', 1, 50.5), (12, 'us', 1, 250.25)")
    con.close()
    return path


@pytest.fixture(scope="module")
def backend(db_file: Path) -> DuckDBBackend:
    b = DuckDBBackend.open(db_file)
    yield b
    b.close()


@pytest.fixture
def small() -> DuckDBBackend:
    b = DuckDBBackend.from_rows(SCHEMA, ROWS)
    yield b
    b.close()


# --- import and opening ----------------------------------------------------------------------


def test_import_quill_env_does_not_import_duckdb() -> None:
    code = "import sys, quill_env, quill_env.backends; print('duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_open_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no such database file"):
        DuckDBBackend.open(tmp_path / "nope.duckdb")
    text = tmp_path / "notes.duckdb"
    text.write_text("hello, I am not a database at all\n")
    with pytest.raises(DatabaseError, match="not a DuckDB database"):
        DuckDBBackend.open(text)
    empty = tmp_path / "empty.duckdb"
    empty.write_bytes(b"")
    with pytest.raises(DatabaseError, match="not a DuckDB database"):
        DuckDBBackend.open(empty)
    sqlite = tmp_path / "shop.db"
    import sqlite3

    with sqlite3.connect(sqlite) as con:
        con.execute("CREATE TABLE t(a)")
    with pytest.raises(DatabaseError, match="not a DuckDB database"):
        DuckDBBackend.open(sqlite)
    forged = tmp_path / "forged.duckdb"
    forged.write_bytes(b"\0" * 8 + b"DUCK" + b"\xff" * 5000)
    with pytest.raises(DatabaseError, match="cannot open"):
        DuckDBBackend.open(forged)


def test_file_is_byte_identical_after_queries_indexes_and_trusted_ddl(db_file: Path) -> None:
    before, mtime = sha256(db_file), db_file.stat().st_mtime_ns
    b = DuckDBBackend.open(db_file)
    assert b.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]
    with b.scratch_indexes([IndexSpec("big", (("v", False),)), IndexSpec("big", (("s", True),))]):
        assert b.execute("SELECT id FROM big WHERE v = 3 ORDER BY id LIMIT 1").ok
    for attack in ["DELETE FROM big", "DROP TABLE big", "CREATE INDEX evil ON big(v)", "CHECKPOINT"]:
        assert b.execute(attack).status is ExecStatus.DENIED
    # even trusted statements only ever change the private copy
    assert b.execute("DELETE FROM big WHERE id < 10", sandboxed=False).ok
    assert b.execute("CREATE TABLE extra AS SELECT 1 AS a", sandboxed=False).ok
    b.close()
    assert sha256(db_file) == before
    assert db_file.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in db_file.parent.iterdir()) == ["task.duckdb"]  # no WAL, no temp files
    again = DuckDBBackend.open(db_file)
    assert again.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]
    assert "extra" not in again.tables()
    assert again.connection.execute("SELECT count(*) FROM duckdb_indexes()").fetchone() == (1,)
    again.close()


def test_clone_is_an_independent_copy(backend: DuckDBBackend) -> None:
    twin = backend.clone()
    try:
        assert (
            twin.execute("SELECT count(*), sum(v) FROM big").rows
            == backend.execute("SELECT count(*), sum(v) FROM big").rows
        )
        assert twin.execute("DELETE FROM big WHERE id >= 10", sandboxed=False).ok
        assert twin.execute("SELECT count(*) FROM big").rows == [(10,)]
        assert backend.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]
        # a clone of a clone replays the trusted changes
        grandchild = twin.clone()
        assert grandchild.execute("SELECT count(*) FROM big").rows == [(10,)]
        grandchild.close()
    finally:
        twin.close()


def test_from_rows_builds_a_queryable_database(small: DuckDBBackend) -> None:
    run = small.execute(
        "SELECT c.name, sum(o.total) FROM customers c JOIN orders o ON o.region = c.region AND o.cid = c.id "
        "GROUP BY c.name ORDER BY c.name"
    )
    assert run.ok, run.error
    assert [(n, float(t)) for n, t in run.rows] == [("Ann", 50.5), ("Bob", 150.0), ("Cy", 250.25)]
    assert run.columns == ["name", "sum(o.total)"]
    assert run.tables_read == {"customers", "orders"}
    assert small.execute("SELECT count(*) FROM big_orders").rows == [(2,)]
    clone = small.clone()
    assert clone.execute("SELECT count(*) FROM orders").rows == [(4,)]
    clone.close()


def test_from_rows_types_and_refusals() -> None:
    import datetime
    import decimal

    rows = [(datetime.date(2020, 1, 2), decimal.Decimal("1.25"), None, b"\x00\x01", True), (None,) * 5]
    b = DuckDBBackend.from_rows(
        ["CREATE TABLE d(a DATE, b DECIMAL(10, 2), c VARCHAR, e BLOB, f BOOLEAN)"], {"d": rows}
    )
    assert b.execute("SELECT * FROM d").rows == rows
    mixed = DuckDBBackend.from_rows(["CREATE TABLE m(a INTEGER, b VARCHAR)"], {"m": [(1, "x"), ("2", 3)]})
    assert mixed.execute("SELECT * FROM m ORDER BY a").rows == [(1, "x"), (2, "3")]
    with pytest.raises(DatabaseError):
        DuckDBBackend.from_rows(["CREATE TABLE m(a INTEGER)"], {"m": [("not a number",)]})
    with pytest.raises(DatabaseError):
        DuckDBBackend.from_rows(["CREATE TABLE broken("], {})
    empty = DuckDBBackend.empty()
    assert empty.tables() == {}
    assert empty.execute("SELECT 1 AS one").rows == [(1,)]


# --- sandbox ---------------------------------------------------------------------------------

DENIED_STATEMENTS = [
    "COPY big TO 'out.csv'",
    "COPY (SELECT 1) TO 'out.parquet' (FORMAT parquet)",
    "ATTACH 'other.duckdb' AS o",
    "DETACH memory",
    "INSTALL tpch",
    "LOAD tpch",
    "FORCE INSTALL httpfs",
    "PRAGMA version",
    "PRAGMA table_info('big')",
    "PRAGMA enable_profiling = 'json'",
    "SET memory_limit = '100GB'",
    "SET enable_external_access = true",
    "RESET memory_limit",
    "SET VARIABLE x = 1",
    "EXPORT DATABASE 'dump'",
    "IMPORT DATABASE 'dump'",
    "CALL pragma_version()",
    "CALL checkpoint()",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "USE memory",
    "CREATE TABLE t AS SELECT 1",
    "CREATE TEMP TABLE t AS SELECT 1",
    "CREATE INDEX i ON big(v)",
    "CREATE MACRO m(x) AS x",
    "CREATE SEQUENCE s",
    "CREATE VIEW v AS SELECT 1",
    "INSERT INTO big VALUES (-1, 0, 'x')",
    "UPDATE big SET v = 0",
    "DELETE FROM big",
    "DROP TABLE big",
    "ALTER TABLE big ADD COLUMN z INTEGER",
    "TRUNCATE big",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP TABLE big",
    "SELECT count(*) FROM big; DELETE FROM big",
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN SELECT 1",
    "DESCRIBE big",
    "SHOW TABLES",
    "SUMMARIZE big",
    "PREPARE p AS SELECT 1",
    "EXECUTE p",
    "PIVOT big ON v USING count(*)",
]


@pytest.mark.parametrize("sql", DENIED_STATEMENTS)
def test_non_queries_are_denied(backend: DuckDBBackend, sql: str) -> None:
    run = backend.execute(sql)
    assert run.status is ExecStatus.DENIED, (sql, run.status, run.error)
    assert run.rows == [] and run.error and run.error_kind
    assert backend.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]
    assert backend.connection.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (3,)


def test_copy_to_a_file_creates_nothing(backend: DuckDBBackend, tmp_path: Path) -> None:
    target = tmp_path / "leak.csv"
    literal = "'" + target.as_posix() + "'"
    attempts = [
        (f"COPY big TO {literal}", True),
        (f"COPY (SELECT * FROM big) TO {literal} (FORMAT csv)", True),
        (f"SELECT * FROM query('COPY big TO {literal.replace(chr(39), chr(39) * 2)}')", True),
        (f"EXPORT DATABASE '{tmp_path.as_posix()}/dump'", True),
        # even the harness's own statements cannot write files
        (f"COPY big TO {literal}", False),
        (f"EXPORT DATABASE '{tmp_path.as_posix()}/dump'", False),
    ]
    for sql, sandboxed in attempts:
        run = backend.execute(sql, sandboxed=sandboxed)
        assert not run.ok, sql
        assert list(tmp_path.iterdir()) == [], sql


def test_files_cannot_be_read(backend: DuckDBBackend, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("token\nhunter2\n")
    (tmp_path / "secret.json").write_text('[{"token": "hunter2"}]')
    (tmp_path / "secret.parquet").write_bytes(b"PAR1" + b"\0" * 16 + b"PAR1")
    p = tmp_path.as_posix()
    attempts = [
        f"SELECT * FROM read_csv('{p}/secret.csv')",
        f"SELECT * FROM read_csv_auto('{p}/secret.csv')",
        f"SELECT * FROM read_csv(['{p}/secret.csv'])",
        f"SELECT * FROM '{p}/secret.csv'",
        f'SELECT * FROM "{p}/secret.csv"',
        f"SELECT * FROM read_text('{p}/secret.csv')",
        f"SELECT * FROM read_blob('{p}/secret.csv')",
        f"SELECT * FROM read_json('{p}/secret.json')",
        f"SELECT * FROM read_parquet('{p}/secret.parquet')",
        f"SELECT * FROM parquet_metadata('{p}/secret.parquet')",
        f"SELECT * FROM glob('{p}/*')",
        f"SELECT * FROM sniff_csv('{p}/secret.csv')",
        f"SELECT * FROM query('SELECT * FROM read_csv(''{p}/secret.csv'')')",
        f"SELECT * FROM read_csv('file://{p}/secret.csv')",
        "SELECT * FROM read_csv('https://example.com/x.csv')",
    ]
    for sql in attempts:
        for sandboxed in (True, False):
            run = backend.execute(sql, sandboxed=sandboxed)
            assert not run.ok, (sql, sandboxed)
            assert "hunter2" not in repr(run.rows)
        assert backend.execute(sql).status is ExecStatus.DENIED, sql


def test_attach_another_file_fails(backend: DuckDBBackend, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE loot AS SELECT 'hunter2' AS secret")
    con.close()
    digest = sha256(other)
    for sandboxed in (True, False):
        run = backend.execute(f"ATTACH '{other.as_posix()}' AS o", sandboxed=sandboxed)
        assert not run.ok
        assert not backend.execute("SELECT * FROM o.loot").ok
        assert not backend.execute(
            f"SELECT * FROM read_duckdb('{other.as_posix()}', table_name := 'loot')"
        ).ok
    assert backend.connection.execute(
        "SELECT count(*) FROM duckdb_databases() WHERE NOT internal"
    ).fetchone() == (1,)
    assert sha256(other) == digest


def test_extensions_cannot_be_installed_or_loaded(backend: DuckDBBackend) -> None:
    for sql in ["INSTALL tpch", "LOAD tpch", "INSTALL httpfs FROM core", "LOAD '/tmp/evil.duckdb_extension'"]:
        for sandboxed in (True, False):
            assert not backend.execute(sql, sandboxed=sandboxed).ok, (sql, sandboxed)
    functions = {
        r[0] for r in backend.connection.execute("SELECT function_name FROM duckdb_functions()").fetchall()
    }
    assert not {"dbgen", "tpch_queries", "httpfs_version"} & functions
    # autoloading is off: a function of an unloaded extension does not pull it in
    assert not backend.execute("SELECT * FROM tpch_queries()", sandboxed=False).ok


def setting(b: DuckDBBackend, name: str) -> str:
    return b.connection.execute("SELECT current_setting(?)", [name]).fetchone()[0]


def test_settings_cannot_be_changed_even_by_trusted_statements(backend: DuckDBBackend) -> None:
    limit = setting(backend, "memory_limit")
    for sql in [
        "SET memory_limit = '100GB'",
        "RESET memory_limit",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET threads = 4",
        "SET disabled_filesystems = ''",
        "SET allowed_directories = ['/']",
        "SET python_enable_replacements = true",
        "PRAGMA enable_profiling = 'json'",
        "SET profiling_output = '/tmp/quill_profile.json'",
        "SET autoload_known_extensions = true",
    ]:
        for sandboxed in (True, False):
            assert not backend.execute(sql, sandboxed=sandboxed).ok, (sql, sandboxed)
    assert setting(backend, "memory_limit") == limit
    assert setting(backend, "enable_external_access") is False
    assert setting(backend, "lock_configuration") is True
    assert int(setting(backend, "threads")) == 1
    assert backend.execute("SELECT count(*) FROM big").ok  # the profiler still works


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT random()",
        "SELECT setseed(0.5)",
        "SELECT uuid()",
        "SELECT gen_random_uuid()",
        "SELECT uuidv7()",
        "SELECT now()",
        "SELECT current_date",
        "SELECT current_timestamp",
        "SELECT current_time",
        "SELECT localtimestamp",
        "SELECT today()",
        "SELECT get_current_timestamp()",
        "SELECT transaction_timestamp()",
        "SELECT txid_current()",
        "SELECT current_query()",
        "SELECT current_setting('memory_limit')",
        "SELECT pg_sleep(1)",
        "SELECT id FROM big ORDER BY random() LIMIT 3",
        "SELECT id FROM big WHERE v > random() * 1000 LIMIT 3",
        "WITH r AS (SELECT random() AS x) SELECT * FROM r",
        "SELECT list_transform([1, 2], x -> x + random())",
        "SELECT * FROM query('SELECT random()')",
        "SELECT * FROM big USING SAMPLE 10",
        "SELECT * FROM big TABLESAMPLE 1%",
        "SELECT * FROM big USING SAMPLE 1% (bernoulli, 42)",
    ],
)
def test_non_deterministic_functions_are_refused(backend: DuckDBBackend, sql: str) -> None:
    run = backend.execute(sql)
    assert run.status is ExecStatus.DENIED, (sql, run.status, run.error)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM duckdb_settings()",
        "SELECT * FROM duckdb_memory()",
        "SELECT * FROM duckdb_secrets()",
        "SELECT * FROM pragma_version()",
        "SELECT * FROM pragma_database_size()",
        "SELECT * FROM enable_profiling()",
        "SELECT * FROM checkpoint()",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM duckdb_tables",
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
        "SELECT * FROM test_all_types()",
    ],
)
def test_engine_state_table_functions_are_refused(backend: DuckDBBackend, sql: str) -> None:
    assert backend.execute(sql).status is ExecStatus.DENIED


def test_python_variables_are_not_reachable(backend: DuckDBBackend) -> None:
    pa = pytest.importorskip("pyarrow")
    secret_table = pa.table({"token": ["hunter2"]})  # noqa: F841 - a replacement scan would find it
    for sandboxed in (True, False):
        run = backend.execute("SELECT * FROM secret_table", sandboxed=sandboxed)
        assert not run.ok and run.rows == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM big",
        "WITH x AS (SELECT v FROM big) SELECT max(v) FROM x",
        "FROM big SELECT count(*)",
        "(SELECT count(*) FROM big)",
        "VALUES (1), (2)",
        "TABLE customers",
        "/* a comment */ SELECT count(*) FROM big -- trailing",
        "SELECT count(*) FROM big;",
        "SELECT count(*) FROM range(10)",
        "SELECT unnest([1, 2, 3])",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
        "SELECT v, count(*) FROM big GROUP BY v ORDER BY v LIMIT 3",
        "SELECT id, row_number() OVER (ORDER BY v, id) FROM big QUALIFY row_number() OVER (ORDER BY v, id) < 3",
        "SELECT * FROM customers WHERE (region, id) IN (SELECT region, cid FROM orders)",
        "SELECT (SELECT max(total) FROM orders)",
        "SELECT * FROM big_orders",
        "SELECT md5('x'), hash(1), version()",
        "SELECT DATE '2020-01-01' + INTERVAL 3 DAY, strftime(TIMESTAMP '2020-01-01', '%Y')",
    ],
)
def test_read_only_queries_run(backend: DuckDBBackend, sql: str) -> None:
    run = backend.execute(sql)
    assert run.ok, (sql, run.status, run.error)


def test_errors_never_raise(backend: DuckDBBackend) -> None:
    cases = {
        "": {ExecStatus.DENIED, ExecStatus.PREPARE_ERROR},
        ";": {ExecStatus.DENIED, ExecStatus.PREPARE_ERROR},
        "SELEC 1": {ExecStatus.DENIED},
        "SELECT FROM WHERE": {ExecStatus.PREPARE_ERROR},
        "SELECT nosuch FROM big": {ExecStatus.PREPARE_ERROR},
        "SELECT * FROM nosuch": {ExecStatus.PREPARE_ERROR},
        "SELECT ?": {ExecStatus.PREPARE_ERROR},
        "SELECT 'a'::INTEGER": {ExecStatus.RUNTIME_ERROR, ExecStatus.PREPARE_ERROR},
        "SELECT (SELECT id FROM big)": {ExecStatus.RUNTIME_ERROR},
        "SELECT error('boom')": {ExecStatus.RUNTIME_ERROR},
        "SELECT 'x' || s || 'y'::INT FROM big": {ExecStatus.RUNTIME_ERROR, ExecStatus.PREPARE_ERROR},
        "SELECT '\x00'": {ExecStatus.DENIED},
        "SELECT 1\x00; DROP TABLE big": {ExecStatus.DENIED},
        "SELECT " + "(" * 5000 + "1" + ")" * 5000: {
            ExecStatus.PREPARE_ERROR,
            ExecStatus.RUNTIME_ERROR,
            ExecStatus.OK,
        },
    }
    for sql, allowed in cases.items():
        run = backend.execute(sql)
        assert run.status in allowed, (sql[:40], run.status, run.error)
        if not run.ok:
            assert run.error_kind and run.error
    assert backend.execute("SELECT 42").rows == [(42,)]


# --- budgets ---------------------------------------------------------------------------------

SLOW = "SELECT count(*) FROM range(100000) a, range(100000) b WHERE a.range + b.range < 0"
"""10^10 pairs compared in a nested loop: about a minute here, so a broken interrupt fails, not hangs."""


def test_time_budget_interrupts_a_slow_cross_join(backend: DuckDBBackend) -> None:
    start = time.perf_counter()
    run = backend.execute(SLOW, Budget(max_seconds=0.5))
    elapsed = time.perf_counter() - start
    assert run.status is ExecStatus.TIMEOUT
    assert elapsed < 10  # liveness only
    assert backend.execute("SELECT 42").rows == [(42,)]  # the connection survives, no stale interrupt
    time.sleep(0.6)  # the old timer must not fire into the next statement
    assert backend.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]


def test_time_budget_applies_inside_scratch_indexes(backend: DuckDBBackend) -> None:
    with backend.scratch_indexes([IndexSpec("big", (("v", False),))]):
        assert backend.execute(SLOW, Budget(max_seconds=0.3)).status is ExecStatus.TIMEOUT
        # the interrupt aborted DuckDB's transaction: the backend rebuilt the scratch index
        run = backend.execute("SELECT count(*) FROM big WHERE v = 7")
        assert run.ok, run.error
        assert run.counters["rows_scanned"] < 1000
    assert backend.connection.execute("SELECT count(*) FROM duckdb_indexes()").fetchone() == (1,)


def test_row_cap_stops_fetching(backend: DuckDBBackend) -> None:
    start = time.perf_counter()
    run = backend.execute("SELECT range FROM range(2000000)", Budget(max_rows=10))
    assert run.status is ExecStatus.ROW_CAP
    assert 10 < len(run.rows) <= 11
    assert time.perf_counter() - start < 10
    ok = backend.execute("SELECT id FROM big ORDER BY id LIMIT 10", Budget(max_rows=10))
    assert ok.ok and len(ok.rows) == 10
    assert backend.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]


def test_work_budget(backend: DuckDBBackend) -> None:
    full = backend.execute("SELECT count(*) FROM big WHERE s LIKE '%ab%'")
    assert full.ok and full.work >= BIG_ROWS
    over = backend.execute("SELECT count(*) FROM big WHERE s LIKE '%ab%'", Budget(max_work=full.work - 1))
    assert over.status is ExecStatus.TIMEOUT
    assert over.work >= full.work - 1
    enough = backend.execute("SELECT count(*) FROM big WHERE s LIKE '%ab%'", Budget(max_work=full.work))
    assert enough.ok and enough.rows == full.rows


def test_memory_limit_is_out_of_memory_not_a_crash() -> None:
    b = DuckDBBackend.empty(heap_bytes=1)
    run = b.execute("SELECT list(repeat('x', 1000)) FROM range(1000000)")
    assert run.status is ExecStatus.RUNTIME_ERROR
    assert run.error_kind == "out_of_memory"
    assert b.execute("SELECT 1").rows == [(1,)]
    b.close()


def test_value_size_limit(backend: DuckDBBackend) -> None:
    run = backend.execute("SELECT repeat('x', 100000)", Budget(max_value_bytes=1000))
    assert run.status is ExecStatus.DENIED and run.error_kind == "too_big" and run.rows == []
    assert backend.execute("SELECT repeat('x', 10)", Budget(max_value_bytes=1000)).ok


# --- work counter ----------------------------------------------------------------------------

WORK_QUERIES = [
    "SELECT * FROM big WHERE id = 4242",
    "SELECT count(*) FROM big",
    "SELECT v, count(*) FROM big GROUP BY v ORDER BY v",
    "SELECT count(*) FROM big a JOIN big b ON a.v = b.v WHERE a.id < 100",
    "SELECT count(*) FROM big a, big b WHERE a.id + b.id < 0 AND a.id < 300 AND b.id < 300",
    "SELECT s FROM big ORDER BY s DESC LIMIT 5",
]

WORK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from quill_env.backends.duckdb import DuckDBBackend
    b = DuckDBBackend.open(sys.argv[1])
    out = []
    for sql in json.loads(sys.argv[2]):
        run = b.execute(sql)
        assert run.ok, run.error
        out.append([run.work, run.counters["cardinality"], run.counters["rows_scanned"]])
    print(json.dumps(out))
    """
)


def test_work_is_identical_across_processes(db_file: Path, backend: DuckDBBackend) -> None:
    args = [sys.executable, "-c", WORK_SCRIPT, str(db_file), json.dumps(WORK_QUERIES)]
    runs = [
        json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout) for _ in range(2)
    ]
    assert runs[0] == runs[1]
    here = [
        [r.work, r.counters["cardinality"], r.counters["rows_scanned"]]
        for r in map(backend.execute, WORK_QUERIES)
    ]
    assert here == runs[0]
    assert all(work > 0 for work, _, _ in here)


def test_work_ranks_a_scan_above_a_key_lookup(backend: DuckDBBackend) -> None:
    lookup = backend.execute("SELECT * FROM big WHERE id = 4242")
    scan = backend.execute("SELECT * FROM big WHERE s = md5('4242')")
    assert lookup.ok and scan.ok and lookup.rows == scan.rows
    assert lookup.work < 100
    assert scan.counters["rows_scanned"] == BIG_ROWS
    assert scan.work > 1000 * lookup.work


def test_work_charges_nested_loop_pairs(backend: DuckDBBackend) -> None:
    run = backend.execute(
        "SELECT count(*) FROM big a, big b WHERE a.id + b.id < 0 AND a.id < 1000 AND b.id < 1000"
    )
    assert run.ok and run.rows == [(0,)]
    assert run.counters["nested_loop_pairs"] == 1000 * 1000
    assert run.work >= 1000 * 1000
    hashed = backend.execute(
        "SELECT count(*) FROM big a JOIN big b ON a.id = b.id WHERE a.id < 1000 AND b.id < 1000"
    )
    assert hashed.counters["nested_loop_pairs"] == 0
    assert hashed.work < run.work


def test_work_repeats_and_does_not_see_earlier_statements(backend: DuckDBBackend) -> None:
    first = backend.execute("SELECT count(*) FROM big WHERE v < 10")
    backend.execute("SELECT * FROM big")
    second = backend.execute("SELECT count(*) FROM big WHERE v < 10")
    assert first.work == second.work and first.counters == second.counters


# --- scratch indexes -------------------------------------------------------------------------


def index_names(b: DuckDBBackend) -> list[str]:
    return [
        r[0] for r in b.connection.execute("SELECT index_name FROM duckdb_indexes() ORDER BY 1").fetchall()
    ]


def test_scratch_index_is_used_and_rolled_back(backend: DuckDBBackend) -> None:
    query = "SELECT id FROM big WHERE s = md5('777')"
    without = backend.execute(query)
    assert index_names(backend) == ["orders_total"]
    with backend.scratch_indexes([IndexSpec("big", (("s", False),))]):
        assert index_names(backend) == ["orders_total", "quill_scratch_0"]
        assert [i.name for i in backend.tables()["big"].indexes if i.origin == "c"] == ["quill_scratch_0"]
        indexed = backend.execute(query)
        assert indexed.rows == without.rows == [(777,)]
        assert indexed.work < without.work / 100
    assert index_names(backend) == ["orders_total"]
    assert [i.origin for i in backend.tables()["big"].indexes] == ["pk"]
    assert backend.execute(query).work == without.work


def test_scratch_index_rolled_back_when_the_body_raises(backend: DuckDBBackend) -> None:
    with pytest.raises(RuntimeError), backend.scratch_indexes([IndexSpec("big", (("v", True),))]):
        assert "quill_scratch_0" in index_names(backend)
        raise RuntimeError("boom")
    assert index_names(backend) == ["orders_total"]
    assert backend.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]


def test_scratch_index_survives_a_failing_statement(backend: DuckDBBackend) -> None:
    with backend.scratch_indexes([IndexSpec("big", (("s", False),))]):
        assert (
            backend.execute("SELECT error('x') FROM big WHERE s = md5('5')").status
            is ExecStatus.RUNTIME_ERROR
        )
        run = backend.execute("SELECT id FROM big WHERE s = md5('5')")
        assert run.ok and run.rows == [(5,)] and run.counters["rows_scanned"] < 10
        # an agent cannot end the scratch transaction early
        assert backend.execute("COMMIT").status is ExecStatus.DENIED
    assert index_names(backend) == ["orders_total"]


def test_scratch_index_budget_and_errors(backend: DuckDBBackend) -> None:
    with (
        pytest.raises(IndexBuildError, match="budget"),
        backend.scratch_indexes([IndexSpec("big", (("s", False),))], Budget(max_work=10)),
    ):
        pass
    assert index_names(backend) == ["orders_total"]
    with pytest.raises(IndexBuildError), backend.scratch_indexes([IndexSpec("big", (("nosuch", False),))]):
        pass
    assert index_names(backend) == ["orders_total"]
    with backend.scratch_indexes([]):
        assert index_names(backend) == ["orders_total"]


# --- schema, plans, identity ----------------------------------------------------------------


def test_tables_describes_keys_indexes_and_counts(small: DuckDBBackend) -> None:
    tables = small.tables()
    assert list(tables) == ["customers", "orders", "big_orders"]
    customers, orders, view = tables["customers"], tables["orders"], tables["big_orders"]
    assert customers.primary_key == ("region", "id")
    assert [(c.name, c.type, c.notnull, c.pk) for c in customers.columns] == [
        ("region", "VARCHAR", True, 1),
        ("id", "INTEGER", True, 2),
        ("name", "VARCHAR", True, 0),
        ("email", "VARCHAR", False, 0),
    ]
    assert ("email",) in customers.unique_sets
    assert customers.row_count == 3
    assert orders.primary_key == ("oid",)
    assert orders.columns[3].type == "DECIMAL(10,2)"
    assert [(f.columns, f.ref_table, f.ref_columns) for f in orders.foreign_keys] == [
        (("region", "cid"), "customers", ("region", "id"))
    ]
    created = [i for i in orders.indexes if i.origin == "c"]
    assert [(i.name, i.columns, i.unique) for i in created] == [("orders_total", ("total",), False)]
    assert created[0].sql and not created[0].sql.endswith(";;")
    assert orders.row_count == 4
    assert view.is_view and view.row_count == 0 and "total > 100" in view.sql
    text = small.schema_text()
    assert "-- orders: 4 rows" in text and "CREATE INDEX orders_total" in text


def test_explain_returns_the_physical_plan(backend: DuckDBBackend) -> None:
    plan = backend.explain("SELECT v, count(*) FROM big WHERE id > 5 GROUP BY v")
    assert "SEQ_SCAN" in plan and "GROUP_BY" in plan
    assert "\n  " in plan  # indented tree
    assert backend.explain("DROP TABLE big").startswith("(no plan")
    assert backend.explain("SELECT * FROM nosuch").startswith("(no plan")
    assert backend.execute("SELECT count(*) FROM big").rows == [(BIG_ROWS,)]


def test_identity_and_attributes(backend: DuckDBBackend) -> None:
    assert backend.engine_version() == f"DuckDB {duckdb.__version__}"
    assert DuckDBBackend.name == "duckdb" and DuckDBBackend.dialect == "duckdb"
    assert DuckDBBackend.deterministic_work is True
    assert backend.size_bytes() > 0


def test_engine_of_reads_each_backends_own_file_format(tmp_path, db_file):
    """Detection asks each backend for its header and name endings, and a file of an engine that
    is not installed gets an error naming the extra."""
    from quill_env.backends import engine_of, open_backend
    from quill_env.errors import DatabaseError

    renamed = tmp_path / "task.db"  # a DuckDB file under a SQLite name: the header wins
    renamed.write_bytes(db_file.read_bytes())
    assert engine_of(renamed) == "duckdb" and engine_of(tmp_path / "new.ddb") == "duckdb"
    assert engine_of(tmp_path / "new.sqlite3") == "sqlite"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "quill_env.backends.duckdb", None)  # as if the extra were missing
        assert engine_of(renamed) == "sqlite"
        with pytest.raises(DatabaseError, match="duckdb"):
            open_backend(renamed)
