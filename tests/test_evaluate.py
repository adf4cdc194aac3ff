import hashlib
import json
import subprocess
import sys

import pytest

import quill_env
from quill_cli import main as cli_main
from quill_env import BaselineError, DatabaseError, Verdict, evaluate

SLOW = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u WHERE u.country = 'NZ'"
FAST = (
    "SELECT u.id, COALESCE(c.n, 0) AS n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'"
)
WRONG = (  # forgets the COALESCE: NULL instead of 0 for users without orders
    "SELECT u.id, c.n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'"
)


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_correct_rewrite_is_improved(small_db):
    before = _sha(small_db)
    result = evaluate(small_db, SLOW, FAST)
    assert result.verdict is Verdict.IMPROVED and result.correct
    assert result.speedup > 1.5 and result.speedup_raw > result.speedup  # calibrated below raw
    assert set(result.reward_terms) == {"tier", "readability", "indexes"}
    assert result.reward == pytest.approx(sum(result.reward_terms.values()))
    assert result.engine.startswith("SQLite 3.")
    assert result.baseline_cost > result.candidate_cost > 0 and result.cost_unit == "vm_steps"
    assert _sha(small_db) == before


def test_count_without_coalesce_is_wrong(small_db):
    result = evaluate(small_db, SLOW, WRONG)
    assert result.verdict is Verdict.WRONG_RESULT and result.reward == -1.0
    assert "values differ" in result.error


def test_markdown_fenced_completion_is_accepted(small_db):
    text = f"Here is a faster version:\n```sql\n{FAST}\n```\nIt avoids the correlated subquery."
    assert evaluate(small_db, SLOW, text).verdict is Verdict.IMPROVED


def test_pathological_candidate_times_out(small_db):
    bomb = (
        "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id "
        "AND (SELECT COUNT(*) FROM orders o2 WHERE o2.total >= 0 * o.total) > 0) AS n "
        "FROM users u WHERE u.country = 'NZ'"
    )
    result = evaluate(small_db, SLOW, bomb, num_variants=0)
    assert result.verdict is Verdict.TIMEOUT and result.reward == -0.5
    assert result.candidate_cost <= 2.0 * result.baseline_cost + 20_000


def test_output_columns(small_db):
    slow = "SELECT * FROM orders WHERE coupon_code = 'SAVE-amber'"
    good = "SELECT id, total FROM orders WHERE coupon_code = 'SAVE-amber'"
    assert evaluate(small_db, slow, good, output_columns=["id", "total"]).correct
    wrong_cols = evaluate(
        small_db,
        slow,
        "SELECT id FROM orders WHERE coupon_code = 'SAVE-amber'",
        output_columns=["id", "total"],
    )
    assert wrong_cols.verdict is Verdict.WRONG_RESULT and "does not return ['total']" in wrong_cols.error


def test_dropped_order_by_is_wrong(small_db):
    slow = "SELECT id, total FROM orders WHERE user_id = 24 ORDER BY total DESC"
    result = evaluate(small_db, slow, "SELECT id, total FROM orders WHERE user_id = 24")
    assert result.verdict is Verdict.WRONG_RESULT and "ORDER BY" in result.error


def test_added_limit_is_rejected(small_db):
    slow = "SELECT id, total FROM orders WHERE user_id = 24 ORDER BY total DESC"
    result = evaluate(small_db, slow, slow + " LIMIT 3")
    assert result.verdict is Verdict.REJECTED


def test_baseline_is_computed_once(small_db, monkeypatch):
    from quill_env.evaluator import TaskRunner

    evaluate(small_db, SLOW, FAST)
    calls = []
    original = TaskRunner._run_original
    monkeypatch.setattr(TaskRunner, "_run_original", lambda self, *a: calls.append(1) or original(self, *a))
    for _ in range(3):
        evaluate(small_db, SLOW, FAST)
    assert calls == []


def test_programmer_errors_raise(small_db, tmp_path):
    with pytest.raises(DatabaseError):
        evaluate(tmp_path / "missing.db", SLOW, FAST)
    with pytest.raises(BaselineError):
        evaluate(small_db, "SELECT nope FROM users", FAST)
    with pytest.raises(quill_env.ConfigError):
        evaluate(small_db, SLOW, FAST, budget_factor=0.5)


def test_work_mode_is_identical_across_processes(small_db):
    code = (
        "import json, sys, quill_env;"
        f"r = quill_env.evaluate({small_db!r}, {SLOW!r}, {FAST!r});"
        "print(json.dumps([r.verdict.value, r.reward, r.speedup, r.speedup_raw, r.candidate_cost]))"
    )
    outs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert json.loads(outs[0]) == json.loads(outs[1])


def test_cli_evaluate_json(small_db, capsys):
    assert cli_main(["evaluate", small_db, "--slow", SLOW, "--candidate", FAST, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "improved" and out["correct"] is True


def test_cli_demo(shop_suite, capsys):
    assert cli_main(["demo", "--scale", "small", "--limit", "2"]) == 0
    assert "reference rewrites improved: 2/2" in capsys.readouterr().out


def test_baseline_is_cached_on_disk(small_db, monkeypatch):
    from quill_env.evaluator import TaskRunner

    first = TaskRunner.for_database(small_db, SLOW + " ORDER BY u.id").baseline

    def boom(*_):
        raise AssertionError("the slow query ran again")

    monkeypatch.setattr(TaskRunner, "_run_original", boom)
    again = TaskRunner.for_database(small_db, SLOW + " ORDER BY u.id").baseline
    assert again == first


def test_a_file_that_is_not_sqlite_says_so(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database")
    with pytest.raises(DatabaseError, match="not a SQLite database"):
        evaluate(str(path), "SELECT 1", "SELECT 1")


def test_words_that_are_no_sql_are_a_syntax_error(small_db):
    result = evaluate(small_db, "SELECT id FROM orders WHERE user_id = 3", "garbage sql")
    assert result.verdict is Verdict.SYNTAX_ERROR and "not a SQL statement" in result.error
