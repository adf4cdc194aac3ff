"""``SQLOptEnv``: the Gymnasium environment (registered as ``Quill-v0`` and friends).

The observation is a schema plus a slow query and its plan; the action is SQL text (optional
``CREATE INDEX`` statements and one rewritten query); the reward is the tiered, verified speedup
of :mod:`quill_env.reward`. Episodes are single-step unless ``max_attempts > 1``, in which case
each observation also carries the feedback of the previous attempt.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from quill_env.errors import ConfigError, EnvStateError, UnknownNameError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.policy import MAX_ACTION_CHARS
from quill_env.prompt import format_feedback
from quill_env.tasks import Suite, Task, get_suite, list_suites

SQL_CHARSET = frozenset(string.printable) | frozenset(chr(c) for c in range(0xA0, 0x250))
"""Characters the Text spaces admit: printable ASCII (SQL, newlines, tabs) and Latin letters."""

MAX_OBSERVATION_CHARS = 1_000_000


def _text(max_length: int) -> spaces.Text:
    return spaces.Text(max_length=max_length, min_length=0, charset=SQL_CHARSET)


class SQLOptEnv(gym.Env[dict, str]):
    """SQL query optimization as a Gymnasium environment.

    Args:
        suite: a shipped suite name, a suite directory, or ``None`` for every shipped suite.
        split: ``train``, ``test`` or ``all``.
        scale: data scale tier (``small``, ``medium``, ``large``); the suite's default if None.
        database: a user's own SQLite file; then ``queries`` are the tasks.
        queries: slow queries on ``database``.
        task_ids: restrict the episode tasks to these ids.
        max_attempts: attempts per episode (``> 1`` gives multi-turn episodes with feedback).
        render_mode: ``None`` or ``"ansi"``.
        **options: any :class:`~quill_env.evaluator.EvalOptions` field (``cost``,
            ``budget_factor``, ``num_variants``, ``reward`` ...).

    Raises:
        ConfigError: inconsistent arguments (e.g. ``queries`` without ``database``).
        UnknownNameError: an unknown suite, split, scale or option.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        suite: str | None = None,
        split: str = "train",
        scale: str | None = None,
        database: str | None = None,
        queries: Sequence[str] | None = None,
        task_ids: Sequence[str] | None = None,
        max_attempts: int = 1,
        render_mode: str | None = None,
        **options: Any,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.options = EvalOptions.from_kwargs(**options)
        self.scale = scale
        self.database = database
        self.max_attempts = max_attempts
        self.render_mode = render_mode
        self._suites: dict[str, Suite] = {}
        if database is not None:
            if not queries:
                raise ConfigError("pass queries=[...] with database=: the slow queries to optimize")
            if isinstance(queries, str):
                queries = [queries]
            self.tasks = [Task(id=f"user/q{i}", query=q) for i, q in enumerate(queries)]
        else:
            if queries:
                raise ConfigError("queries= needs database=: the database they run on")
            names = list_suites() if suite is None else [suite]
            self.tasks = []
            for name in names:
                s = get_suite(name)
                self._suites[s.name] = s
                self.tasks += s.split(split)
        if task_ids is not None:
            wanted = set(task_ids)
            self.tasks = [t for t in self.tasks if t.id in wanted]
            missing = wanted - {t.id for t in self.tasks}
            if missing:
                raise UnknownNameError("task", sorted(missing)[0], [t.id for t in self.tasks])
        if not self.tasks:
            raise ConfigError(f"no tasks for suite={suite!r} split={split!r}")
        obs = {
            "schema": _text(MAX_OBSERVATION_CHARS),
            "query": _text(MAX_ACTION_CHARS),
            "plan": _text(MAX_OBSERVATION_CHARS),
        }
        if max_attempts > 1:
            obs["feedback"] = _text(MAX_OBSERVATION_CHARS)
        self.observation_space = spaces.Dict(obs)
        self.action_space = _text(MAX_ACTION_CHARS)
        self._runners: dict[str, TaskRunner] = {}
        self._runner: TaskRunner | None = None
        self._attempts = 0
        self._done = True
        self._last: EvalResult | None = None

    # --- tasks -----------------------------------------------------------------------------

    def find_task(self, task_id: str) -> Task:
        """The task with ``task_id`` among this environment's tasks.

        Raises:
            UnknownNameError: no such task here (with a did-you-mean suggestion).
        """
        task = next((t for t in self.tasks if t.id == task_id), None)
        if task is None:
            raise UnknownNameError("task", str(task_id), [t.id for t in self.tasks])
        return task

    def runner(self, task: Task | str) -> TaskRunner:
        """The (cached) runner of a task: databases, variants and baseline."""
        task = task if isinstance(task, Task) else self.find_task(task)
        if task.id not in self._runners:
            if self.database is not None:
                self._runners[task.id] = TaskRunner.for_database(
                    self.database, task.query, self.options, task_id=task.id
                )
            else:
                self._runners[task.id] = TaskRunner.from_suite(
                    self._suites[task.suite], task, self.scale, self.options
                )
        return self._runners[task.id]

    @property
    def task(self) -> Task | None:
        """The task of the current episode."""
        return self._runner.task if self._runner else None

    # --- Gymnasium API ---------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start an episode on a random task (or ``options={"task_id": ...}``)."""
        super().reset(seed=seed)
        options = options or {}
        if "task_id" in options:
            task = self.find_task(options["task_id"])
        else:
            task = self.tasks[int(self.np_random.integers(len(self.tasks)))]
        self._runner = self.runner(task)
        _ = self._runner.baseline
        self._attempts = 0
        self._done = False
        self._last = None
        return self._observation(), self._reset_info()

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        """Score ``action``; agent mistakes become verdicts, never exceptions."""
        if self._runner is None or self._done:
            raise EnvStateError("call reset() before step() (the episode has ended)")
        result = self._runner.evaluate(action)
        self._attempts += 1
        self._last = result
        terminated = result.verdict.value == "improved" or self._attempts >= self.max_attempts
        self._done = terminated
        info = result.info
        info["attempt"] = self._attempts
        info["patterns"] = list(self._runner.task.patterns)
        return self._observation(), float(result.reward), terminated, False, info

    def render(self) -> str | None:
        """A text summary of the current episode (``render_mode="ansi"``)."""
        if self.render_mode != "ansi" or self._runner is None:
            return None
        text = f"task {self._runner.task.id}\n{self._runner.task.query}\n"
        if self._last is not None:
            text += f"-> {self._last.verdict.value}, reward {self._last.reward:+.3f}"
            if self._last.speedup:
                text += f", speedup {self._last.speedup:.2f}x"
            if self._last.error:
                text += f" ({self._last.error})"
        return text

    def close(self) -> None:
        """Release every database the environment opened."""
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._runner = None

    # --- helpers ---------------------------------------------------------------------------

    def _observation(self) -> dict[str, str]:
        assert self._runner is not None
        obs = self._runner.observation()
        if self.max_attempts > 1:
            last = self._last
            obs["feedback"] = (
                format_feedback({"verdict": last.verdict.value, "error": last.error, "speedup": last.speedup})
                if last is not None
                else ""
            )
        return obs

    def _reset_info(self) -> dict[str, Any]:
        runner = self._runner
        assert runner is not None
        return {
            "task_id": runner.task.id,
            "patterns": list(runner.task.patterns),
            "baseline_cost": runner.baseline.main.work,
            "engine": runner.backend.engine_version(),
            "cost_mode": self.options.cost.value,
        }
