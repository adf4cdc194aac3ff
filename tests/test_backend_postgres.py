"""The PostgreSQL backend on a real, throwaway server (tests/pgcluster.py).

The contract tests (hostile and hard-code corpora, golden verifier fixtures, references) run on
PostgreSQL through ``tests/engines.py``; here are the engine's own promises: the user's database
is only read, the second line of the sandbox holds when the gate is bypassed, work repeats
across processes, twins and rolled-back states leave the main copy's plans alone, Quill's
databases are cleaned up, and failures say what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from tests import pgcluster

pytestmark = [pytest.mark.postgres]
if pgcluster.unavailable():
    pytestmark.append(pytest.mark.skip(reason=pgcluster.unavailable()))

SCHEMA = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, country TEXT)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), "
    "status TEXT NOT NULL, total REAL NOT NULL)",
]
ROWS = {
    "users": [(i, f"u{i}@x.org", ["NZ", "FR", "US", None][i % 4]) for i in range(1, 2001)],
    "orders": [(i, 1 + (i * 7) % 2000, ["paid", "shipped", "void"][i % 3], float(i % 97)) for i in range(1, 8001)],
}
SLOW = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u WHERE u.country = 'NZ'"
FAST = "CREATE INDEX i ON orders(user_id); " + SLOW


@pytest.fixture(scope="module")
def user_db() -> str:
    """A user's database (not one of Quill's) with real keys."""
    return pgcluster.create_database("pg_user_shop", SCHEMA, ROWS)


def test_a_users_database_is_scored_and_left_unchanged(user_db):
    import quill_env

    before = pgcluster.fingerprint(user_db)
    result = quill_env.evaluate(user_db, SLOW, FAST)
    assert result.correct and result.verdict.value == "improved", (result.verdict, result.error)
    assert result.engine.startswith("PostgreSQL 1")
    assert all(v.status == "match" for v in result.variants)
    wrong = quill_env.evaluate(user_db, SLOW, SLOW.replace("u.country = 'NZ'", "u.country <> 'NZ'"))
    assert wrong.verdict.value == "wrong_result" and "NZ" not in wrong.error and "FR" not in wrong.error
    assert pgcluster.fingerprint(user_db) == before
    assert "pg_user_shop" in pgcluster.user_databases()


def test_gym_and_the_cli_take_a_postgres_url(user_db):
    import gymnasium as gym

    env = gym.make("Quill-v1", database=user_db, queries=[SLOW])
    obs, _ = env.reset(seed=0)
    assert obs["engine"] == "PostgreSQL" and "orders" in obs["schema"]
    _obs, reward, terminated, _truncated, info = env.step(FAST)
    assert terminated and info["verdict"] == "improved" and reward > 0
    env.close()
    out = subprocess.run(
        [sys.executable, "-m", "quill_cli", "evaluate", user_db, "--slow", SLOW, "--candidate", FAST, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["verdict"] == "improved"


def _backend(user_db):
    from quill_env.backends import open_backend

    return open_backend(user_db)


def test_the_second_line_holds_without_the_gate(user_db):
    """Statements the gate would refuse, run past it: the read-only reader role still refuses them."""
    from quill_env.backends.base import Budget, ExecStatus, IndexSpec

    db = _backend(user_db)
    try:
        assert db.reader_role
        hostile = [
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT set_config('role', 'quill', false)",
            "SELECT query_to_xml('SET ROLE quill', true, true, '')",
            "SELECT count(*) FROM (SELECT nextval('no_such_seq')) s",
            "SELECT lo_import('/etc/passwd')",
        ]
        for sql in hostile:
            with db._connection() as conn:
                run = db._run_measured(conn, sql, Budget(max_seconds=5), sandboxed=True)
            assert run.status in (ExecStatus.DENIED, ExecStatus.PREPARE_ERROR), (sql, run.status, run.error)
        with db.scratch_indexes([IndexSpec("orders", (("user_id", False),))]):
            for sql in ("DELETE FROM orders", "WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d"):
                with db._connection() as conn:
                    run = db._run_measured(conn, sql, Budget(max_seconds=5), sandboxed=True)
                assert run.status in (ExecStatus.DENIED, ExecStatus.PREPARE_ERROR), run.error
            with db._connection() as conn:  # a write from inside a SELECT (not checked by read-only)
                db._run_measured(conn, "SELECT lo_create(0)", Budget(max_seconds=5), sandboxed=True)
            assert db.query("SELECT count(*) FROM pg_largeobject_metadata") == [(0,)]  # rolled back
            assert db.query("SELECT COUNT(*) FROM orders") == [(8000,)]
        assert db.query("SELECT COUNT(*) FROM orders") == [(8000,)]
        assert not [i for i in db.tables()["orders"].indexes if i.name.startswith("quill_scratch")]
    finally:
        db.close()


def test_a_runaway_statement_is_stopped_at_its_time_budget(user_db):
    from quill_env.backends.base import Budget, ExecStatus

    db = _backend(user_db)
    try:
        run = db.execute("SELECT COUNT(*) FROM orders a, orders b, orders c", Budget(max_seconds=1.0))
        assert run.status is ExecStatus.TIMEOUT and run.seconds < 10
        assert db.execute(SLOW).ok  # the connection is usable afterwards
    finally:
        db.close()


def test_work_is_counted_from_the_executed_plan(user_db):
    from quill_env.backends.base import IndexSpec

    db = _backend(user_db)
    try:
        scan = db.execute("SELECT id FROM orders WHERE user_id = 7")
        assert scan.ok and scan.tables_read == {"orders"}
        assert scan.work >= 8000 > len(scan.rows)  # a full scan reads every row
        with db.scratch_indexes([IndexSpec("orders", (("user_id", False),))]):
            seek = db.execute("SELECT id FROM orders WHERE user_id = 7")
        assert sorted(seek.rows) == sorted(scan.rows) and seek.work < scan.work / 50
        assert seek.counters["probes"] >= 1
        assert db.execute("SELECT 1 AS x FROM orders WHERE false").tables_read == frozenset()
    finally:
        db.close()


_WORK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import quill_env
    out = []
    for cand in sys.argv[3:]:
        r = quill_env.evaluate(sys.argv[1], sys.argv[2], cand)
        out.append([r.verdict.value, r.baseline_cost, r.candidate_cost, r.reward])
    print(json.dumps(out))
    """
)


def test_work_repeats_across_processes(user_db):
    candidates = [FAST, "SELECT u.id, COUNT(o.id) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id "
                  "WHERE u.country = 'NZ' GROUP BY u.id"]  # fmt: skip
    runs = [
        subprocess.run(
            [sys.executable, "-c", _WORK_SCRIPT, user_db, SLOW, *candidates],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ},
        )
        for _ in range(2)
    ]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == second
    assert first[0][0] == "improved"


def test_twins_leave_the_main_copy_as_it_was(user_db):
    """Twins are derived on a copy: the main copy's rows, pages and plans do not change."""
    from quill_env import EvalOptions, TaskRunner

    sizes = "SELECT pg_relation_size('orders'), pg_relation_size('users')"
    runner = TaskRunner.for_database(user_db, SLOW, EvalOptions())
    try:
        before = runner.backend.query(sizes)
        base = runner.baseline.main
        assert len(runner.twins) == 2 and all(t.changed_rows > 0 for t in runner.twins)
        again = runner.backend.execute(SLOW)
        assert again.work == base.work and again.counters == base.counters
        assert runner.backend.query(sizes) == before
        result = runner.evaluate(FAST)
        assert result.correct, (result.verdict, result.error)
    finally:
        runner.close()


def test_twin_rows_are_addressed_by_ctid(user_db):
    from quill_env.backends.pg_server import decode_tid, encode_tid
    from quill_env.lineage import lineage_rowids
    from quill_env.twins import build_twin, materialized

    db = _backend(user_db)
    try:
        lineage = lineage_rowids(db, SLOW, limit=100)
        assert lineage["users"] and all(isinstance(r, int) for r in lineage["users"])
        assert decode_tid(encode_tid(lineage["users"][0])) == lineage["users"][0]
        twin = build_twin(db, lineage, seed=0, index=1)
        copy = materialized(db, twin)
        try:
            count = "SELECT COUNT(*), MIN(id), MAX(id) FROM users"
            assert copy.query(count) == db.query(count)
            assert copy.execute(SLOW).rows != db.execute(SLOW).rows
        finally:
            copy.close()
    finally:
        db.close()


def test_a_role_that_may_not_create_databases_gets_told_what_to_do(user_db):
    import psycopg

    from quill_env.backends.pg_server import SCRATCH_URL_ENV, Server
    from quill_env.errors import DatabaseError

    with psycopg.connect(pgcluster.url(), autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS quill_plain")
        admin.execute("CREATE ROLE quill_plain LOGIN")
    server = Server({"host": "127.0.0.1", "port": user_db.split(":")[2].split("/")[0], "user": "quill_plain"})
    with pytest.raises(DatabaseError, match=f"CREATEDB.*{SCRATCH_URL_ENV}"):
        server.create("w", template="postgres")


def test_leftovers_of_a_dead_process_are_dropped():
    import psycopg

    from quill_env.backends import pg_server

    params = {"host": "127.0.0.1", "port": pgcluster.url().split(":")[2].split("/")[0], "user": pgcluster.USER}
    with psycopg.connect(pgcluster.url(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS quill_w_dead")
        admin.execute("CREATE DATABASE quill_w_dead")
        note = json.dumps({"quill": "w", "host": __import__("socket").gethostname(), "pid": 2**22 + 7})
        admin.execute(f"COMMENT ON DATABASE quill_w_dead IS '{note}'")
    fresh = pg_server.Server(params)
    fresh.sweep()
    assert not fresh.exists("quill_w_dead")


def test_suite_databases_are_built_once_with_fixed_statistics():
    from quill_env import get_suite

    suite = get_suite("shop")
    url = suite.database("small", engine="postgres")
    assert str(url).startswith("postgresql://") and "quill_suite_" in str(url)
    assert suite.database("small", engine="postgres") == url
    import psycopg

    with psycopg.connect(str(url), autocommit=True) as conn:
        options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'orders'").fetchone()[0]
        analyzed = conn.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'orders'").fetchone()[0]
    assert "autovacuum_enabled=false" in options and analyzed > 0


def test_public_qualified_originals_run_on_the_variants(user_db):
    import quill_env

    slow = SLOW.replace("FROM users u", "FROM public.users u")
    result = quill_env.evaluate(user_db, slow, slow)
    assert result.verdict.value == "unchanged", (result.verdict, result.error)


def test_bad_urls_are_clear_errors():
    import quill_env
    from quill_env.errors import DatabaseError

    with pytest.raises(DatabaseError, match="cannot connect"):
        quill_env.evaluate("postgresql://nobody@127.0.0.1:1/nowhere", "SELECT 1", "SELECT 1")


def test_the_advisor_plans_with_hypothetical_indexes(user_db):
    """With HypoPG the plan names the index that would be used, and nothing is built or left."""
    from quill_env.backends.base import IndexSpec

    db = _backend(user_db)
    try:
        spec = [IndexSpec("orders", (("user_id", False),)), IndexSpec("users", (("email", False),))]
        query = "SELECT id FROM orders WHERE user_id = 7"
        if not db.hypothetical_indexes:
            pytest.skip("HypoPG is not installed on this server (apt-get install postgresql-NN-hypopg)")
        plan = db.plan_with_indexes(query, spec)
        assert "quill_scratch_0" in plan and "quill_scratch_1" not in plan, plan
        assert db.query("SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'") == [(0,)]
        db._server.facts["hypopg"] = False  # the fallback builds them for real, in a rolled-back state
        try:
            assert "quill_scratch_0" in db.plan_with_indexes(query, spec)
        finally:
            db._server.facts["hypopg"] = True
        assert not [i for i in db.tables()["orders"].indexes if i.name.startswith("quill_scratch")]
    finally:
        db.close()


def test_the_heuristic_agent_optimizes_a_postgres_database(user_db):
    import gymnasium as gym

    import quill_env
    from quill_agents.heuristic import HeuristicAgent

    env = gym.make("Quill-v1", database=user_db, queries=[SLOW])
    obs, _ = env.reset(seed=0)
    env.close()
    action = HeuristicAgent(database=user_db).act(obs)
    result = quill_env.evaluate(user_db, SLOW, action)
    assert result.verdict.value == "improved", (action, result.verdict, result.error)


def test_enums_domains_partitions_and_views_are_copied():
    import psycopg

    import quill_env

    url = pgcluster.url("pg_user_kinds")
    with psycopg.connect(pgcluster.url(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS pg_user_kinds WITH (FORCE)")
        admin.execute("CREATE DATABASE pg_user_kinds")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute("CREATE DOMAIN score AS integer NOT NULL CHECK (VALUE >= 0)")
        conn.execute(
            "CREATE TABLE visits (id bigint, day date NOT NULL, feeling mood, points score, "
            "PRIMARY KEY (id, day)) PARTITION BY RANGE (day)"
        )
        conn.execute("CREATE TABLE visits_a PARTITION OF visits FOR VALUES FROM ('2024-01-01') TO ('2024-07-01')")
        conn.execute("CREATE TABLE visits_b PARTITION OF visits FOR VALUES FROM ('2024-07-01') TO ('2025-01-01')")
        conn.execute(
            "INSERT INTO visits SELECT g, date '2024-01-01' + (g % 360), (ARRAY['sad','ok','happy'])[1 + g % 3]::mood, "
            "g % 50 FROM generate_series(1, 3000) g"
        )
        conn.execute("CREATE VIEW happy_visits AS SELECT id, day FROM visits WHERE feeling = 'happy'")
    before = pgcluster.fingerprint(url)
    slow = "SELECT id, day FROM visits WHERE feeling = 'happy' AND day >= '2024-11-01' ORDER BY id"
    result = quill_env.evaluate(url, slow, "SELECT id, day FROM happy_visits WHERE day >= '2024-11-01' ORDER BY id")
    assert result.correct, (result.verdict, result.error)
    wrong = quill_env.evaluate(url, slow, "SELECT id, day FROM visits WHERE day >= '2024-11-01' ORDER BY id")
    assert wrong.verdict.value == "wrong_result"
    assert pgcluster.fingerprint(url) == before
