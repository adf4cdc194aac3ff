"""Quill's tasks as verl RL rows, and its reward driven by the ``verl`` package itself.

The rows and ``quill tasks export --format verl`` are tested here. verl 0.9 needs
``transformers<5.11`` while the dev env has 5.24, so verl runs in its own interpreter: this one
when it has verl, else ``$QUILL_VERL_PYTHON`` (``.ci/run`` builds ``.venv-verl`` with Quill and
verl, and points the variable at it). The checks (``tests/verl_check.py``) read the exported rows
with verl's own ``RLHFDataset``, score completions with verl's own ``RewardLoopWorker`` and
compare every reward with the environment's.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.interpreters import interpreter, needs

from quill_agents.verl_data import verl_rows
from quill_cli.main import main
from quill_env import EvalOptions, TaskRunner
from quill_env.errors import UnknownNameError
from quill_env.prompt import build_messages

CHECK = Path(__file__).with_name("verl_check.py")
PYTHON = interpreter("QUILL_VERL_PYTHON", "import verl, quill_env")
SETUP = 'python -m venv .venv-verl && .venv-verl/bin/pip install torch==2.13.0 "verl==0.9.1" -e .'


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
    assert "--engine is for build and --format verl" in " ".join(capsys.readouterr().err.split())


@needs(PYTHON, "QUILL_VERL_PYTHON", SETUP)
def test_verl_reads_the_rows_and_scores_replies_with_the_environments_reward():
    assert PYTHON is not None
    out = subprocess.run(
        [PYTHON, str(CHECK), "sqlite"], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["rows"] == found["dataset"] == 6
    checked = found["checked"]
    assert found["scored_together"] == len(checked) >= 15
    assert len({c["task"] for c in checked}) >= 3
    verdicts = {(c["reply"], c["verdict"]) for c in checked}
    assert {v for r, v in verdicts if r == "reference"} <= {"improved", "no_gain"}
    assert all(c["reward"] >= 0 for c in checked if c["reply"] == "reference")
    assert {v for r, v in verdicts if r == "identity"} == {"unchanged"}
    assert all(c["reward"] <= 0 for c in checked if c["reply"] in ("garbage", "drop", "other_task"))
