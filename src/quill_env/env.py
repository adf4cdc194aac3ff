"""``SQLOptEnv``: the Gymnasium environment (registered as ``Quill-v1`` and friends).

The observation is a schema plus a slow query and its plan; the action is SQL text (optional
``CREATE INDEX`` statements and one rewritten query); the reward is the tiered, verified speedup
of :mod:`quill_env.reward`. Episodes are single-step unless ``max_attempts > 1``, in which case
each observation also carries the feedback of the previous attempt.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from quill_env.action_policy import MAX_ACTION_CHARS
from quill_env.backends import DEFAULT_ENGINE, get_backend, split_url
from quill_env.errors import ConfigError, EnvStateError, UnknownNameError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.prompt import format_feedback
from quill_env.reward import Verdict
from quill_env.runners import file_key, runner_cache, suite_runner_key
from quill_env.spaces import SQLText
from quill_env.tasks import Suite, Task, get_suite, list_suites

MAX_OBSERVATION_CHARS = 1_000_000


def _text(max_length: int) -> SQLText:
    return SQLText(max_length=max_length)


class SQLOptEnv(gym.Env[dict, str]):
    """SQL query optimization as a Gymnasium environment.

    Args:
        suite: a shipped suite name, a suite directory, or ``None`` for every shipped suite.
        split: ``train``, ``test`` or ``all``.
        scale: data scale tier (``small``, ``medium``, ``large``); the suite's default if None.
        database: a user's own SQLite or DuckDB file (or URL); then ``queries`` are the tasks.
        queries: slow queries on ``database``.
        task_ids: restrict the episode tasks to these ids.
        max_attempts: attempts per episode (``> 1`` gives multi-turn episodes with feedback).
        render_mode: ``None`` or ``"ansi"``.
        engine: the engine the suites run on (``sqlite``, the default, ``duckdb``, or
            ``postgres`` on the server ``QUILL_POSTGRES_URL`` names: the same rows, the tasks
            ported to its dialect, less those whose original does not run there, see
            :meth:`~quill_env.tasks.Suite.runs_on`); with ``database=`` (a file or a
            ``postgresql://`` URL) the database decides it.
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
        engine: str | None = None,
        **options: Any,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.options = _options(options)
        self.scale = scale
        self.database = database
        if database is not None:
            detected = split_url(database)[0]
            if engine is not None and get_backend(engine).name != detected:
                raise ConfigError(f"engine={engine!r} but {database} is a {detected} database")
            engine = detected
        self.engine = get_backend(engine or DEFAULT_ENGINE).name
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
                self.tasks += [t for t in s.split(split) if s.runs_on(t, self.engine)]
        if task_ids is not None:
            if isinstance(task_ids, str):
                task_ids = [task_ids]
            known = [t.id for t in self.tasks]
            wanted = set(task_ids)
            missing = wanted - set(known)
            if missing:
                raise UnknownNameError("task", sorted(missing)[0], known)
            self.tasks = [t for t in self.tasks if t.id in wanted]
        if not self.tasks:
            raise ConfigError(f"no tasks for suite={suite!r} split={split!r}")
        obs = {
            "schema": _text(MAX_OBSERVATION_CHARS),
            "query": _text(MAX_ACTION_CHARS),
            "plan": _text(MAX_OBSERVATION_CHARS),
            "engine": _text(64),
        }
        if max_attempts > 1:
            obs["feedback"] = _text(MAX_OBSERVATION_CHARS)
        self.observation_space = spaces.Dict(obs)
        self.action_space = _text(MAX_ACTION_CHARS)
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
        """The runner of a task (databases, variants, twins and baseline), from the shared cache.

        Runners live in the process-wide :func:`~quill_env.runners.runner_cache`, bounded and
        least recently used first out, which ``evaluate`` and the trainers share.
        """
        task = task if isinstance(task, Task) else self.find_task(task)
        options = self.options
        if self.database is not None:
            key = ("env-database", file_key(split_url(self.database)[1]), task.id, task.query, repr(options))
            return runner_cache().get(
                key, lambda: TaskRunner.for_database(self.database, task.query, options, task_id=task.id)
            )
        suite = self._suites[task.suite]
        key = suite_runner_key(suite, task, self.scale, options, self.engine)
        return runner_cache().get(
            key, lambda: TaskRunner.from_suite(suite, task, self.scale, options, engine=self.engine)
        )

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
        # the shared cache may have evicted (and closed) the runner since reset: look it up again
        self._runner = self.runner(self._runner.task)
        result = self._runner.evaluate(action)
        self._attempts += 1
        self._last = result
        terminated = result.verdict is Verdict.IMPROVED or self._attempts >= self.max_attempts
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
        """Forget the current episode (runners stay in the shared, bounded runner cache)."""
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


_ENV_PARAMETERS = [
    p for p in inspect.signature(SQLOptEnv.__init__).parameters if p not in ("self", "options")
]


def _options(options: dict[str, Any]) -> EvalOptions:
    """EvalOptions from the environment's extra keyword arguments (typos get a did-you-mean)."""
    unknown = sorted(set(options) - set(EvalOptions.__dataclass_fields__))
    if unknown:
        raise UnknownNameError("argument", unknown[0], [*EvalOptions.__dataclass_fields__, *_ENV_PARAMETERS])
    return EvalOptions.from_kwargs(**options)
