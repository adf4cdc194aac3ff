"""quill bench / quill validate: results JSON, table, plots, submissions and re-validation."""

import json
import math

import pytest

from quill_agents.leaderboard import (
    AgentSpec,
    BenchConfig,
    StepRecord,
    parse_agent,
    parse_submission,
    render_leaderboard,
    run_bench,
)
from quill_agents.leaderboard.metrics import comparable, fast_p, summarize
from quill_agents.leaderboard.pool import parse_outcome
from quill_agents.leaderboard.submission import Entry, check_claims
from quill_cli import main
from quill_env.errors import ConfigError, UnknownNameError
from quill_env.measure import CostMode

TASKS = ["shop/pending_in_january", "shop/orders_on_a_day", "shop/one_user_totals"]
TASK_ARGS = [a for t in TASKS for a in ("--task", t)]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_run(shop_suite, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "bench", "--agent", "identity,reference", "--suite", "shop", "--scale", "small",
        *TASK_ARGS, "--workers", "2", "--name", "run1",
        "--out", str(out / "results"), "--leaderboard", str(out / "LEADERBOARD.md"),
    ]  # fmt: skip
    return out, argv


@pytest.fixture(scope="module")
def bench_result(bench_run):
    out, argv = bench_run
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(argv)
    data = json.loads((out / "results" / "run1.json").read_text())
    return out, rc, buf.getvalue(), data


def _agent(data, label):
    return next(a for a in data["agents"] if a["agent"] == label)


def test_bench_writes_json_table_plots_and_leaderboard(bench_result):
    out, rc, text, data = bench_result
    assert rc == 0, text
    assert "identity" in text and "reference" in text and "mean reward" in text
    assert data["tasks"] == TASKS
    fp = data["fingerprint"]
    assert fp["quill_version"] and fp["engine"].startswith("SQLite")
    assert fp["cost_mode"] == "work" and fp["scale"] == "small" and fp["split"] == "test"
    assert fp["suites"][0]["name"] == "shop" and fp["suites"][0]["hash"] and fp["suites"][0]["version"]
    assert fp["machine"]["cpus"] >= 1
    summary = _agent(data, "reference")["summary"]
    for key in ("correct", "mean_reward", "improved", "geomean_speedup", "fast_p", "by_pattern", "by_schema",
                "verdicts", "timing"):  # fmt: skip
        assert key in summary
    assert set(summary["fast_p"]) == {"1.5", "2", "5", "10", "50", "1000"}
    assert summary["timing"]["step_mean_s"] > 0
    for plot in data["plots"].values():
        assert (out / "results" / plot).read_bytes().startswith(PNG)
    board = (out / "LEADERBOARD.md").read_text()
    assert "`reference`" in board and "`identity`" in board and "fast_1000" in board
    assert data["pool"]["workers"] == 2 and data["pool"]["peak_rss_mb"]


def test_identity_improves_nothing_and_reference_is_always_correct(bench_result):
    _, _, _, data = bench_result
    identity = _agent(data, "identity")["summary"]
    assert identity["improved"] == 0.0 and identity["mean_reward"] == 0.0
    assert identity["verdicts"] == {"unchanged": len(TASKS)}
    reference = _agent(data, "reference")["summary"]
    assert reference["correct"] == 1.0 and reference["improved"] == 1.0
    assert reference["fast_p"]["1.5"] == 1.0
    assert reference["geomean_speedup"] > 1.5


def test_regenerate_is_a_pure_function_of_the_results(bench_result):
    out, _, _, _ = bench_result
    page = (out / "LEADERBOARD.md").read_text()
    rc = main(
        ["bench", "--regenerate", "--out", str(out / "results"), "--leaderboard", str(out / "LEADERBOARD.md")]
    )
    assert rc == 0
    assert (out / "LEADERBOARD.md").read_text() == page


def test_validate_honest_submission_reproduces_identical_numbers(bench_result, capsys):
    out, _, _, data = bench_result
    sub = out / "results" / _agent(data, "reference")["submission"]
    report = out / "validate.json"
    rc = main(["validate", str(sub), "--workers", "0", "--json", str(report)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "OK" in text
    got = json.loads(report.read_text())
    assert got["ok"] and got["settings"] == {"scale": "small", "cost": "work"}
    assert got["comparable"] == comparable(_agent(data, "reference")["summary"])
    bench_records = {r["task_id"]: r for r in _agent(data, "reference")["records"]}
    for r in got["records"]:
        assert r["speedup"] == bench_records[r["task_id"]]["speedup"]
        assert r["reward"] == bench_records[r["task_id"]]["reward"]


def _tampered(bench_result, tmp_path):
    out, _, _, data = bench_result
    sub = out / "results" / _agent(data, "reference")["submission"]
    lines = sub.read_text().splitlines()
    first = json.loads(lines[0])
    first["speedup"] *= 40  # a claimed tier that does not reproduce
    second = json.loads(lines[1])
    second["task_id"] = "shop/orders_on_a_dya"  # unknown task
    bad = [json.dumps(first), json.dumps(second), lines[2][:-7], lines[2], lines[2], "[1, 2]"]
    path = tmp_path / "tampered.jsonl"
    path.write_text("\n".join(bad) + "\n")
    return path


def test_validate_reports_tampered_lines_precisely(bench_result, tmp_path, capsys):
    path = _tampered(bench_result, tmp_path)
    report = tmp_path / "report.json"
    rc = main(["validate", str(path), "--workers", "0", "--json", str(report)])
    text = capsys.readouterr().out
    assert rc == 1
    issues = {(i["line"], i["kind"]) for i in json.loads(report.read_text())["issues"]}
    assert issues == {
        (1, "tier_mismatch"),
        (2, "unknown_task"),
        (3, "malformed_json"),
        (5, "duplicate_task"),
        (6, "not_an_object"),
    }
    assert f"line 1 ({TASKS[0]}): tier_mismatch" in text
    assert "did you mean 'shop/orders_on_a_day'?" in text
    assert "line 3: malformed_json" in text
    assert f"line 5 ({TASKS[2]}): duplicate_task: {TASKS[2]} is already given on line 4" in text


def test_bench_scores_submissions_and_flags_those_that_do_not_validate(bench_result, tmp_path, capsys):
    out, _, _, data = bench_result
    honest = out / "results" / _agent(data, "reference")["submission"]
    tampered = _tampered(bench_result, tmp_path)
    rc = main([
        "bench", "--submission", str(honest), "--submission", str(tampered), "--suite", "shop", "--scale", "small",
        *TASK_ARGS, "--workers", "0", "--name", "subs", "--no-plots",
        "--out", str(tmp_path / "results"), "--leaderboard", str(tmp_path / "LB.md"),
    ])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 1, text
    result = json.loads((tmp_path / "results" / "subs.json").read_text())
    first, second = result["agents"]
    assert first["validated"] and first["summary"]["correct"] == 1.0
    assert not second["validated"]
    assert (
        second["summary"]["verdicts"].get("missing") == 1
    )  # its only action for orders_on_a_day was dropped
    board = (tmp_path / "LB.md").read_text()
    assert "Not accepted" in board and "tampered" in board


def test_validate_missing_file_and_missing_agent_fail_cleanly(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["bench", "--agent", "nosuch", "--suite", "shop", "--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "no such submission file" in captured.err and "unknown agent 'nosuch'" in captured.err
    assert captured.out == ""  # errors go to stderr, so a script reading stdout never parses them


def test_agent_failures_become_records_not_crashes(shop_suite):
    spec = AgentSpec("heuristic", {"no_such_argument": 1}, label="broken")
    result = run_bench(
        BenchConfig(agents=[spec], suites=["shop"], scale="small", task_ids=TASKS[:1], workers=0)
    )
    entry = result.agent("broken")
    assert entry.summary["verdicts"] == {"agent_error": 1}
    assert entry.records[0].error


def test_parse_submission_never_raises_on_garbage():
    lines = ["", "null", "42", '"text"', "{", '{"task_id": 3}', '{"task_id": "shop/a", "action": 5}',
             '{"task_id": "shop/a", "action": "SELECT 1", "verdict": "improvd", "speedup": -2, "reward": "x"}',
             "\x00\xff", "[" * 100_000]  # fmt: skip
    sub = parse_submission(lines, ["shop/a"])
    kinds = [(i.line, i.kind) for i in sub.issues]
    assert (2, "not_an_object") in kinds and (5, "malformed_json") in kinds
    assert (6, "missing_task_id") in kinds and (7, "missing_action") in kinds
    assert [k for line, k in kinds if line == 8] == ["bad_claim"] * 3
    assert any("did you mean 'improved'" in i.message for i in sub.issues)
    assert [e.line for e in sub.entries] == [8]


def _record(**kw):
    base = dict(agent="a", task_id="shop/a", suite="shop", schema="shop", patterns=[], action="SELECT 1",
                verdict="improved", correct=True, reward=0.6, speedup=5.0, cost_mode="work",
                reward_terms={"tier": 0.6, "readability": 0.0, "indexes": 0.0})  # fmt: skip
    base.update(kw)
    base["verdict"] = parse_outcome(base["verdict"])  # a record is typed: verdict and cost mode are enums
    base["cost_mode"] = CostMode(base["cost_mode"])
    return StepRecord(**base)


def test_check_claims_work_and_wall_modes():
    entry = Entry(1, "shop/a", "SELECT 1", {"verdict": "improved", "speedup": 5.0, "reward": 0.6})
    assert check_claims(entry, _record()) == []
    # same tier, different number: deterministic work mode still flags it
    near = Entry(1, "shop/a", "SELECT 1", {"speedup": 2500.0})
    assert [i.kind for i in check_claims(near, _record(speedup=2000.0))] == ["speedup_mismatch"]
    off = Entry(1, "shop/a", "SELECT 1", {"speedup": 5.5})
    assert [i.kind for i in check_claims(off, _record())] == ["tier_mismatch"]
    wrong = _record(verdict="wrong_result", correct=False, reward=-1.0, speedup=None)
    assert [i.kind for i in check_claims(entry, wrong)] == ["verdict_mismatch"]
    # wall mode: a claimed tier inside the re-run's interval reproduces
    wall = _record(cost_mode="wall", speedup=4.0, wall={"lower": 4.0, "upper": 7.0, "point": 5.5, "pairs": 9})
    assert check_claims(Entry(1, "shop/a", "x", {"speedup": 6.0}), wall) == []
    assert [i.kind for i in check_claims(Entry(1, "shop/a", "x", {"speedup": 60.0}), wall)] == [
        "tier_mismatch"
    ]


def test_metrics_fast_p_and_geomean():
    recs = [_record(speedup=2.0), _record(speedup=20.0), _record(verdict="unchanged", speedup=None, reward=0.0),
            _record(verdict="wrong_result", correct=False, speedup=None, reward=-1.0)]  # fmt: skip
    s = summarize(recs)
    assert s["correct"] == 0.75 and s["improved"] == 0.5
    assert math.isclose(s["geomean_speedup"], (2.0 * 20.0 * 1.0) ** (1 / 3), rel_tol=1e-6)
    assert fast_p(recs) == {"1.5": 0.5, "2": 0.5, "5": 0.25, "10": 0.25, "50": 0.0, "1000": 0.0}
    assert s["speedups"]["shares"]["2-10x"] == 0.5 and s["speedups"]["target"]["2-10x"] == 0.5


def test_config_errors():
    with pytest.raises(UnknownNameError):
        parse_agent("oracle")
    with pytest.raises(ConfigError):
        parse_agent("teacher")
    with pytest.raises(ConfigError):
        run_bench(BenchConfig(suites=["shop"]))
    assert "No results yet" in render_leaderboard([])


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_the_reference_agent_knows_the_tasks_ported_to_an_engine(engine):
    """On another engine the observation shows the ported query; the oracle answers with the
    ported reference (before, it answered the query itself: every reference row was unchanged)."""
    from quill_agents.baselines import ReferenceAgent
    from quill_env.backends import get_backend
    from quill_env.dialect import SUITE_DIALECT
    from quill_env.tasks import get_suite

    suite = get_suite("shop")
    port = get_backend(engine).port
    agent = ReferenceAgent(suite.tasks, engine=engine)
    for task in suite.tasks[:5]:
        shown = port(task.query, SUITE_DIALECT)
        assert agent.act({"query": shown}) == port(task.reference, SUITE_DIALECT)
