"""A new user's first day (issue 10): the command line as a script sees it, output piped.

Every command runs in a subprocess (``python -m quill_cli``) with stdout and stderr captured,
so the console is not a terminal, exactly as in ``quill ... | grep`` or a CI log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quill_agents.generate import DataLoop, GenerateConfig
from quill_agents.heldout import held_out_schemas
from quill_agents.store import DRAWS_FILE, RECORDS_FILE, read_jsonl
from quill_cli.console import format_cost
from quill_env import get_suite, list_suites
from quill_env.authoring.querygen import Candidate
from quill_env.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ANSI = re.compile(r"\x1b\[")
SLOW = "SELECT id, email FROM users WHERE country = 'NZ'"
INDEXED = "CREATE INDEX i_country ON users(country);\n" + SLOW
WRONG = "SELECT id, email FROM users WHERE country <> 'NZ'"


def quill(*args: str, cwd: Path | None = None, env: dict | None = None, check_rc: int | None = None):
    """Run ``quill ARGS`` with both streams piped; returns the completed process."""
    proc = subprocess.run(
        [sys.executable, "-m", "quill_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def no_traceback(proc: subprocess.CompletedProcess | tuple) -> None:
    text = proc.stdout + proc.stderr if hasattr(proc, "stdout") else "".join(proc)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text


def _default_sigint() -> None:
    """A child must get Ctrl-C as a terminal delivers it, even if pytest runs with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_quill(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "quill_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C goes to it and its workers, as in a terminal
        preexec_fn=_default_sigint,
    )


def ctrl_c(proc: subprocess.Popen) -> tuple[str, str]:
    """Send SIGINT to the whole process group (what Ctrl-C in a terminal does) and collect output."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def user_db(tmp_path_factory) -> str:
    """A database of the user's own: a library schema that no Quill suite has."""
    path = tmp_path_factory.mktemp("user") / "library.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE authors(id INTEGER PRIMARY KEY, name TEXT, born INTEGER);"
        "CREATE TABLE books(id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id),"
        " title TEXT, isbn TEXT, year INTEGER);"
    )
    conn.executemany(
        "INSERT INTO authors VALUES (?, ?, ?)", [(i, f"author {i}", 1900 + i % 90) for i in range(300)]
    )
    conn.executemany(
        "INSERT INTO books VALUES (?, ?, ?, ?, ?)",
        [(i, (i * 7) % 300, f"title {i}", f"isbn-{(i * 7919) % 100003}", 1950 + i % 70) for i in range(8000)],
    )
    conn.commit()
    conn.close()
    return str(path)


# --- item 6: generate never trains on the held-out test schemas by default -----------------------


def test_held_out_schemas_are_the_test_only_suites():
    assert held_out_schemas() == ("clinic", "logistics")


def test_generate_defaults_to_training_schemas(tmp_path):
    loop = DataLoop(GenerateConfig(out=str(tmp_path / "run")), lambda obs, k: [])
    assert set(loop.suite_names) == set(list_suites()) - {"clinic", "logistics"}
    loop.close()
    loop = DataLoop(GenerateConfig(out=str(tmp_path / "all"), include_test_schemas=True), lambda obs, k: [])
    assert {"clinic", "logistics"} <= set(loop.suite_names)
    loop.close()


def test_naming_a_test_schema_needs_the_loud_flag(tmp_path):
    with pytest.raises(ConfigError, match="--include-test-schemas"):
        GenerateConfig(out=str(tmp_path), suites=("shop", "clinic"))
    proc = quill(
        "generate", "--suites", "logistics", "--target", "1", "--out", str(tmp_path / "run"), check_rc=2
    )
    assert "held-out test schema" in proc.stderr and "--include-test-schemas" in proc.stderr
    assert not (tmp_path / "run" / RECORDS_FILE).exists()
    no_traceback(proc)


class _Replay:
    """A slow-query source that writes a given query (here: one of a test-split task)."""

    name = "replay"

    def __init__(self, query: str) -> None:
        self.query = query

    def draw(self, ctx, family, rng, examples):
        return Candidate(family, ctx.suite.name, self.query, "", (family,))


def test_generate_skips_queries_shaped_like_test_split_tasks(tmp_path, shop_suite):
    test_task = shop_suite.split("test")[0]
    config = GenerateConfig(out=str(tmp_path / "run"), suites=("shop",), scales=("small",), num_variants=2)
    loop = DataLoop(config, lambda obs, k: [], _Replay(test_task.query))
    try:
        assert loop.draw(0)["reason"] == "test_task"
    finally:
        loop.close()
    allowed = GenerateConfig(**{**config.__dict__, "out": str(tmp_path / "ok"), "include_test_schemas": True})
    loop = DataLoop(allowed, lambda obs, k: [], _Replay(test_task.query))
    try:
        assert loop.draw(0)["reason"] != "test_task"
    finally:
        loop.close()


def _store(path: Path, suites: list[str]) -> Path:
    path.mkdir(parents=True)
    rows = [
        {"suite": s, "query_fingerprint": f"q{i}", "action_fingerprint": "a"} for i, s in enumerate(suites)
    ]
    (path / RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_export_refuses_records_of_test_schemas_and_writes_nothing(tmp_path):
    store = _store(tmp_path / "run", ["shop", "clinic", "clinic"])
    proc = quill("export", str(store), "--out", str(tmp_path / "data"), "--no-hf", check_rc=2)
    assert "clinic" in proc.stderr and "--include-test-schemas" in proc.stderr
    assert not (tmp_path / "data").exists()
    no_traceback(proc)


def test_train_refuses_an_export_of_test_schemas(tmp_path):
    from quill_agents.trainers import SFTTrainConfig
    from quill_agents.trainers.common import training_rows

    data = tmp_path / "data"
    data.mkdir()
    row = {
        "prompt": [{"role": "user", "content": "q"}],
        "completion": [{"role": "assistant", "content": "a"}],
    }
    (data / "sft.jsonl").write_text(json.dumps(row) + "\n")
    (data / "export.json").write_text(json.dumps({"schemas": {"shop": 3, "logistics": 1}}))
    with pytest.raises(ConfigError, match=r"logistics.*--include-test-schemas"):
        training_rows(SFTTrainConfig(dataset=str(data / "sft.jsonl")), "sft")
    rows = training_rows(SFTTrainConfig(dataset=str(data / "sft.jsonl"), include_test_schemas=True), "sft")
    assert len(rows) == 1
    (data / "export.json").write_text(json.dumps({"schemas": {"shop": 4}}))
    assert len(training_rows(SFTTrainConfig(dataset=str(data / "sft.jsonl")), "sft")) == 1


# --- items 7 and 10: bench writes only inside --out; tables are whole when piped ---------------


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, shop_suite):
    root = tmp_path_factory.mktemp("bench")
    cwd = root / "cwd"
    cwd.mkdir()
    proc = quill(
        "bench", "--agent", "identity,reference", "--suite", "shop", "--task", "shop/pending_in_january",
        "--workers", "0", "--no-plots", "--out", str(root / "out"), cwd=cwd,
    )  # fmt: skip
    return root, cwd, proc


def test_bench_with_out_writes_nothing_outside_it(bench_run):
    root, cwd, proc = bench_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(cwd.iterdir()) == []  # no benchmarks/LEADERBOARD.md in the working directory
    assert (root / "out" / "LEADERBOARD.md").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["cwd", "out"]


def test_bench_without_out_writes_only_to_the_ignored_outputs_folder(tmp_path, shop_suite):
    """The main job run from a checkout must not rewrite the tracked page or tracked results."""
    proc = quill(
        "bench", "--agent", "identity", "--suite", "shop", "--task", "shop/pending_in_january",
        "--workers", "0", "--no-plots", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["outputs"]
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert "outputs/leaderboard/LEADERBOARD.md" in written
    assert all(name.startswith("outputs/leaderboard/") for name in written)
    assert not (tmp_path / "benchmarks").exists()


def test_bench_run_name_says_the_scale(bench_run):
    root, _, _ = bench_run
    (result,) = (root / "out").glob("*.json")
    assert result.stem.endswith("-test-medium-work") and "default" not in result.stem
    assert json.loads(result.read_text())["fingerprint"]["scale"] == "medium"


def test_bench_leaderboard_path_is_explicit(tmp_path, bench_run):
    root, _, _ = bench_run
    page = tmp_path / "docs" / "board.md"
    quill("bench", "--regenerate", "--out", str(root / "out"), "--leaderboard", str(page), check_rc=0)
    assert "`reference`" in page.read_text()


def test_bench_table_keeps_its_status_column_when_piped(bench_run):
    _, _, proc = bench_run
    header = next(line for line in proc.stdout.splitlines() if "mean reward" in line)
    assert "status" in header
    rows = [line for line in proc.stdout.splitlines() if "reference" in line and "%" in line]
    assert rows and rows[0].rstrip("│ ").endswith("ok")
    assert "…" not in proc.stdout and not ANSI.search(proc.stdout)


def test_tasks_list_never_truncates_ids_when_piped():
    proc = quill("tasks", "list", check_rc=0)
    assert "…" not in proc.stdout and not ANSI.search(proc.stdout)
    ids = [t.id for name in list_suites() for t in get_suite(name).tasks]
    for task_id in ids:
        assert re.search(rf"(^|\s){re.escape(task_id)}\s", proc.stdout, re.M), task_id


def test_tasks_list_json():
    proc = quill("tasks", "list", "--suite", "shop", "--split", "test", "--json", check_rc=0)
    tasks = json.loads(proc.stdout)
    assert [t["id"] for t in tasks] == [t.id for t in get_suite("shop").split("test")]
    assert all(t["split"] == "test" and t["query"] for t in tasks)


def test_validate_json_and_readable_table(tmp_path, shop_suite):
    task = shop_suite.task("shop/pending_in_january")
    sub = tmp_path / "sub.jsonl"
    sub.write_text(json.dumps({"task_id": task.id, "action": task.reference}) + "\n")
    args = ["validate", str(sub), "--suite", "shop", "--scale", "small", "--workers", "0"]
    report = json.loads(quill(*args, "--json", check_rc=0).stdout)
    assert report["ok"] and report["records"][0]["task_id"] == task.id
    text = quill(*args, check_rc=0).stdout
    header = next(line for line in text.splitlines() if "mean reward" in line)
    assert "status" in header and "…" not in text and "OK" in text


def test_piped_errors_carry_no_terminal_codes_even_with_force_color():
    proc = quill("tasks", "show", "shopp/coupon_lookup", env={"FORCE_COLOR": "1"}, check_rc=2)
    assert proc.stdout == "" and proc.stderr.startswith("error: ")
    assert not ANSI.search(proc.stderr)


# --- item 8: exporting a store that does not exist ---------------------------------------------


def test_export_of_a_missing_store_says_so_and_writes_nothing(tmp_path):
    proc = quill("export", str(tmp_path / "no" / "such" / "store"), "--out", str(tmp_path / "x"), check_rc=2)
    assert "no such store" in proc.stderr
    assert not (tmp_path / "x").exists()
    no_traceback(proc)
    (tmp_path / "empty").mkdir()
    proc = quill("export", str(tmp_path / "empty"), "--out", str(tmp_path / "y"), check_rc=2)
    assert RECORDS_FILE in proc.stderr and not (tmp_path / "y").exists()


# --- item 9: messages, not tracebacks --------------------------------------------------------


def test_evaluate_with_a_missing_sql_file(tmp_path, small_db):
    missing = tmp_path / "missing.sql"
    proc = quill("evaluate", small_db, "--slow", f"@{missing}", "--candidate", SLOW, check_rc=2)
    assert str(missing) in proc.stderr and "No such file" in proc.stderr
    no_traceback(proc)


def _wait_for(predicate, proc: subprocess.Popen) -> None:
    """Poll until ``predicate()`` holds (fails if the process ends first)."""
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"quill ended before the interrupt: {proc.communicate()}")
        time.sleep(0.05)


def test_ctrl_c_in_generate_says_what_was_saved_and_resumes(tmp_path, shop_suite):
    out = tmp_path / "run"
    args = ["generate", "--suites", "shop", "--scale", "small", "--variants", "2", "--out", str(out)]
    proc = popen_quill(*args, "--target", "100000")
    _wait_for(lambda: len(read_jsonl(out / DRAWS_FILE)) >= 2, proc)
    stdout, stderr = ctrl_c(proc)
    assert proc.returncode == 130, stderr
    no_traceback((stdout, stderr))
    kept = len(read_jsonl(out / RECORDS_FILE))
    assert f"{kept} verified records are saved in {out / RECORDS_FILE}" in stderr
    assert "run the same command again to resume" in stderr
    resumed = quill(*args, "--target", str(max(kept, 1)))
    assert "resuming" in resumed.stdout, resumed.stdout + resumed.stderr


def _sigint_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


def _pool_running(pid: int) -> bool:
    """The bench's worker pool is up: workers exist (SIGINT ignored) and the parent takes SIGINT again."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return bool(children) and all(_sigint_ignored(int(c)) for c in children) and not _sigint_ignored(pid)
    except (OSError, AttributeError):
        return False


@pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="reads the workers' signal state from Linux /proc",
)
def test_ctrl_c_in_bench_with_workers_prints_one_message(tmp_path, shop_suite):
    proc = popen_quill(
        "bench", "--suite", "shop", "--suite", "social", "--split", "all", "--scale", "small",
        "--workers", "2", "--no-plots", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    _wait_for(lambda: _pool_running(proc.pid), proc)
    stdout, stderr = ctrl_c(proc)
    assert proc.returncode == 130, stderr
    no_traceback((stdout, stderr))
    assert "interrupted after" in stderr and "nothing was saved" in stderr and "--limit" in stderr
    assert not (tmp_path / "out").exists()


def test_examples_work_on_a_database_of_ones_own(user_db):
    def run(script: str, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / script), user_db, *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        no_traceback(proc)
        return proc.stdout

    derived = run("score_my_query.py")
    assert '"books"' in derived  # the query comes from this schema, not the shop's
    assert re.search(r"add an index\s+improved", derived)
    assert re.search(r"\(wrong\)\s+wrong_result", derived) and re.search(r"hostile\s+rejected", derived)
    mine = run(
        "score_my_query.py",
        "--slow", "SELECT title FROM books WHERE year = 1999",
        "--candidate", "CREATE INDEX y ON books(year); SELECT title FROM books WHERE year = 1999",
    )  # fmt: skip
    assert re.search(r"candidate 1\s+improved", mine)
    optimized = run("optimize_my_query.py")
    assert "-> improved" in optimized
    slow = "SELECT a.name FROM authors a WHERE (SELECT COUNT(*) FROM books b WHERE b.author_id = a.id) > 0"
    assert "-> improved" in run("optimize_my_query.py", slow)


def test_derived_lookup_picks_a_selective_column_past_a_composite_key(tmp_path):
    """The largest table's only non-key column is a flag; its composite key's later columns are
    unindexed: the derived lookup must be one an index speeds up, not the flag."""
    path = tmp_path / "loans.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE loans (book TEXT, member_no INTEGER, out_date TEXT, returned INTEGER, "
        "PRIMARY KEY (book, member_no, out_date)) WITHOUT ROWID"
    )
    conn.executemany(
        "INSERT INTO loans VALUES (?, ?, ?, ?)",
        ((f"b{i % 3000}", i % 4999, f"2024-01-{1 + i % 28:02d}", i % 2) for i in range(40000)),
    )
    conn.commit()
    conn.close()
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "score_my_query.py"), str(path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"member_no"' in proc.stdout, proc.stdout
    assert re.search(r"add an index\s+improved", proc.stdout), proc.stdout


# --- item 11: messages that no longer mislead -------------------------------------------------


def test_tasks_show_finds_or_suggests_the_shop_task():
    shown = json.loads(quill("tasks", "show", "coupon_lookup", check_rc=0).stdout)
    assert shown["id"] == "shop/coupon_lookup"
    for typo in ("shopp/coupon_lookup", "coupon_lokup"):
        proc = quill("tasks", "show", typo, check_rc=2)
        assert "did you mean 'shop/coupon_lookup'?" in proc.stderr and "banking" not in proc.stderr


def test_tasks_list_refuses_an_unknown_scale():
    proc = quill("tasks", "list", "--scale", "huge", check_rc=2)
    assert "invalid choice: 'huge'" in proc.stderr and "'medium'" in proc.stderr


def test_wall_costs_are_shown_in_real_seconds(small_db):
    proc = quill(
        "evaluate", small_db, "--slow", SLOW, "--candidate", INDEXED, "--cost", "wall", "--variants", "2"
    )
    assert proc.returncode in (0, 1), proc.stderr
    costs = re.findall(r"(baseline|candidate) cost\s*│\s*([0-9.]+) (s|ms|µs|ns)\b", proc.stdout)
    assert len(costs) == 2, proc.stdout
    assert all(float(value) > 0 for _, value, _ in costs)
    assert "0 seconds" not in proc.stdout


def testformat_cost():
    assert format_cost(1234567.0, "vm_steps") == "1,234,567 vm_steps"
    assert format_cost(0.00042, "seconds") == "420 µs"
    assert format_cost(0.0123, "seconds") == "12.3 ms"
    assert format_cost(3.14159, "seconds") == "3.14 s"


# --- item 12: quill evaluate's exit code says whether the candidate is correct -----------------


@pytest.mark.parametrize(
    ("candidate", "rc", "verdict"),
    [(INDEXED, 0, "improved"), (SLOW, 0, "unchanged"), (WRONG, 1, "wrong_result"), ("garbage sql", 1, None)],
)
def test_evaluate_exit_code_is_zero_only_when_correct(small_db, candidate, rc, verdict):
    proc = quill("evaluate", small_db, "--slow", SLOW, "--candidate", candidate, "--variants", "2", "--json")
    result = json.loads(proc.stdout)
    assert proc.returncode == rc, result
    assert result["correct"] is (rc == 0)
    if verdict:
        assert result["verdict"] == verdict


def test_evaluate_scores_every_candidate_it_is_given(small_db):
    """A repeated --candidate is scored, not dropped: each result in order, and the exit code is
    0 only when every candidate is correct."""
    args = (
        "evaluate",
        small_db,
        "--slow",
        SLOW,
        "--candidate",
        INDEXED,
        "--candidate",
        WRONG,
        "--variants",
        "2",
    )
    proc = quill(*args, "--json")
    assert proc.returncode == 1, proc.stderr
    assert [r["verdict"] for r in json.loads(proc.stdout)] == ["improved", "wrong_result"]
    text = quill(*args).stdout
    assert "candidate 1 of 2" in text and "candidate 2 of 2" in text
    assert text.index("improved") < text.index("wrong_result")
    both_good = quill(
        "evaluate", small_db, "--slow", SLOW, "--candidate", INDEXED, "--candidate", SLOW, "--json"
    )
    assert both_good.returncode == 0 and len(json.loads(both_good.stdout)) == 2


def test_evaluate_usage_errors_exit_2_and_help_documents_the_codes(tmp_path):
    proc = quill("evaluate", str(tmp_path / "nope.db"), "--slow", SLOW, "--candidate", SLOW, check_rc=2)
    no_traceback(proc)
    assert quill("evaluate", "--slow", SLOW).returncode == 2  # argparse: missing arguments
    help_text = quill("evaluate", "--help", check_rc=0).stdout
    assert "exit codes:" in help_text
    for line in ("0  the candidate is correct", "1  the candidate is not correct", "2  usage error"):
        assert line in help_text
