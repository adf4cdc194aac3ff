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
returns the ``vf.Env``.

The taskset brings its own environment and harness, which verifiers picks up by the taskset id:

* :class:`QuillEnv` plays one episode per task. With ``max_attempts=1`` (the default) the agent
  answers once; with ``--env.max-attempts K`` an attempt that does not improve the query is
  answered with the environment's feedback (verdict, error, speedup: never the answer) and the
  agent tries again, up to K times, as in ``gym.make("Quill-v1", max_attempts=K)``. The reward is
  the episode's return in that env: the sum of its steps' rewards, so a failed try costs.
* :class:`QuillChatHarness` is a chat loop with no tools: the agent's only output is its reply.
  A code-executing harness (verifiers' default is ``bash``) on a local runtime is refused, since
  it could read Quill's suite files, reference rewrites included, on the machine it runs on.

Needs ``pip install "quill-sql[verifiers]"``; ``import quill_env`` never imports this package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from quill_env.backends import DEFAULT_ENGINE
from quill_env.env import SQLOptEnv
from quill_env.errors import ConfigError, MissingExtraError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.prompt import SYSTEM_PROMPT, build_messages, extract_sql
from quill_env.reward_functions import RewardFunction, scorer
from quill_env.tasks import get_suite, list_suites

try:
    import verifiers.v1 as vf
    from pydantic import Field
    from verifiers.v1.harnesses.null import NullHarness
    from verifiers.v1.runtimes import runtime_is_local
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
    suite: str = ""
    """The suite (name or directory) the task was loaded from."""
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
        """The return of the episode :class:`QuillEnv` played, else the final reply's reward.

        Under another environment (verifiers' ``single-agent`` or ``user-sim``) the final reply
        is scored on its own, in a thread: scoring executes SQL.
        """
        steps = (trace.info.get(EPISODE_KEY) or {}).get("steps") or []
        if not steps:  # another environment, or an episode that ended before any reply
            result = await asyncio.to_thread(score_reply, self.data, trace.last_reply)
            steps = [_step_record(float(result.reward), result.info)]
        last = steps[-1]
        trace.record_metric("quill_correct", 1.0 if last["correct"] else 0.0)
        trace.record_metric("quill_speedup", float(last["speedup"] or 0.0))
        trace.record_metric("quill_attempts", float(len(steps)))
        trace.info["quill_verdict"] = last["verdict"]
        return float(sum(step["reward"] for step in steps))


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
                        suite=name,
                        suites=config.suites,
                        scale=config.scale,
                        engine=config.engine,
                        options=config.options,
                    ),
                    config.task,
                )


EPISODE_KEY = "quill_episode"
"""Where :class:`QuillEnv` leaves the episode's steps on the trace, for the task's reward."""

RETRY_PROMPT = "Rewrite the query to run faster with exactly the same results, in one ```sql block."
"""What follows the feedback in the user turn after a failed attempt."""


def _step_record(reward: float, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "reward": reward,
        "verdict": info["verdict"],
        "correct": bool(info.get("correct")),
        "speedup": info.get("speedup"),
    }


@dataclass
class QuillEpisode:
    """One task's episode in ``Quill-v1`` (:class:`quill_env.SQLOptEnv`), step by step."""

    data: QuillData
    max_attempts: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    feedback: str = ""

    def __post_init__(self) -> None:
        data = self.data
        self._env = SQLOptEnv(
            suite=data.suite or None,
            split="all",
            scale=data.scale,
            engine=data.engine,
            task_ids=[data.task_id],
            max_attempts=self.max_attempts,
            **data.options,
        )
        self._env.reset(options={"task_id": data.task_id})

    def step(self, reply: str) -> None:
        """Score ``reply`` (its last fenced SQL block) as the next attempt."""
        obs, reward, terminated, truncated, info = self._env.step(extract_sql(reply))
        self.steps.append(_step_record(float(reward), info))
        self.done = bool(terminated or truncated)
        self.feedback = obs.get("feedback", "")
        if self.done:
            self._env.close()

    def summary(self) -> dict[str, Any]:
        """What the trace keeps: each step's reward, verdict, correctness and speedup."""
        return {"task_id": self.data.task_id, "max_attempts": self.max_attempts, "steps": self.steps}


class QuillChatHarness(NullHarness):
    """The taskset's harness: verifiers' tool-less chat loop (the agent can only reply)."""


class QuillEnvConfig(vf.EnvConfig):
    """:class:`QuillEnv`'s config (``--env.*``)."""

    agent: vf.AgentConfig = vf.AgentConfig(runtime=vf.SubprocessConfig())
    """The policy's seat. Its harness runs no code, so it runs as a local process by default."""
    max_attempts: int = Field(1, ge=1)
    """Attempts per episode; after each one that does not improve the query, the agent gets the
    environment's feedback and tries again."""


class QuillEnv(vf.Env[QuillEnvConfig]):
    """Quill's episodes in verifiers: one reply, or up to ``max_attempts`` with feedback."""

    def __init__(self, config: QuillEnvConfig) -> None:
        super().__init__(config)
        for name, spec in self._agent_specs.items():
            harness = self._harnesses[name]
            if harness.EXECUTES_CODE and runtime_is_local(spec.runtime):
                raise ConfigError(
                    f"the {harness.config.id!r} harness runs code on this machine, where the "
                    "agent could read Quill's suites and their reference rewrites: use the "
                    f"taskset's own harness (--env.{name}.harness.id {TASKSET_ID}) or a "
                    f"container runtime (--env.{name}.runtime.type docker)"
                )

    async def run(self, task: vf.Task, agents: vf.Agents) -> None:
        """Play the task: each reply is an attempt; feedback follows one that does not improve."""
        data = task.data
        episode = await asyncio.to_thread(QuillEpisode, data, self.config.max_attempts)
        async with agents.agent.interaction(task) as chat:
            segment = await chat.turn()
            while not segment.terminated:
                await asyncio.to_thread(episode.step, segment.last_reply)
                if episode.done:
                    break
                segment = await chat.turn(f"{episode.feedback}\n\n{RETRY_PROMPT}")
            chat.trace.info[EPISODE_KEY] = episode.summary()


def load_environment(max_attempts: int = 1, agent: dict[str, Any] | None = None, **config: Any) -> vf.Env:
    """:class:`QuillEnv` over :class:`QuillTaskset` (``config``: the taskset's fields).

    Args:
        max_attempts: attempts per episode (feedback after each failed one).
        agent: the agent seat's ``vf.AgentConfig`` fields (model, client, runtime, harness ...).
        **config: :class:`QuillTasksetConfig` fields (``suites``, ``split``, ``scale`` ...).

    Example:
        >>> env = load_environment(suites=["shop"], split="test", scale="small")  # doctest: +SKIP
    """
    taskset = QuillTasksetConfig(id=TASKSET_ID, **config)
    seat = {"agent": vf.AgentConfig(**{"runtime": vf.SubprocessConfig(), **agent})} if agent else {}
    return vf.load_environment(QuillEnvConfig(taskset=taskset, max_attempts=max_attempts, **seat))


__all__ = [
    "EPISODE_KEY",
    "TASKSET_ID",
    "QuillEpisode",
    "QuillChatHarness",
    "QuillData",
    "QuillEnv",
    "QuillEnvConfig",
    "QuillTask",
    "QuillTaskset",
    "QuillTasksetConfig",
    "load_environment",
    "score_reply",
    "validate_reference",
]
