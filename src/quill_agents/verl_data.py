"""Quill's suite tasks as verl RL rows: the environment's prompts, and what its reward reads.

verl trains from parquet files (``data.train_files``) whose rows hold ``data_source``, ``prompt``
(chat messages), ``ability``, ``reward_model`` (a dict whose ``ground_truth`` verl's reward
manager passes on) and ``extra_info``. :func:`verl_rows` makes one such row per task of a split;
:func:`quill_env.reward_functions.compute_score`, set as verl's
``reward.custom_reward_function``, scores a completion on the task named in
``extra_info["task_id"]``::

    quill tasks export --format verl --split train --out train.parquet

A row never holds the task's reference rewrite: rows ride along with rollouts and logs. Its
``ground_truth`` is the task id, because the truth is the task's own query run on its databases.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from quill_env.backends import DEFAULT_ENGINE, get_backend
from quill_env.errors import MissingExtraError, UnknownNameError
from quill_env.evaluator import EvalOptions, TaskRunner
from quill_env.prompt import build_messages
from quill_env.tasks import Suite, get_suite, list_suites

DATA_SOURCE = "quill"
"""The ``data_source`` of every row (verl groups its validation metrics by it)."""

ABILITY = "sql_optimization"
"""The ``ability`` of every row."""


def verl_row(
    suite: Suite,
    task_id: str,
    index: int,
    *,
    scale: str | None = None,
    engine: str = DEFAULT_ENGINE,
    max_indexes: int = 3,
) -> dict[str, Any]:
    """The verl row of one task: its observation as chat messages, and its id in ``extra_info``.

    The prompt is the one ``Quill-v1`` gives (:func:`quill_env.prompt.build_messages` of the
    task's observation at ``scale`` on ``engine``).
    """
    task = suite.task(task_id)
    runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(num_variants=0), engine=engine)
    try:
        prompt = build_messages(runner.observation(), max_indexes=max_indexes)
    finally:
        runner.close()
    return {
        "data_source": DATA_SOURCE,
        "prompt": prompt,
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": task.id},
        "extra_info": {
            "task_id": task.id,
            "scale": scale or suite.default_scale,
            "engine": engine,
            "split": task.split,
            "index": index,
        },
    }


def verl_rows(
    suites: Sequence[str | Suite] | None = None,
    split: str = "train",
    scale: str | None = None,
    engine: str = DEFAULT_ENGINE,
    max_indexes: int = 3,
) -> Iterator[dict[str, Any]]:
    """One verl row per task of ``split``, suite by suite, numbered from 0 in ``extra_info["index"]``.

    Args:
        suites: suites, or their names or directories (every shipped suite when ``None``).
        split: ``train``, ``test`` or ``all``.
        scale: data scale of the prompts' plans, and of the reward (each suite's default when
            ``None``; the row records the scale it was made at).
        engine: the backend the tasks run on; the row records it for the reward.
        max_indexes: the index allowance written into the system prompt.

    Yields:
        Dicts with ``data_source``, ``prompt``, ``ability``, ``reward_model`` and ``extra_info``
        (``task_id``, ``scale``, ``engine``, ``split``, ``index``).

    Raises:
        UnknownNameError: an unknown suite, split, scale or engine.
    """
    engine = get_backend(engine).name
    jobs = []
    for suite in (s if isinstance(s, Suite) else get_suite(s) for s in suites or list_suites()):
        if scale is not None and scale not in suite.scales:
            raise UnknownNameError(f"scale of suite {suite.name!r}", scale, suite.scales)
        jobs += [(suite, task.id) for task in suite.split(split)]
    for index, (suite, task_id) in enumerate(jobs):
        yield verl_row(suite, task_id, index, scale=scale, engine=engine, max_indexes=max_indexes)


def write_parquet(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write verl rows to a parquet file (what ``data.train_files`` reads); returns how many.

    Raises:
        MissingExtraError: ``pyarrow`` is not installed (the ``datasets`` extra brings it).
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise MissingExtraError("pyarrow", "datasets") from err
    table = pa.Table.from_pylist(list(rows))
    pq.write_table(table, os.fspath(path))
    return table.num_rows


__all__ = ["ABILITY", "DATA_SOURCE", "verl_row", "verl_rows", "write_parquet"]
