"""The ``tpch`` suite's tasks: qgen instances, validated by the environment, with verified references.

:func:`build_task` turns one :class:`~quill_env.tpch.qgen.Instance` into a :class:`Task` or a
reason to drop it:

1. the environment runs the original on the validation tier's main database, every variant and
   twin (``TaskRunner.baseline``); it must finish and return at least one row with a non-NULL
   value on the main database;
2. every candidate of :data:`~quill_env.tpch.references.REWRITES` for the template is evaluated by
   the environment; the best one that verifies (verdict ``improved``) and reaches the acceptance
   tier becomes the reference, with its measured speedup; when none does, the task ships with
   ``reference: None`` and a note saying what was tried and what each got.

``scripts/tpch_tasks.py`` writes the shipped ``envs/tpch/tasks.jsonl`` with a few instances per
template, and any number of instances for training into a suite directory of one's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from quill_env.errors import BaselineError
from quill_env.evaluator import EvalOptions, TaskRunner
from quill_env.reward import RewardConfig, Verdict
from quill_env.tasks import Suite, Task
from quill_env.tpch import qgen
from quill_env.tpch.references import REWRITES


@dataclass(frozen=True)
class Outcome:
    """What :func:`build_task` made of one instance.

    Args:
        instance: the qgen instance.
        task: the task, or ``None`` when the instance was dropped.
        why: the reason it was dropped (empty when kept).
        tried: per candidate reference, its verdict and speedup (``"name": "improved 13.29x"``).
    """

    instance: qgen.Instance
    task: Task | None
    why: str = ""
    tried: dict[str, str] | None = None


def _nonempty(rows: list[tuple]) -> bool:
    return any(v is not None for row in rows for v in row)


def build_task(
    suite: Suite,
    inst: qgen.Instance,
    scale: str = "small",
    references: bool = True,
    options: EvalOptions | None = None,
) -> Outcome:
    """Validate ``inst`` with the environment at ``scale`` and pick its reference.

    Args:
        suite: the ``tpch`` suite (its databases).
        inst: the instance.
        scale: the tier validated on (CI's tier, ``small``).
        references: try the candidate references (``False``: only validate the query).
        options: evaluator options (defaults: the environment's).

    Returns:
        The outcome: a task, or the reason the instance is dropped.
    """
    draft = Task(
        id=f"{suite.name}/{inst.name}", query=inst.sql, suite=suite.name, schema=suite.name,
        split=qgen.split_of(inst.template),
    )  # fmt: skip
    runner = TaskRunner.from_suite(suite, draft, scale, options)
    try:
        try:
            main = runner.baseline.main
        except BaselineError as err:
            return Outcome(inst, None, f"the original fails its baseline: {err}")
        if not _nonempty(main.rows):
            return Outcome(inst, None, f"the original returns no non-NULL row at {scale}")
        tried: dict[str, str] = {}
        best = None
        values = qgen.bindings(inst.template, inst.params)
        acceptance = RewardConfig().acceptance
        for rewrite in REWRITES[inst.template] if references else ():
            result = runner.evaluate(qgen.render(rewrite.action(inst.template), values))
            tried[rewrite.name] = f"{result.verdict.value} {float(result.speedup or 0):.2f}x"
            ok = result.verdict is Verdict.IMPROVED and result.reward_terms.get("tier", 0.0) >= acceptance
            if ok and (best is None or result.reward > best[1].reward):
                best = (rewrite, result)
    finally:
        runner.close()
    params = json.dumps({k: str(v) for k, v in inst.params.items()})
    notes = f"TPC-H Q{inst.template}, qgen parameters {params}"
    if best is None:
        why = "; ".join(f"{k}: {v}" for k, v in tried.items()) or "no known rewrite for this template"
        task = Task(
            id=draft.id, query=inst.sql, suite=suite.name, schema=suite.name, split=draft.split,
            notes=f"{notes}; no reference: none reached the acceptance tier on SQLite at {scale} ({why})",
        )  # fmt: skip
        return Outcome(inst, task, tried=tried)
    rewrite, result = best
    task = Task(
        id=draft.id, query=inst.sql, suite=suite.name, schema=suite.name, split=draft.split,
        reference=qgen.render(rewrite.action(inst.template), values), patterns=rewrite.patterns,
        reference_speedup={scale: round(float(result.speedup), 3)},
        notes=f"{notes}; reference: {rewrite.name}",
    )  # fmt: skip
    return Outcome(inst, task, tried=tried)
