"""Quill's reward as plain functions, for trainers that are not Gymnasium loops.

* :data:`reward_fn` (``quill_env.reward_fn(prompts, completions, task_ids)``) scores a batch of
  completions, each on the task named beside it, and returns the environment's rewards. It
  also takes TRL's reward-function keywords (the dataset's ``task_id`` column), so it can be
  passed to a TRL trainer as it is; :class:`quill_agents.trainers.EnvironmentReward` adds worker
  processes and verdict logging on top.
* :func:`compute_score` has the signature of a verl custom reward function
  (``compute_score(data_source, solution_str, ground_truth, extra_info)``); the task id travels
  in ``extra_info["task_id"]``.

Both score through the same pipeline as ``env.step``: the SQL of a completion is its last fenced
block (:func:`quill_env.prompt.extract_sql`), its runner comes from the process-wide
:func:`~quill_env.runners.runner_cache`, and the reward is exactly the environment's (tiered
verified speedup; -1.0 for a syntax error, and so on). Nothing a completion contains can change
which task it is scored on: the task id comes from the dataset, never from the completion.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping, Sequence
from typing import Any

from quill_env.backends import DEFAULT_ENGINE, get_backend
from quill_env.errors import ConfigError, UnknownNameError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.prompt import extract_sql
from quill_env.runners import runner_cache, suite_runner_key
from quill_env.tasks import Suite, get_suite


class TaskRunners:
    """Task ids resolved to their runners in the process-wide :func:`~quill_env.runners.runner_cache`.

    Holds no runner itself: runners are built on first use and kept, bounded and least recently
    used first out, by the shared cache, under the keys :meth:`quill_env.SQLOptEnv.runner` uses,
    so an environment, the leaderboard pool and reward functions in one process share them.

    Args:
        suites: suite names or directories; task ids ``<suite>/<name>`` are looked up in them
            (by the id's prefix among the shipped suites when ``None``).
        scale: data scale of the task databases (each suite's default when ``None``).
        options: :class:`EvalOptions` fields as a dict (``num_variants``, ``cost``, ...).
        engine: the backend the suites run on (``sqlite`` or ``duckdb``).

    Raises:
        ConfigError: bad ``options``.
        UnknownNameError: an unknown ``engine``.
    """

    def __init__(
        self,
        suites: Sequence[str] | None = None,
        scale: str | None = None,
        options: Mapping[str, Any] | None = None,
        engine: str = DEFAULT_ENGINE,
    ) -> None:
        self.suite_names = tuple(suites) if suites else None
        self.scale = scale
        self.options = EvalOptions.from_kwargs(**dict(options or {}))
        self.engine = get_backend(engine).name
        self._suites: dict[str, Suite] | None = None

    def suite_of(self, task_id: str) -> Suite:
        """The suite that holds ``task_id``.

        Raises:
            UnknownNameError: no suite of this cache holds it (with a did-you-mean suggestion).
        """
        prefix = task_id.split("/", 1)[0]
        if self.suite_names is None:
            return get_suite(prefix)
        if self._suites is None:
            self._suites = {s.name: s for s in map(get_suite, self.suite_names)}
        if prefix not in self._suites:
            raise UnknownNameError("suite of task", task_id, self._suites)
        return self._suites[prefix]

    def runner(self, task_id: str) -> TaskRunner:
        """The runner of ``task_id`` (built on first use, then taken from the shared cache)."""
        suite = self.suite_of(task_id)
        task = suite.task(task_id)
        key = suite_runner_key(suite, task, self.scale, self.options, self.engine)
        return runner_cache().get(
            key, lambda: TaskRunner.from_suite(suite, task, self.scale, self.options, engine=self.engine)
        )

    def evaluate(self, task_id: str, action: str) -> EvalResult:
        """Score ``action`` on ``task_id``."""
        return self.runner(task_id).evaluate(action)

    def score(self, task_ids: Sequence[str], actions: Sequence[str]) -> list[EvalResult]:
        """Evaluate ``actions[i]`` on ``task_ids[i]``, a task's actions together; in order.

        Raises:
            ConfigError: the two lists differ in length.
        """
        if len(task_ids) != len(actions):
            raise ConfigError(f"{len(task_ids)} task ids for {len(actions)} actions")
        out: list[EvalResult | None] = [None] * len(actions)
        for task_id, idx in task_groups(task_ids).items():
            for i in idx:
                out[i] = self.evaluate(task_id, actions[i])
        return out  # type: ignore[return-value]  # every slot is filled


def task_groups(task_ids: Sequence[str]) -> dict[str, list[int]]:
    """The positions of each task's entries, tasks in order of first appearance.

    >>> task_groups(["shop/a", "shop/b", "shop/a"])
    {'shop/a': [0, 2], 'shop/b': [1]}
    """
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, task_id in enumerate(task_ids):
        groups[str(task_id)].append(i)
    return dict(groups)


def completion_text(completion: Any) -> str:
    """The final answer of a completion: a string, or the last assistant message's content.

    >>> completion_text([{"role": "assistant", "content": "SELECT 1"}])
    'SELECT 1'
    """
    if isinstance(completion, str):
        return completion
    for message in reversed(list(completion)):
        if message.get("role") == "assistant" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


class RewardFunction(TaskRunners):
    """Scores completions on their tasks and returns the environment's rewards.

    It is a :class:`TaskRunners` (the same arguments: suites, scale, options, engine) that can be
    called as a reward function.

    Example:
        >>> from quill_env import reward_fn
        >>> task = get_suite("shop").split("train")[0]
        >>> reward_fn(None, [task.query, "SELECT"], [task.id, task.id])  # identity; syntax error
        [0.0, -1.0]
    """

    __name__ = "quill_reward"

    def results(self, completions: Sequence[Any], task_ids: Sequence[str]) -> list[EvalResult]:
        """The full :class:`EvalResult` of each completion on its task."""
        actions = [extract_sql(completion_text(c)) for c in completions]
        return self.score(task_ids, actions)

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] = (),
        task_ids: Sequence[str] | None = None,
        *,
        task_id: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """One reward per completion. ``task_ids`` (or TRL's ``task_id`` column) names each task.

        ``prompts`` and other keywords are accepted and ignored: what is scored is the task's own
        query and databases, whatever the prompt said.

        Raises:
            ConfigError: no task ids, or not one per completion.
            UnknownNameError: a task id that no suite holds.
        """
        ids = task_ids if task_ids is not None else task_id
        if ids is None:
            raise ConfigError("reward_fn needs the task id of every completion (task_ids=[...])")
        return [float(r.reward) for r in self.results(completions, ids)]


reward_fn = RewardFunction()
"""Quill's reward over the shipped suites, each at its default scale, work mode, SQLite."""


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """A verl custom reward function: the environment's reward of ``solution_str``.

    Point verl's ``reward.custom_reward_function.path`` (verl 0.9) at this module's file and its
    ``name`` at ``compute_score``; ``quill tasks export --format verl`` writes the rows. Each
    row's ``extra_info`` must hold ``task_id``; it may hold ``scale`` and ``engine`` too.
    ``data_source`` and ``ground_truth`` are not used: the truth is the task's own query, run on
    its databases.

    Returns:
        ``score`` (the reward verl trains on), and ``correct`` (1.0 or 0.0) and ``speedup``
        (0.0 when there is none), which verl logs beside it.

    Raises:
        ConfigError: ``extra_info`` has no ``task_id``.
        UnknownNameError: a task id that no suite holds, or an unknown engine.
    """
    info = dict(extra_info or {})
    task_id = info.get("task_id")
    if not task_id:
        raise ConfigError(
            f"compute_score needs extra_info['task_id'] (a Quill task id) for data source {data_source!r}"
        )
    score = scorer(scale=info.get("scale"), engine=info.get("engine") or DEFAULT_ENGINE)
    (result,) = score.results([solution_str], [str(task_id)])
    return {
        "score": float(result.reward),
        "correct": 1.0 if result.correct else 0.0,
        "speedup": float(result.speedup or 0.0),
    }


_SCORERS: dict[tuple, RewardFunction] = {(None, None, reward_fn.engine, "{}"): reward_fn}
"""The reward functions :func:`scorer` has made, by (suites, scale, engine, options)."""


def scorer(
    suites: Sequence[str] | None = None,
    scale: str | None = None,
    options: Mapping[str, Any] | None = None,
    engine: str = DEFAULT_ENGINE,
) -> RewardFunction:
    """The reward function of these settings, made once per process (the adapters' lookup).

    ``scorer()`` is :data:`reward_fn`. Every one of them takes its runners from the shared
    runner cache, so this only saves re-reading the suites.

    Raises:
        UnknownNameError: an unknown engine.
        ConfigError: bad ``options``.
    """
    opts = dict(options or {})
    names = tuple(suites) if suites else None
    key = (names, scale, get_backend(engine).name, json.dumps(opts, sort_keys=True))
    if key not in _SCORERS:
        _SCORERS[key] = RewardFunction(key[0], scale, opts, engine=key[2])
    return _SCORERS[key]


__all__ = [
    "RewardFunction",
    "TaskRunners",
    "completion_text",
    "compute_score",
    "reward_fn",
    "scorer",
    "task_groups",
]
