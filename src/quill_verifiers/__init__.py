"""Quill as a ``verifiers`` taskset: Prime Intellect's environments for prime-rl and ``vf-eval``.

A package of its own because verifiers finds a taskset by importing its id as a top-level
module; it sees :mod:`quill_env` only, as :mod:`quill_cli` does.

``verifiers`` 0.4 (``import verifiers.v1 as vf``) splits an environment into a *taskset* (the
rows, and how each rollout is scored) and an agent harness. This module is such a taskset: each
suite task becomes a :class:`QuillTask` whose prompt is the environment's observation and whose
one ``@vf.reward`` is Quill's reward of the model's final reply, scored by the same pipeline as
``env.step`` (:func:`quill_env.reward_fn`): the last fenced SQL block is the action, and the
task comes from the row, never from the reply. ``correct`` and ``speedup`` are recorded as
metrics beside it, and the verdict in ``trace.info["quill_verdict"]``.

Use it by its module name as the taskset id::

    vf-eval quill-verifiers --env.taskset.suites '["shop"]' ...

or in Python: ``quill_verifiers.load_environment(suites=["shop"], split="test")``
returns the ``vf.Env`` (verifiers' single-agent environment over this taskset).

Needs ``pip install "quill-sql[verifiers]"``; ``import quill_env`` never imports this package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from quill_env.backends import DEFAULT_ENGINE
from quill_env.errors import MissingExtraError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.prompt import SYSTEM_PROMPT, build_messages
from quill_env.reward_functions import RewardFunction, scorer
from quill_env.tasks import get_suite, list_suites

try:
    import verifiers.v1 as vf
except ImportError as err:  # pragma: no cover - exercised without the package
    raise MissingExtraError("verifiers", "verifiers") from err


TASKSET_ID = "quill-verifiers"
"""This taskset's verifiers id (verifiers imports it as the module ``quill_verifiers``)."""


class QuillTasksetConfig(vf.TasksetConfig):
    """Which Quill tasks the taskset yields, and how they are scored (``--env.taskset.*``)."""

    suites: list[str] | None = None
    """Suite names or directories (every shipped suite when unset)."""
    split: str = "train"
    """``train``, ``test`` or ``all``."""
    scale: str | None = None
    """Data scale of the task databases (each suite's default when unset)."""
    engine: str = DEFAULT_ENGINE
    """The engine the tasks run on (``sqlite`` or ``duckdb``)."""
    options: dict[str, Any] = {}
    """:class:`quill_env.EvalOptions` fields of the reward (``num_variants``, ``cost``, ...)."""
    task_ids: list[str] | None = None
    """Only these tasks (all of the split when unset)."""


class QuillData(vf.TaskData):
    """One task's row: the observation as the prompt, and what the reward needs to find the task."""

    task_id: str
    suites: list[str] | None = None
    scale: str | None = None
    engine: str = DEFAULT_ENGINE
    options: dict[str, Any] = {}


def _scorer(data: QuillData) -> RewardFunction:
    return scorer(data.suites, data.scale, data.options, engine=data.engine)


def score_reply(data: QuillData, reply: str) -> EvalResult:
    """The environment's result for ``reply`` on the row's task (its last fenced SQL block)."""
    (result,) = _scorer(data).results([reply], [data.task_id])
    return result


def validate_reference(data: QuillData) -> bool | None:
    """Whether the row's task has a reference rewrite that the environment verifies correct."""
    runner = _scorer(data).runner(data.task_id)
    if not runner.task.reference:
        return None
    return runner.evaluate(runner.task.reference).correct


class QuillTask(vf.Task[QuillData]):
    """A Quill task in verifiers: scored by the environment's verified, tiered reward."""

    @property
    def key(self) -> str:
        """The task id, which is durable (the content hash would change with the plan text)."""
        return self.data.task_id

    async def validate(self, runtime: object = None) -> bool | None:
        """Whether the task's reference rewrite is verified correct (``None``: it has none).

        The reference is looked up by task id here: it is never part of the row, which rides on
        every trace and may be visible to the agent.
        """
        return await asyncio.to_thread(validate_reference, self.data)

    @vf.reward(weight=1.0)
    async def quill(self, trace: vf.Trace) -> float:
        """Quill's reward of the final reply (run in a thread: scoring executes SQL)."""
        result = await asyncio.to_thread(score_reply, self.data, trace.last_reply)
        trace.record_metric("quill_correct", 1.0 if result.correct else 0.0)
        trace.record_metric("quill_speedup", float(result.speedup or 0.0))
        trace.info["quill_verdict"] = result.verdict.value
        return float(result.reward)


class QuillTaskset(vf.Taskset[QuillTask, QuillTasksetConfig]):
    """Quill's suite tasks, each prompted with its observation (schema, slow query, plan)."""

    def load(self) -> Iterator[QuillTask]:
        """One task per suite task of the configured split, in suite order."""
        config = self.config
        wanted = set(config.task_ids) if config.task_ids else None
        EvalOptions.from_kwargs(**config.options)  # refuse bad options before any rollout
        for name in config.suites or list_suites():
            suite = get_suite(name)
            for task in suite.split(config.split):
                if wanted is not None and task.id not in wanted:
                    continue
                runner = TaskRunner.from_suite(
                    suite, task, config.scale, EvalOptions(num_variants=0), engine=config.engine
                )
                try:
                    user = build_messages(runner.observation(), system=False)[0]["content"]
                finally:
                    runner.close()
                yield QuillTask(
                    QuillData(
                        id=task.id,
                        name=task.id,
                        prompt=user,
                        system_prompt=SYSTEM_PROMPT.format(max_indexes=3),
                        task_id=task.id,
                        suites=config.suites,
                        scale=config.scale,
                        engine=config.engine,
                        options=config.options,
                    ),
                    config.task,
                )


def load_environment(**config: Any) -> vf.Env:
    """The verifiers environment over :class:`QuillTaskset` (``config``: its fields).

    Example:
        >>> env = load_environment(suites=["shop"], split="test", scale="small")  # doctest: +SKIP
    """
    taskset = QuillTasksetConfig(id=TASKSET_ID, **config)
    return vf.load_environment(vf.SingleAgentEnvConfig(taskset=taskset))


__all__ = [
    "TASKSET_ID",
    "QuillData",
    "QuillTask",
    "QuillTaskset",
    "QuillTasksetConfig",
    "load_environment",
    "score_reply",
    "validate_reference",
]
