import fnmatch
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import sqlglot
from sqlglot import exp

from quill_agents.export import (
    ExportConfig,
    ObservationBuilder,
    export,
    load_records,
    preference_pairs,
    push_to_hub,
    sft_row,
)
from quill_agents.generate import GenerateConfig, ReferenceProposer, Steering, generate
from quill_agents.store import DRAWS_FILE, RECORDS_FILE, DataRecord, read_jsonl, record_key
from quill_cli import main
from quill_env.errors import StoreError
from quill_env.evaluator import TaskRunner
from quill_env.measure import CostMode
from quill_env.reward import Verdict
from quill_env.tasks import Task

ARGS = [
    "generate",
    "--teacher",
    "heuristic",
    "--target",
    "12",
    "--suites",
    "shop,social",
    "--scale",
    "small",
    "--seed",
    "7",
]


def keys_of(path) -> list[str]:
    return [record_key(r) for r in read_jsonl(path / RECORDS_FILE)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, shop_suite):
    out = tmp_path_factory.mktemp("gen") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def test_generate_stores_verified_unique_records(run_dir):
    records = load_records(run_dir)
    assert len(records) == 12
    assert all(r["verdict"] == "improved" and r["reward"] >= 0.25 for r in records)
    assert all(r["speedup"] >= 1.5 and r["speedup_raw"] >= 1.0 for r in records)
    keys = [record_key(r) for r in records]
    assert len(set(keys)) == len(keys)
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert r["suite"] in ("shop", "social") and r["scale"] == "small"
        assert r["engine"].startswith("SQLite") and r["quill_version"] and r["suite_hash"]
        assert r["family"] and r["patterns"] and r["reward_terms"]["tier"] > 0
        assert r["baseline_cost"] > r["candidate_cost"] > 0
        assert r["proposer"] in ("heuristic", "reference") and r["slow_source"] == "querygen"
        assert isinstance(r["rejected"], list) and isinstance(r["iteration"], int)
    draws = read_jsonl(run_dir / DRAWS_FILE)
    assert [d["draw"] for d in draws] == list(range(len(draws)))
    assert sum(d["kept"] for d in draws) == 12


def test_stored_scoring_fields_are_the_results_own(run_dir, shop_suite):
    """A record's scoring fields are what scoring its action gives, exactly (nothing rounded or
    copied by hand), and the JSON form reads back as the typed record it was written from."""
    records = [r for r in load_records(run_dir) if r["suite"] == "shop"]
    assert records
    rec = records[0]
    typed = DataRecord.from_dict(rec)
    assert typed.verdict is Verdict.IMPROVED and typed.cost_mode is CostMode.WORK
    assert typed.to_dict() == {k: rec[k] for k in typed.to_dict()}
    task = Task(
        id="shop/stored",
        query=rec["query"],
        suite="shop",
        schema=rec["schema"],
        output_columns=tuple(rec["output_columns"]) if rec["output_columns"] else None,
    )
    runner = TaskRunner.from_suite(shop_suite, task, rec["scale"])
    try:
        result = runner.evaluate(rec["action"])
    finally:
        runner.close()
    assert result.fields_for(DataRecord) == {
        name: getattr(typed, name) for name in result.fields_for(DataRecord)
    }
    with pytest.raises(TypeError):
        DataRecord.from_result(result, id="x")  # the origin fields are not optional


def test_rerunning_a_finished_run_adds_nothing(run_dir):
    before = (run_dir / RECORDS_FILE).read_bytes()
    assert main([*ARGS, "--out", str(run_dir)]) == 0
    assert (run_dir / RECORDS_FILE).read_bytes() == before


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path, run_dir):
    out = tmp_path / "killed"
    records = out / RECORDS_FILE
    proc = subprocess.Popen(
        [sys.executable, "-m", "quill_cli", *ARGS, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if records.exists() and records.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    n_killed = len(read_jsonl(records))
    assert 4 <= n_killed < 12
    # and as if the kill had landed in the middle of a write
    with open(records, "ab") as fh:
        fh.write(b'{"id": "torn", "suite": "sh')
    with open(out / DRAWS_FILE, "ab") as fh:
        fh.write(b'{"draw": 99')
    assert main([*ARGS, "--out", str(out)]) == 0
    keys = keys_of(out)
    assert len(keys) == len(set(keys)) == 12
    assert set(keys) == set(keys_of(run_dir))
    assert keys[:n_killed] == keys_of(run_dir)[:n_killed]


def without_clocks(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("timestamp", "seconds")} for r in records]


def test_scoring_in_workers_stores_the_same_records(tmp_path, run_dir):
    out = tmp_path / "workers"
    assert main([*ARGS, "--workers", "2", "--out", str(out)]) == 0
    assert without_clocks(read_jsonl(out / RECORDS_FILE)) == without_clocks(
        read_jsonl(run_dir / RECORDS_FILE)
    )
    assert without_clocks(read_jsonl(out / DRAWS_FILE)) == without_clocks(read_jsonl(run_dir / DRAWS_FILE))


def test_a_killed_scoring_worker_loses_and_duplicates_nothing(tmp_path, run_dir):
    """SIGKILL one of the loop's scoring workers mid-run: the run stops, its rerun completes it."""
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "worker-killed"
    records = out / RECORDS_FILE
    proc = subprocess.Popen(
        [sys.executable, "-m", "quill_cli", *ARGS, "--workers", "2", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    deadline = time.monotonic() + 120
    victim = None
    while proc.poll() is None and time.monotonic() < deadline and victim is None:
        workers = [
            c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())
        ]  # not multiprocessing's resource tracker
        if records.exists() and records.read_bytes().count(b"\n") >= 2 and workers:
            victim = workers[0]
        time.sleep(0.002)
    assert victim is not None, "the run ended before a worker could be killed"
    victim.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "a scoring worker died" in err and "run the same command again" in err
    n_before = len(read_jsonl(records))
    assert main([*ARGS, "--workers", "2", "--out", str(out)]) == 0
    keys = keys_of(out)
    assert len(keys) == len(set(keys)) == 12
    assert keys == keys_of(run_dir)
    assert n_before <= 12


def test_any_callable_is_an_optimizer(tmp_path, shop_suite):
    cfg = GenerateConfig(out=str(tmp_path / "id"), target=3, suites=("shop",), scales=("small",), max_draws=4)
    stats = generate(cfg, propose=lambda obs, k: [obs["query"].split("\n--")[0]])
    assert stats.kept == 0 and stats.draws == 4 and stats.candidates > 0
    assert len(read_jsonl(tmp_path / "id" / DRAWS_FILE)) == 4
    assert not read_jsonl(tmp_path / "id" / RECORDS_FILE)


def test_reference_fallback_keeps_reference_and_records_rejections(tmp_path, shop_suite):
    cfg = GenerateConfig(out=str(tmp_path / "ref"), target=6, suites=("shop",), scales=("small",), seed=1)
    stats = generate(cfg, propose=ReferenceProposer())
    records = load_records(tmp_path / "ref")
    assert stats.kept == len(records) == 6 and stats.acceptance_rate < 1.0
    assert {r["proposer"] for r in records} == {"reference"}
    verdicts = Counter(x["verdict"] for r in records for x in r["rejected"])
    assert verdicts and set(verdicts) <= {"unchanged", "no_gain", "wrong_result", "timeout", "improved"}


def test_steering_prefers_families_that_fill_the_missing_bucket():
    s = Steering({"2-10x": 0.5, "10-100x": 0.3, "100x+": 0.2})
    for fam, speed in [("a", 3.0)] * 6 + [("b", 500.0)]:
        s.observe_record({"suite": "shop", "family": fam, "patterns": [fam], "speedup": speed})
    w = s.weights(["shop"], ["a", "b"])
    assert w[1] > 2 * w[0]
    picks = Counter(s.choose(np.random.default_rng(i), ["shop"], ["a", "b"])[1] for i in range(200))
    assert picks["b"] > picks["a"]


# --- export --------------------------------------------------------------------------------


def _check_messages(messages, roles):
    assert [m["role"] for m in messages] == roles
    assert all(
        set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"] for m in messages
    )


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    # Guarantee DPO material whatever the proposer offered: the slow query itself is always a
    # correct, zero-reward loser, and a near-tie must never make a pair.
    store = tmp_path_factory.mktemp("store") / RECORDS_FILE
    with open(store, "w") as fh:
        for r in load_records(run_dir):
            r = dict(r)
            r["rejected"] = [
                *r["rejected"],
                {"action": r["query"], "verdict": "unchanged", "reward": 0.0, "speedup": None, "error": ""},
                {"action": r["query"] + " ", "verdict": "improved", "reward": r["reward"] - 0.05},
            ]
            fh.write(json.dumps(r) + "\n")
    out = tmp_path_factory.mktemp("export")
    report = export(store, out, ExportConfig(multiplier=4, hf=False))
    return store, out, report


def test_sft_rows_are_trl_conversational_prompt_completion(exported):
    _, out, report = exported
    rows = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    assert len(rows) == report.sft_rows == 12 + report.augmented_rows
    assert report.augmented_rows >= 3 * 12 - report.augment_failures and report.augmented_rows >= 30
    for row in rows:
        assert set(row) == {"prompt", "completion"}
        _check_messages(row["prompt"], ["system", "user"])
        _check_messages(row["completion"], ["assistant"])
        assert row["completion"][0]["content"].startswith("```sql\n")
        assert "Slow query:" in row["prompt"][1]["content"]
    card = (out / "README.md").read_text()
    assert (
        "Speedup mix vs target" in card and "Schema coverage" in card and "| verified records | 12 |" in card
    )


def test_dpo_rows_pair_answers_of_one_task_by_reward_gap(exported):
    store, out, report = exported
    rows = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    assert rows and len(rows) == report.dpo_rows
    for row in rows:
        assert set(row) == {"prompt", "chosen", "rejected"}
        _check_messages(row["prompt"], ["system", "user"])
        _check_messages(row["chosen"], ["assistant"])
        _check_messages(row["rejected"], ["assistant"])
        assert row["chosen"] != row["rejected"]
    records = load_records(store)
    pairs = preference_pairs(records, min_gap=0.1)
    assert pairs and all(gap >= 0.1 for *_, gap in pairs)
    assert not [p for p in pairs if p[2] == p[0]["query"] + " "]  # the 0.05 near-tie is never a pair
    # every pair's prompt is the chosen record's slow query
    original = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    queries = {r["query"] for r in records}
    shown = {
        re.search(r"Slow query:\n```sql\n(.*?)\n```", r["prompt"][1]["content"], re.S).group(1)
        for r in original
    }
    assert queries & shown


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="datasets is not installed")
def test_exports_load_as_hf_datasets(exported):
    import datasets

    _, out, _ = exported
    for name, columns in (("sft", {"prompt", "completion"}), ("dpo", {"prompt", "chosen", "rejected"})):
        rows = [json.loads(x) for x in (out / f"{name}.jsonl").read_text().splitlines()]
        ds = datasets.Dataset.from_list(rows)
        assert set(ds.column_names) == columns and len(ds) == len(rows)


def test_export_folder_loads_as_named_configs_from_its_card(exported, tmp_path, monkeypatch):
    """``datasets.load_dataset(folder, name)`` reads the card's front matter: one table per file."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, out, report = exported
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n") and "config_name: dpo" in card
    for name, columns, rows in (
        ("sft", {"prompt", "completion"}, report.sft_rows),
        ("dpo", {"prompt", "chosen", "rejected"}, report.dpo_rows),
    ):
        table = datasets.load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "cache"))
        assert set(table.column_names) == columns and len(table) == rows > 0


class FakeHub:
    """A stand-in for ``huggingface_hub.HfApi``: records the calls, uploads nothing."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return type("Commit", (), {"commit_url": f"https://hub.test/datasets/{kwargs['repo_id']}/commit/1"})()


def test_quill_export_push_to_hub_uploads_the_card_and_files_only(exported, tmp_path, monkeypatch, capsys):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(FakeHub, "calls", [])
    store, _, _ = exported
    out = tmp_path / "export"
    argv = [
        "export",
        str(store),
        "--out",
        str(out),
        "--multiplier",
        "1",
        "--push-to-hub",
        "me/quill-sql",
        "--private",
    ]
    assert main(argv) == 0
    assert "https://hub.test/datasets/me/quill-sql/commit/1" in capsys.readouterr().out
    (create, repo, created), (upload, repo2, uploaded) = FakeHub.calls
    assert (create, repo, upload, repo2) == ("create_repo", "me/quill-sql", "upload_folder", "me/quill-sql")
    assert created["repo_type"] == uploaded["repo_type"] == "dataset" and created["private"] is True
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    sent = {f for f in files if any(fnmatch.fnmatch(f, pat) for pat in uploaded["allow_patterns"])}
    assert {"README.md", "sft.jsonl", "dpo.jsonl", "export.json"} <= sent
    assert not any(f.startswith("hf/") for f in sent) and any(f.startswith("hf/") for f in files)


class DownHub(FakeHub):
    def create_repo(self, repo_id, **kwargs):
        raise ConnectionError("the Hub cannot be reached")


def test_a_failed_push_keeps_the_export_and_says_so(exported, tmp_path, monkeypatch, capsys):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub, "HfApi", DownHub)
    store, _, _ = exported
    out = tmp_path / "export"
    assert main(["export", str(store), "--out", str(out), "--multiplier", "1", "--push-to-hub", "me/x"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "pushing it to me/x failed: the Hub cannot be reached" in err and "Traceback" not in err
    assert (out / "sft.jsonl").is_file() and (out / "README.md").is_file()


def test_push_to_hub_refuses_a_folder_that_is_not_an_export(tmp_path):
    with pytest.raises(StoreError, match="not a quill export"):
        push_to_hub(tmp_path, "me/x", api=FakeHub())


def test_export_summary_names_the_source_schemas_for_quill_train(exported):
    _, out, report = exported
    summary = json.loads((out / "export.json").read_text())
    assert (
        set(summary["schemas"]) <= {"shop", "social"} and sum(summary["schemas"].values()) == report.records
    )
    assert summary["held_out_schemas"] == []
    assert "held-out test schemas in this data: none" in (out / "README.md").read_text()


def test_augmented_example_is_renamed_and_still_verifies(run_dir):
    records = load_records(run_dir)
    rec = next(r for r in records if r["suite"] == "shop")
    builder = ObservationBuilder(records, seed=0)
    try:
        obs, task, mapping = builder.renamed(rec, 1)
        schema = builder.schema("shop", rec["scale"], 1)
        old_tables = {"users", "orders"}
        new_tables = {mapping.table(t) for t in old_tables}
        assert not new_tables & old_tables
        for sql in (task.query, *task.reference.split(";")):
            tree = sqlglot.parse_one(sql, read="sqlite")
            tables = {t.name.lower() for t in tree.find_all(exp.Table)}
            assert tables and tables <= new_tables
        assert "CREATE TABLE users" not in obs["schema"] and all(
            f"CREATE TABLE {t}" in obs["schema"] for t in new_tables
        )
        row = sft_row(obs, task.reference)
        assert task.query.strip() in row["prompt"][1]["content"]
        runner = TaskRunner.from_suite(schema.suite, task, rec["scale"])
        try:
            result = runner.evaluate(task.reference)
            original = runner.evaluate(task.query)
        finally:
            runner.close()
        assert result.verdict.value == "improved" and result.reward >= 0.25, result.error
        assert result.speedup == pytest.approx(rec["speedup"], rel=1e-6)  # same data, same work
        assert original.verdict.value == "unchanged"
    finally:
        builder.close()


# --- the teacher path (an OpenAI-compatible stub server) -----------------------------------


@pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="openai is not installed")
def test_generate_with_a_teacher_endpoint(tmp_path, shop_suite):
    pytest.importorskip("quill_agents.teacher")
    sys.path.insert(0, os.path.dirname(__file__))
    from openai_stub import OpenAIStub, Reply

    n = iter(range(10_000))

    def respond(body):
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if system.startswith("You write realistic SQL"):
            return Reply.sql(f"SELECT id, total, status FROM orders WHERE user_id = {next(n) % 900 + 1}")
        slow = re.search(r"Slow query:\n```sql\n(.*?)\n```", user, re.S).group(1)
        return Reply.sql(f"CREATE INDEX idx_orders_user_id ON orders(user_id);\n{slow}")

    out = tmp_path / "teacher"
    with OpenAIStub(model="stub-model", default=respond) as stub:
        code = main(
            ["generate", "--teacher", "openai", "--model", "stub-model", "--base-url", stub.base_url,
             "--suites", "shop", "--scale", "small", "--target", "3", "--k", "1", "--out", str(out)]
        )  # fmt: skip
    assert code == 0
    records = load_records(out)
    assert len(records) == 3
    assert {r["model"] for r in records} == {"stub-model"}
    assert {r["slow_source"] for r in records} == {"teacher:stub-model"}
    usage = Counter()
    for d in read_jsonl(out / DRAWS_FILE):
        usage.update(d.get("usage", {}))
    assert usage["prompt_tokens"] > 0 and usage["requests"] >= 6
