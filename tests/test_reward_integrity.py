"""Reward integrity under an attacker (DESIGN §10): leaks, padding, bombs, bad text, the clock.

The hard-code corpus over every shipped task lives in ``test_hardcode_corpus.py``. Here each
attack is the one an optimizing policy would find:

- the feedback of a failed attempt, or a tool's output, carries the answer (mismatch examples,
  engine errors built from the data), to be hard-coded in the next attempt;
- work moved into one function call or a sort that the VM-step counter sees as one step;
- statements that allocate without bound or run one long opcode, to kill or stall the process;
- text that is not valid Unicode;
- the clock reached through a computed string.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import apsw
import pytest

import quill_env
from quill_env import Verdict, evaluate
from quill_env.backends.sqlite import FIXED_NOW_UNIX
from quill_env.variants import VariantBuilder

PAID = {Verdict.IMPROVED}


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> str:
    """A small shop whose answers hold distinctive values (to spot them in any message)."""
    path = tmp_path_factory.mktemp("integrity") / "shop.db"
    conn = apsw.Connection(str(path))
    conn.execute(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT);"
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
        " total REAL NOT NULL, status TEXT NOT NULL, note TEXT)"
    )
    with conn:
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [(i, f"zebra{i:04d}", ["NZ", "FR", "JP"][i % 3]) for i in range(1, 401)],
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    1 + (i * 7) % 400,
                    10 + (i * 37) % 900 + 0.25,
                    ["paid", "shipped", "void"][i % 3],
                    "n" * (i % 50),
                )
                for i in range(1, 4001)
            ],
        )
    conn.close()
    return str(path)


def _answer_tokens(db: str, sql: str) -> set[str]:
    conn = apsw.Connection(db)
    tokens = set()
    for row in conn.execute(sql):
        for value in row:
            text = str(value)
            if len(text) >= 4:
                tokens.add(text)
    conn.close()
    return tokens


# --- 2. nothing an agent sees carries verification data -----------------------------------

LEAK_SLOW = (
    "SELECT u.id, u.name || '', group_concat(o.status) AS statuses FROM users u JOIN orders o ON o.user_id = u.id "
    "WHERE u.country = 'NZ' GROUP BY u.id, u.name"
)
LEAKS = {
    "mismatch example": "SELECT u.id, u.name || 'x', group_concat(o.status) AS statuses FROM users u JOIN orders o "
    "ON o.user_id = u.id WHERE u.country = 'NZ' GROUP BY u.id, u.name",
    "engine error built from the answer": "SELECT u.id, u.name || '', json_extract('{}', '$.' || group_concat(o.status || u.name)) "
    "FROM users u JOIN orders o ON o.user_id = u.id WHERE u.country = 'NZ' GROUP BY u.id, u.name",
    "engine error from a value": "SELECT u.id, u.name || '', group_concat(o.status) FROM users u JOIN orders o ON o.user_id = u.id "
    "WHERE u.country = 'NZ' AND json_extract(u.name, '$') IS NOT NULL GROUP BY u.id, u.name",
    "row count": "SELECT u.id, u.name || '', group_concat(o.status) AS statuses FROM users u JOIN orders o "
    "ON o.user_id = u.id GROUP BY u.id, u.name",
}


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_errors_and_feedback_carry_no_data(shop, kind):
    """With the literal rule off (so the leak reaches the engine), no message carries a value."""
    tokens = _answer_tokens(shop, LEAK_SLOW) | {"zebra"}
    result = evaluate(shop, LEAK_SLOW, LEAKS[kind], literals="any")
    assert result.verdict in {Verdict.WRONG_RESULT, Verdict.RUNTIME_ERROR}, (
        kind,
        result.verdict,
        result.error,
    )
    seen = json.dumps(result.info)
    assert not [t for t in tokens if t in seen], (kind, result.error)
    assert any(where in result.error for where in ("main database", "twin", *VariantBuilder.MUTATIONS))
    env = quill_env.SQLOptEnv(database=shop, queries=[LEAK_SLOW], max_attempts=2, literals="any")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(LEAKS[kind])
    assert not [t for t in tokens if t in obs["feedback"] or t in json.dumps(info)], obs["feedback"]


def test_mismatch_says_where_and_what(shop):
    result = evaluate(shop, LEAK_SLOW, LEAKS["row count"])
    assert result.verdict is Verdict.WRONG_RESULT
    assert any(kind in result.error for kind in ("row count", "values", "more rows"))


def test_tool_output_carries_no_data(shop_suite):
    """The GRPO multi-turn ``dry_run`` tool reports the verdict and where it failed, no rows."""
    pytest.importorskip("trl")
    from quill_agents.trainers.rewards import SQLToolEnvironment

    task = shop_suite.task("shop/icelandic_orders")
    tool = SQLToolEnvironment()
    tool.reset(task_id=task.id)
    runner = quill_env.TaskRunner.from_suite(shop_suite, task, "small")
    tokens = {str(v) for row in runner.baseline.main.rows for v in row if len(str(v)) >= 4}
    wrong = "SELECT o.id, o.total * 2 FROM orders o JOIN users u ON u.id = o.user_id WHERE u.country = 'IS'"
    text = tool.dry_run(wrong)
    assert "wrong_result" in text and not [t for t in tokens if t in text], text


# --- 3. work the VM-step counter does not see ----------------------------------------------

PADDING_SLOW = "SELECT id, total FROM orders WHERE status = 'paid'"
PADDING = {
    "printf width": "SELECT id, total FROM orders WHERE status = 'paid' AND length(printf('%.*c', 3000000, 'x')) > 0",
    "printf width from data": "SELECT id, total FROM orders WHERE status = 'paid' AND length(printf('%.*c', id * 1000, 'x')) > 0",
    "one-off replace": "SELECT id, total FROM orders WHERE status = 'paid' AND (SELECT length(replace(group_concat(note), 'n', 'nnnnnnnnnn')) FROM orders) > 0",
    "long needle": "SELECT id, total FROM orders WHERE status = 'paid' AND instr(note, (SELECT group_concat(note) FROM orders)) >= 0",
    "like on built strings": "SELECT id, total FROM orders WHERE status = 'paid' AND (SELECT group_concat(note) FROM orders) LIKE '%' || status || '%'",
    "sorter on long keys": "SELECT id, total FROM orders WHERE status = 'paid' AND id IN (SELECT id FROM orders ORDER BY note || note || note)",
    "zeroblob": "SELECT id, total FROM orders WHERE status = 'paid' AND length(zeroblob(200000000)) > 0",
    "char padding": "SELECT id, total FROM orders WHERE status = 'paid' AND length(char(120, 120, 120)) > 0",
}


@pytest.mark.parametrize("kind", sorted(PADDING))
def test_hidden_work_is_refused(shop, kind):
    result = evaluate(shop, PADDING_SLOW, "CREATE INDEX i ON orders(status); " + PADDING[kind])
    assert result.verdict is Verdict.REJECTED, (kind, result.verdict, result.error)


def test_index_seeks_are_charged(shop):
    """A non-covering index on a column a third of the rows match is no faster: it must not pay."""
    result = evaluate(shop, PADDING_SLOW, "CREATE INDEX i ON orders(status); " + PADDING_SLOW)
    assert result.correct
    assert result.verdict is not Verdict.IMPROVED, (result.speedup, result.speedup_raw)


def test_a_selective_index_still_pays(shop):
    slow = "SELECT id, total FROM orders WHERE user_id = 17"
    result = evaluate(shop, slow, "CREATE INDEX i ON orders(user_id); " + slow)
    assert result.verdict is Verdict.IMPROVED, (result.error, result.speedup)


# --- 5. bounded memory and time --------------------------------------------------------------

BOMBS = {
    "heap: recursive fan-out": "WITH RECURSIVE r(n, s) AS (SELECT 1, note FROM orders WHERE id = 1 UNION ALL "
    "SELECT n + 1, s FROM r, orders WHERE n < 3) SELECT o.id, o.total FROM orders o WHERE o.status = 'paid' "
    "AND o.id IN (SELECT n FROM r)",
    "heap: huge group": "SELECT id, total FROM orders WHERE status = 'paid' AND id NOT IN "
    "(SELECT a.id * 100000 + b.id FROM orders a, orders b)",
    "time: cartesian": "SELECT id, total FROM orders o WHERE status = 'paid' AND "
    "(SELECT COUNT(*) FROM orders a, orders b, orders c WHERE a.id < b.id) >= 0",
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_bombs_end_as_verdicts(shop, kind):
    result = evaluate(shop, PADDING_SLOW, BOMBS[kind], max_heap_mb=64)
    assert result.verdict in {
        Verdict.TIMEOUT,
        Verdict.RUNTIME_ERROR,
        Verdict.REJECTED,
        Verdict.WRONG_RESULT,
    }, (
        kind,
        result.verdict,
        result.error,
    )
    assert result.reward < 0


def test_heap_cap_is_a_runtime_error_and_the_process_lives(shop):
    code = (
        "import quill_env, json;"
        f"r = quill_env.evaluate({shop!r}, {PADDING_SLOW!r}, "
        "\"SELECT id, total FROM orders WHERE status = 'paid' AND id NOT IN "
        '(SELECT a.id * 100000 + b.id FROM orders a, orders b ORDER BY a.total, b.total)", '
        "max_heap_mb=16, budget_factor=1000.0, max_seconds=120, literals='any');"
        "print(json.dumps([r.verdict.value, r.error]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    verdict, error = json.loads(out.stdout.strip().splitlines()[-1])
    assert verdict == "runtime_error" and "out of memory" in error, (verdict, error)


def test_the_deadline_is_a_timeout(shop):
    result = evaluate(shop, PADDING_SLOW, BOMBS["time: cartesian"], budget_factor=1e9, max_seconds=0.5)
    assert result.seconds < 60, result.seconds  # generous: the work budget alone would allow hours
    assert result.verdict is Verdict.TIMEOUT and "deadline" in result.error


# --- 6. any text is an outcome; no path reaches the clock ------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "SELECT id, total FROM orders WHERE status = '\ud800'",
        "SELECT id, total FROM orders -- \udcff comment\nWHERE status = 'paid'",
        "SELECT id, total FROM orders WHERE status = 'pa\x00id'",
        "\udc80\udc81",
        b"SELECT 1".decode("utf-8") + "\ufffe",
    ],
)
def test_bad_text_is_an_outcome(shop, text):
    result = evaluate(shop, PADDING_SLOW, text)
    assert result.verdict in {Verdict.REJECTED, Verdict.SYNTAX_ERROR, Verdict.WRONG_RESULT}, result


def test_bad_text_through_the_env(shop):
    env = quill_env.SQLOptEnv(database=shop, queries=[PADDING_SLOW])
    env.reset(seed=0)
    _, reward, _, _, info = env.step("SELECT '\ud800'")
    assert info["verdict"] == "rejected" and reward == -1.0


CLOCK_SLOW = "SELECT id, total, status || '' AS s FROM orders WHERE status = 'paid'"
CLOCK = {
    "computed now": "WITH c(v) AS (SELECT 'no' || 'w') SELECT o.id, o.total, o.status || '' AS s "
    "FROM orders o, c WHERE o.status = 'paid' AND strftime('%S', c.v) >= '00'",
    "now from a subquery": "SELECT o.id, o.total, o.status || '' AS s FROM orders o WHERE o.status = 'paid' AND "
    "julianday((SELECT substr(status, 1, 0) || 'now' FROM orders WHERE id = 1)) > 2451545",
}


def test_the_clock_is_pinned():
    backend = quill_env.backends.SQLiteBackend.empty()
    run = backend.execute("WITH c(v) AS (SELECT 'no' || 'w') SELECT unixepoch(v), datetime(v) FROM c")
    assert run.rows == [(FIXED_NOW_UNIX, "2026-01-01 00:00:00")]


@pytest.mark.parametrize("kind", sorted(CLOCK))
def test_clock_tricks_are_refused_or_reproducible(shop, kind):
    """Refused by the literal rule; and with that rule off, the pinned clock makes it reproducible."""
    assert evaluate(shop, CLOCK_SLOW, CLOCK[kind]).verdict is Verdict.REJECTED
    code = (
        "import quill_env, json;"
        f"r = quill_env.evaluate({shop!r}, {CLOCK_SLOW!r}, {CLOCK[kind]!r}, literals='any');"
        "print(json.dumps([r.verdict.value, r.reward, r.speedup_raw]))"
    )
    outs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        outs.append(out.stdout.strip().splitlines()[-1])
        time.sleep(1.1)
    assert outs[0] == outs[1]
    assert json.loads(outs[0])[0] != "runtime_error"


def test_work_is_the_same_whatever_ran_before(shop):
    """A rolled-back index must not make the next statement pay for reloading the schema."""
    slow = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u WHERE u.country = 'NZ'"
    join = "SELECT u.id, COUNT(o.id) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.country = 'NZ' GROUP BY u.id"
    index = "CREATE INDEX i ON orders(user_id); " + slow
    first = evaluate(shop, slow, join)
    evaluate(shop, slow, index)
    again = evaluate(shop, slow, join)
    assert (first.candidate_cost, first.reward) == (again.candidate_cost, again.reward)


def test_index_build_out_of_memory_is_a_verdict_and_leaves_no_savepoint(shop):
    """An index build the engine abandons (SQLITE_FULL or out of memory) is an IndexBuildError,
    never "no such savepoint", and the database is usable afterwards."""
    from quill_env.action_policy import IndexSpec
    from quill_env.backends.base import Budget
    from quill_env.backends.sqlite import SQLiteBackend
    from quill_env.errors import IndexBuildError

    backend = SQLiteBackend.open(shop)
    spec = IndexSpec("orders", (("note", False), ("status", False)))
    with pytest.raises(IndexBuildError), backend.scratch_indexes([spec], Budget(max_heap_bytes=1)):
        pass
    assert not backend.connection.in_transaction
    assert backend.execute("SELECT COUNT(*) FROM orders").rows == [(4000,)]


# --- found by red-teaming the v1 reward (2026-12) ---------------------------------------------


def test_dropping_a_table_whose_rows_only_have_to_exist_is_wrong(shop_suite):
    """``FROM users u, follows f`` needs ``follows`` to have a row; no variant or twin had exactly
    one table empty, so dropping the cross-joined table was paid on all 29 cartesian tasks."""
    from quill_env import TaskRunner, get_suite

    suite = get_suite("social")
    task = suite.task("social/cartesian_054")
    runner = TaskRunner.from_suite(suite, task, "small")
    dropped = "SELECT u.id, u.home_country FROM users u WHERE u.birth_year = 1970"
    result = runner.evaluate(dropped)
    assert result.verdict is Verdict.WRONG_RESULT, result
    assert result.error.startswith("without:follows: ")
    assert runner.evaluate(task.reference).verdict is Verdict.IMPROVED


def test_a_join_the_foreign_key_makes_redundant_may_still_be_dropped(shop):
    """Emptying a parent table also removes the rows that reference it, so the schema's keys hold
    and a rewrite that drops a join through a NOT NULL foreign key stays correct."""
    slow = "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id WHERE o.total > 800"
    result = evaluate(shop, slow, "SELECT o.id, o.total FROM orders o WHERE o.total > 800")
    assert result.correct, result
    assert any(v.name == "without:users" and v.status == "match" for v in result.variants)


def test_dead_code_cannot_dilute_the_function_share(shop_suite):
    """A never-true NOT EXISTS with 300 terms made the loops long and the strftime calls a small
    share of them: the original unchanged plus dead code was paid 0.54 at 1.00x wall time."""
    from quill_env import TaskRunner

    task = shop_suite.task("shop/orders_on_a_day")
    runner = TaskRunner.from_suite(shop_suite, task, "small")
    pad = " AND ".join(["zz.rowid > zz.rowid"] * 300)
    padded = f"{task.query} AND NOT EXISTS (SELECT 1 FROM orders zz WHERE zz.rowid IS NULL AND {pad})"
    result = runner.evaluate(padded)
    assert result.verdict not in PAID, result
    assert result.speedup is not None and result.speedup < 1.5


def test_collate_is_refused_unless_the_original_uses_it(tmp_path):
    """``ORDER BY upper(x)`` -> ``ORDER BY x COLLATE NOCASE`` moved the work into the sorter's
    comparisons (paid 2.2x while slower) and is not even equivalent: NOCASE folds to lower case,
    so '_' sorts before letters under NOCASE and after them under upper()."""
    path = tmp_path / "notes.db"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT)")
    with conn:
        conn.executemany(
            "INSERT INTO t VALUES (?, ?)", [(i, f"gift{'_' if i % 2 else 'b'}{i}") for i in range(1, 3001)]
        )
    conn.close()
    slow = "SELECT id, note FROM t ORDER BY upper(note)"
    candidate = "SELECT id, note FROM t ORDER BY note COLLATE NOCASE"
    check = apsw.Connection(str(path))
    assert list(check.execute(slow)) != list(check.execute(candidate))  # really not equivalent
    check.close()
    result = evaluate(str(path), slow, candidate)
    assert result.verdict is Verdict.REJECTED and "COLLATE" in result.error, result
    lowered = evaluate(str(path), "SELECT id, note FROM t ORDER BY lower(note)", candidate)
    assert lowered.verdict is Verdict.REJECTED
    kept = evaluate(str(path), candidate, "SELECT id, note FROM t ORDER BY note COLLATE NOCASE, id")
    assert kept.verdict is not Verdict.REJECTED  # the original's own COLLATE may stay


def test_a_table_behind_a_view_is_emptied_too(tmp_path):
    """The original reads ``follows`` through a view: dropping the view is as wrong as dropping
    the table, so the table behind it is emptied alone as well."""
    path = tmp_path / "view.db"
    conn = apsw.Connection(str(path))
    conn.execute(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, born INTEGER);"
        "CREATE TABLE follows(a INTEGER, b INTEGER);"
        "CREATE VIEW edges AS SELECT a, b FROM follows"
    )
    with conn:
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(i, 1950 + i % 40) for i in range(1, 3001)])
        conn.executemany("INSERT INTO follows VALUES (?, ?)", [(i, i + 1) for i in range(1, 200)])
    conn.close()
    slow = "SELECT DISTINCT u.id FROM users u, edges e WHERE u.born = 1970"
    result = evaluate(str(path), slow, "SELECT u.id FROM users u WHERE u.born = 1970")
    assert result.verdict is Verdict.WRONG_RESULT, result
    assert result.error.startswith("without:follows: ")


@pytest.mark.slow
def test_a_statement_of_more_than_2_31_vm_steps_keeps_its_count():
    """SQLite's step counter is 32 bits: a query of more than 2**31 steps read as negative, so its
    baseline cost was negative and every rewrite of it (a user's slow query over 200k rows, made
    500x faster) was stopped at once as a timeout. The count must come back whole."""
    from quill_env.backends.sqlite import SQLiteBackend

    rows = 130_000_000  # 17 VM steps per row: about 2.2e9 steps, ~20 s
    sql = f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT count(*) FROM c"
    with SQLiteBackend.from_rows(["CREATE TABLE t(a INTEGER)"], {"t": [(1,)]}) as backend:
        result = backend.execute(sql)
    assert result.ok and result.rows == [(rows,)]
    assert result.counters["vm_step"] > 2**31 and result.work > result.counters["vm_step"]
