"""Quill's tasks as verl RL rows, and ``quill tasks export --format verl``."""

from __future__ import annotations

import json

import pytest

from quill_agents.verl_data import verl_rows
from quill_cli.main import main
from quill_env import EvalOptions, TaskRunner
from quill_env.errors import UnknownNameError
from quill_env.prompt import build_messages


@pytest.fixture(scope="module")
def test_rows():
    return list(verl_rows(["shop"], "test", "small"))


def test_a_row_is_the_environments_prompt_and_the_task_id_without_the_answer(test_rows, shop_suite):
    tasks = shop_suite.split("test")
    assert [r["extra_info"]["task_id"] for r in test_rows] == [t.id for t in tasks]
    for index, (row, task) in enumerate(zip(test_rows, tasks, strict=True)):
        runner = TaskRunner.from_suite(shop_suite, task, "small", EvalOptions(num_variants=0))
        try:
            assert row["prompt"] == build_messages(runner.observation())
        finally:
            runner.close()
        assert row["extra_info"] == {
            "task_id": task.id,
            "scale": "small",
            "engine": "sqlite",
            "split": "test",
            "index": index,
        }
        assert row["data_source"] == "quill" and row["ability"] == "sql_optimization"
        assert row["reward_model"] == {"style": "rule", "ground_truth": task.id}
        assert task.reference and task.reference not in json.dumps(row)


def test_rows_refuse_an_unknown_suite_split_or_scale():
    with pytest.raises(UnknownNameError, match="shopp"):
        next(verl_rows(["shopp"]))
    with pytest.raises(UnknownNameError, match="dev"):
        next(verl_rows(["shop"], split="dev"))
    with pytest.raises(UnknownNameError, match="scale"):
        next(verl_rows(["shop"], scale="huge"))


def test_quill_tasks_export_writes_verl_parquet(test_rows, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "test.parquet"
    argv = ["tasks", "export", "--format", "verl", "--suite", "shop", "--split", "test", "--scale", "small"]
    assert main([*argv, "--out", str(out)]) == 0
    assert f"wrote {len(test_rows)} verl rows" in capsys.readouterr().out
    assert pq.read_table(out).to_pylist() == test_rows


def test_quill_tasks_export_verl_needs_out_and_engine_needs_verl(tmp_path, capsys):
    assert main(["tasks", "export", "--format", "verl", "--suite", "shop"]) == 2
    assert "needs --out FILE.parquet" in capsys.readouterr().err
    argv = ["tasks", "export", "--suite", "shop", "--engine", "duckdb", "--out", str(tmp_path / "t.jsonl")]
    assert main(argv) == 2
    assert "--engine is for --format verl" in " ".join(capsys.readouterr().err.split())
