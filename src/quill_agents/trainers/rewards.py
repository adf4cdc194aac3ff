"""The environment as a reward: TRL reward functions and a tool environment backed by Quill.

* :class:`EnvironmentReward` is a TRL reward function (``reward_funcs=[EnvironmentReward()]``)
  that scores each completion with :class:`quill_env.TaskRunner`: the SQL is extracted with
  :func:`quill_env.prompt.extract_sql`, batches are evaluated in parallel worker processes whose
  runners live in the process-wide :func:`quill_env.runners.runner_cache` (baselines and variant
  databases are built once per worker, and the cache is bounded), and the share of every verdict
  is logged through TRL's ``log_metric`` hook. The dataset carries a ``task_id`` column, which
  TRL passes to reward functions as a keyword.
* :class:`SQLToolEnvironment` is an ``environment_factory`` class for TRL's multi-turn GRPO: the
  model may look at the query plan of a candidate and dry-run it (verdict and error) before it
  submits its final rewrite, which :meth:`SQLToolEnvironment.get_reward` scores.
  :class:`AsyncSQLToolEnvironment` offers the same tools as coroutines whose work runs in an
  :class:`EnvironmentReward`'s worker processes, so the trainer's event loop never waits on one
  rollout's tool call, and an episode's reward is scored with every other pending episode's, in
  parallel.

Nothing here imports torch: worker processes import only ``quill_env``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from quill_env.action_policy import PolicyViolation
from quill_env.errors import ConfigError, EnvStateError, IndexBuildError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.prompt import extract_sql
from quill_env.ray_pool import RayPool
from quill_env.reward import Verdict
from quill_env.reward_functions import TaskRunners, completion_text, task_groups
from quill_env.workers import WorkerPool, make_pool

VERDICTS = tuple(v.value for v in Verdict)


# --- worker processes --------------------------------------------------------------------------

_WORKER_RUNNERS: TaskRunners | None = None


def _init_worker(suites: tuple[str, ...] | None, scale: str | None, options: dict[str, Any]) -> None:
    global _WORKER_RUNNERS
    _WORKER_RUNNERS = TaskRunners(suites, scale, options)


def _score_group(task_id: str, actions: list[str]) -> list[EvalResult]:
    """Score every action of one task in this worker (its runner is reused across calls)."""
    if _WORKER_RUNNERS is None:
        raise RuntimeError("worker not initialised (use EnvironmentReward, not _score_group directly)")
    return [_WORKER_RUNNERS.evaluate(task_id, a) for a in actions]


def _tool_output(task_id: str, tool: str, sql: str) -> str:
    """What tool ``tool`` answers for ``sql`` on ``task_id``, in this worker."""
    if _WORKER_RUNNERS is None:
        raise RuntimeError("worker not initialised (use EnvironmentReward, not _tool_output directly)")
    return TOOL_OUTPUTS[tool](_WORKER_RUNNERS.runner(task_id), sql)


class EnvironmentReward:
    """A TRL reward function that scores completions with the Quill environment.

    Each completion's SQL (the last fenced block, :func:`quill_env.prompt.extract_sql`) is
    evaluated on its task, named by the dataset's ``task_id`` column, and earns exactly the
    environment's reward (tiered verified speedup; -1.0 for a syntax error, and so on).

    Args:
        suites: suite names or directories that hold the task ids (shipped suites if None).
        scale: data scale of the task databases (each suite's default if None).
        eval_options: :class:`quill_env.EvalOptions` fields (e.g. ``{"num_variants": 4}``).
        workers: worker processes evaluating in parallel; 0 evaluates in this process.
        mp_context: multiprocessing start method of the workers (``spawn`` is safe with CUDA).
        history_size: how many scored completions :attr:`history` keeps.
        ray_address: score in ``workers`` Ray actors instead of local processes (``"local"``: a
            Ray instance started here; ``"auto"``, ``"host:port"``, ``"ray://host:port"``: that
            cluster), so that a multi-node run scores on every node.

    Example:
        >>> reward = EnvironmentReward(suites=["shop"], workers=0)  # doctest: +SKIP
        >>> GRPOTrainer(model, reward_funcs=[reward], train_dataset=rows_with_task_id)  # doctest: +SKIP
    """

    __name__ = "quill_env"

    def __init__(
        self,
        suites: Sequence[str] | None = None,
        scale: str | None = None,
        eval_options: Mapping[str, Any] | None = None,
        workers: int = 4,
        mp_context: str = "spawn",
        history_size: int = 100_000,
        ray_address: str | None = None,
    ) -> None:
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        if ray_address is not None and workers == 0:
            raise ConfigError("scoring on Ray needs workers >= 1 (the number of actors)")
        self.ray_address = ray_address
        self.suites = tuple(suites) if suites else None
        self.scale = scale
        self.eval_options = dict(eval_options or {})
        EvalOptions.from_kwargs(**self.eval_options)  # validate early, in the caller's process
        self.workers = workers
        self.mp_context = mp_context
        self.calls = 0
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history_size)
        """One dict per scored completion: call, task_id, action, reward, verdict, speedup, error."""
        self._pool: WorkerPool | RayPool | None = None
        self._local: TaskRunners | None = None
        self._episodes: dict[int, weakref.ref[AsyncSQLToolEnvironment]] = {}
        """The tool environments over this reward, in order of creation (dead ones drop out)."""

    # --- scoring ---------------------------------------------------------------------------

    def _executor(self) -> WorkerPool | RayPool:
        if self._pool is None:
            self._pool = make_pool(
                self.workers,
                _init_worker,
                (self.suites, self.scale, self.eval_options),
                ray=self.ray_address,
                context=self.mp_context,
            )
            weakref.finalize(self, self._pool.close, cancel=True)
        return self._pool

    def score(self, task_ids: Sequence[str], actions: Sequence[str]) -> list[EvalResult]:
        """Evaluate ``actions[i]`` on ``task_ids[i]``; one result per action, in order.

        Actions of the same task go to the same worker call, so its runner is built once.
        """
        if len(task_ids) != len(actions):
            raise ConfigError(f"{len(task_ids)} task ids for {len(actions)} actions")
        if self.workers == 0:
            return self._runners().score(task_ids, actions)
        groups = task_groups(task_ids)
        out: list[EvalResult | None] = [None] * len(actions)
        pool = self._executor()
        futures = {
            task_id: pool.submit(_score_group, task_id, [actions[i] for i in idx])
            for task_id, idx in groups.items()
        }
        for task_id, future in futures.items():
            for i, result in zip(groups[task_id], future.result()):
                out[i] = result
        return out  # type: ignore[return-value]  # every slot is filled

    def _runners(self) -> TaskRunners:
        """The runners of this process (``workers=0``)."""
        if self._local is None:
            self._local = TaskRunners(self.suites, self.scale, self.eval_options)
        return self._local

    def tool_output(self, task_id: str, tool: str, sql: str) -> Future[str]:
        """What a multi-turn tool (``query_plan`` or ``dry_run``) answers for ``sql`` on ``task_id``.

        The work runs in a worker process (with ``workers=0``, in this one, before returning).

        Raises:
            ConfigError: an unknown tool.
        """
        if tool not in TOOL_OUTPUTS:
            raise ConfigError(f"unknown tool {tool!r}; the tools are {sorted(TOOL_OUTPUTS)}")
        if self.workers > 0:
            return self._executor().submit(_tool_output, task_id, tool, sql)
        future: Future[str] = Future()
        try:
            future.set_result(TOOL_OUTPUTS[tool](self._runners().runner(task_id), sql))
        except Exception as err:  # delivered to the awaiting tool like a worker's failure
            future.set_exception(err)
        return future

    def _remember(
        self, task_ids: Sequence[str], actions: Sequence[str], results: Sequence[EvalResult]
    ) -> None:
        """Add scored completions to :attr:`history` (one call of the reward)."""
        self.calls += 1
        for tid, action, result in zip(task_ids, actions, results):
            self.history.append(
                {
                    "call": self.calls,
                    "task_id": tid,
                    "action": action,
                    "verdict": result.verdict.value,
                    "reward": float(result.reward),
                    "speedup": result.speedup,
                    "error": result.error,
                }
            )

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] = (),
        task_id: Sequence[str] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Score a batch of completions (TRL's reward-function protocol).

        Raises:
            ConfigError: the dataset has no ``task_id`` column.
        """
        if task_id is None:
            raise ConfigError(
                "EnvironmentReward needs a 'task_id' column in the training dataset "
                "(quill_agents.trainers.common.prompt_rows builds one)"
            )
        actions = [extract_sql(completion_text(c)) for c in completions]
        results = self.score(task_id, actions)
        self._remember(task_id, actions, results)
        log_verdicts(results, log_metric, log_extra)
        return [float(r.reward) for r in results]

    def close(self) -> None:
        """Stop the worker processes.

        The runners of this process stay in the shared runner cache (bounded), which an
        environment in this process may be using too.
        """
        if self._pool is not None:
            self._pool.close(cancel=True)
            self._pool = None
        self._local = None

    def __enter__(self) -> EnvironmentReward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None
        state["_local"] = None
        state["_episodes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._episodes = {}


def log_verdicts(
    results: Sequence[EvalResult],
    log_metric: Callable[[str, float], None] | None,
    log_extra: Callable[[str, list], None] | None = None,
) -> None:
    """Log the share of each verdict (``quill/verdict/<v>``) and of correct rewrites."""
    if not results:
        return
    if log_metric is not None:
        counts = collections.Counter(r.verdict.value for r in results)
        for verdict in VERDICTS:
            log_metric(f"quill/verdict/{verdict}", counts.get(verdict, 0) / len(results))
        correct = sum(r.verdict.correct for r in results)
        log_metric("quill/correct", correct / len(results))
    if log_extra is not None:
        log_extra("verdict", [r.verdict.value for r in results])


# --- multi-turn: the environment as tools ------------------------------------------------------

TOOL_INSTRUCTIONS = (
    "\n\nYou can call tools before answering: `query_plan` shows the engine's plan of a candidate "
    "(its CREATE INDEX statements are applied first), `dry_run` verifies a candidate and reports "
    "its verdict, speedup and error. When you are done, call `submit` with your final rewrite."
)


def plan_output(runner: TaskRunner, sql: str) -> str:
    """The ``query_plan`` tool's answer: the engine's plan of a candidate, or why it was refused."""
    try:
        action = runner.parse_action(extract_sql(sql))
    except PolicyViolation as violation:
        return f"refused ({violation.verdict.value}): {violation.message}"
    try:
        with runner.lock, runner.backend.scratch_indexes(action.indexes):
            return runner.backend.explain(action.query_sql) or "(empty plan)"
    except IndexBuildError as err:  # an index the engine cannot build: report it to the model
        return f"building the indexes failed: {err}"


def dry_run_output(runner: TaskRunner, sql: str) -> str:
    """The ``dry_run`` tool's answer: the verdict, the speedup when correct, and the error if any."""
    result = runner.evaluate(extract_sql(sql))
    text = f"verdict={result.verdict.value}"
    if result.speedup is not None:
        text += f"; speedup={result.speedup:.2f}x"
    if result.error:
        text += f"; error: {result.error}"
    return text


TOOL_OUTPUTS: dict[str, Callable[[TaskRunner, str], str]] = {
    "query_plan": plan_output,
    "dry_run": dry_run_output,
}
"""The tools that do work on the task's database, by name (``submit`` only records its answer)."""


class _Episode:
    """What the sync and async tool environments share: the episode's task, answer and verdict."""

    def __init__(self) -> None:
        self._task_id: str | None = None
        self._answer: str | None = None
        self._result: EvalResult | None = None
        self.tool_calls = 0

    def _start(self, row: Mapping[str, Any]) -> str:
        if "task_id" not in row:
            raise ConfigError("the multi-turn dataset needs a 'task_id' column")
        self._task_id = str(row["task_id"])
        self._answer = None
        self._result = None
        self.tool_calls = 0
        return self._task_id

    @property
    def _task(self) -> str:
        if self._task_id is None:
            raise EnvStateError("call reset() before using the tools")
        return self._task_id

    def submit(self, sql: str) -> str:
        """Submit the final rewrite; it is scored when the episode ends.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            A confirmation.
        """
        self._answer = extract_sql(sql)
        self._result = None
        return "submitted"

    @property
    def submitted(self) -> bool:
        """Whether the model has submitted a rewrite in this episode."""
        return self._answer is not None

    def _episode_result(self) -> EvalResult:
        raise NotImplementedError

    def get_reward(self) -> float:
        """The environment's reward of the submitted rewrite (TRL calls this once per rollout)."""
        return float(self._episode_result().reward)


class SQLToolEnvironment(_Episode):
    """One multi-turn episode on a Quill task, for TRL's ``environment_factory``.

    TRL calls :meth:`reset` with the dataset row (which carries ``task_id``), exposes the public
    methods (:meth:`dry_run`, :meth:`query_plan`, :meth:`submit`) as tools, and calls
    :meth:`get_reward` once the rollout ends. The tools run in the training process; for tools
    that run in worker processes without blocking, see :class:`AsyncSQLToolEnvironment`. Make a
    factory with :func:`tool_environment_factory`, whose instances share their suites, scale and
    options.

    Args:
        runners: where the episodes' runners come from (the shipped suites at their default
            scale and default options when ``None``).
    """

    def __init__(self, runners: TaskRunners | None = None) -> None:
        super().__init__()
        self._runners = runners or TaskRunners()

    def reset(self, **row: Any) -> str | None:
        """Start an episode on ``row["task_id"]``; returns the tool instructions for the prompt."""
        self._runners.runner(self._start(row))
        return TOOL_INSTRUCTIONS

    @property
    def _runner(self) -> TaskRunner:
        return self._runners.runner(self._task)

    def query_plan(self, sql: str) -> str:
        """Show the database engine's query plan of a candidate rewrite.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            The query plan as an indented tree, or why the SQL was refused.
        """
        self.tool_calls += 1
        return plan_output(self._runner, sql)

    def dry_run(self, sql: str) -> str:
        """Verify a candidate rewrite without submitting it.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            The verdict, the speedup when the rewrite is correct, and the error if any.
        """
        self.tool_calls += 1
        return dry_run_output(self._runner, sql)

    def _episode_result(self) -> EvalResult:
        """The environment's verdict on the submitted rewrite (computed once per episode).

        An episode without a submission is scored as the empty action (``syntax_error``).
        Private on purpose: TRL exposes every public method as a tool.
        """
        if self._result is None:
            self._result = self._runner.evaluate(self._answer or "")
        return self._result


class AsyncSQLToolEnvironment(_Episode):
    """A multi-turn episode whose tools are coroutines that run in worker processes.

    The same tools as :class:`SQLToolEnvironment`, with the same answers, but ``query_plan`` and
    ``dry_run`` are ``async``: TRL runs them on its event loop, and each awaits the work in one of
    ``reward``'s worker processes (:meth:`EnvironmentReward.tool_output`), so many rollouts' tool
    calls are in flight at once and the trainer never waits on one of them. When an episode's
    reward is asked for, every episode of the same ``reward`` that has submitted and is not
    scored yet is scored with it, in one parallel batch (:func:`episode_results`).

    Args:
        reward: the environment reward whose workers run the tools and score the episodes (its
            suites, scale and options are the episodes').
    """

    def __init__(self, reward: EnvironmentReward) -> None:
        super().__init__()
        self._reward = reward
        key = id(self)
        reward._episodes[key] = weakref.ref(self, lambda _: reward._episodes.pop(key, None))

    def reset(self, **row: Any) -> str | None:
        """Start an episode on ``row["task_id"]``; returns the tool instructions for the prompt.

        Raises:
            UnknownNameError: no suite of the reward holds the task (checked here, not in a worker).
        """
        task_id = self._start(row)
        self._reward._runners().suite_of(task_id).task(task_id)  # the reward's suites, read once
        return TOOL_INSTRUCTIONS

    async def _tool(self, tool: str, sql: str) -> str:
        self.tool_calls += 1
        return await asyncio.wrap_future(self._reward.tool_output(self._task, tool, sql))

    async def query_plan(self, sql: str) -> str:
        """Show the database engine's query plan of a candidate rewrite.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            The query plan as an indented tree, or why the SQL was refused.
        """
        return await self._tool("query_plan", sql)

    async def dry_run(self, sql: str) -> str:
        """Verify a candidate rewrite without submitting it.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            The verdict, the speedup when the rewrite is correct, and the error if any.
        """
        return await self._tool("dry_run", sql)

    def _episode_result(self) -> EvalResult:
        """The verdict on the submitted rewrite, scored in a batch with the other pending episodes."""
        if self._result is None:
            live = [e for e in (ref() for ref in list(self._reward._episodes.values())) if e is not None]
            others = [e for e in live if e is not self and e.submitted and e._result is None]
            _score_episodes(self._reward, [self, *others])
        assert self._result is not None
        return self._result


def _score_episodes(reward: EnvironmentReward, episodes: Sequence[AsyncSQLToolEnvironment]) -> None:
    """Score the episodes' answers in one call of ``reward`` (its workers, a task's together)."""
    task_ids = [e._task for e in episodes]
    answers = [e._answer or "" for e in episodes]
    results = reward.score(task_ids, answers)
    reward._remember(task_ids, answers, results)
    for episode, result in zip(episodes, results):
        episode._result = result


def episode_results(environments: Sequence[_Episode]) -> list[EvalResult]:
    """The verdicts of the environments' episodes, in order.

    Episodes of an :class:`AsyncSQLToolEnvironment` that are not scored yet are scored together,
    one parallel batch per reward; the others are scored one by one, in this process.
    """
    batches: dict[int, tuple[EnvironmentReward, list[AsyncSQLToolEnvironment]]] = {}
    for env in environments:
        if isinstance(env, AsyncSQLToolEnvironment) and env._result is None:
            batches.setdefault(id(env._reward), (env._reward, []))[1].append(env)
    for reward, episodes in batches.values():
        _score_episodes(reward, episodes)
    return [env._episode_result() for env in environments]


def tool_environment_factory(
    suites: Sequence[str] | None = None,
    scale: str | None = None,
    eval_options: Mapping[str, Any] | None = None,
    *,
    workers: int = 0,
    reward: EnvironmentReward | None = None,
) -> Callable[[], SQLToolEnvironment | AsyncSQLToolEnvironment]:
    """A factory of tool environments whose instances share suites, scale and options.

    Args:
        suites: suite names or directories that hold the task ids (shipped suites if None).
        scale: data scale of the task databases (each suite's default if None).
        eval_options: :class:`quill_env.EvalOptions` fields.
        workers: worker processes for the tools and the episodes' rewards; with more than 0 the
            factory makes :class:`AsyncSQLToolEnvironment` instances over a new
            :class:`EnvironmentReward` (its pool is stopped when it is garbage collected or at exit).
        reward: an :class:`EnvironmentReward` to use instead (its suites, scale and options win);
            with ``workers=0`` in it, the tools run in this process, synchronously.

    Raises:
        ConfigError: ``workers`` is negative, or both ``workers`` and ``reward`` are given.
    """
    if workers < 0:
        raise ConfigError(f"workers must be >= 0, got {workers}")
    if reward is not None and workers:
        raise ConfigError("give either workers or a reward whose workers the tools use, not both")
    if reward is None and workers:
        reward = EnvironmentReward(suites, scale, eval_options, workers=workers)
    if reward is None:
        return functools.partial(SQLToolEnvironment, TaskRunners(suites, scale, eval_options))
    if reward.workers == 0:
        return functools.partial(SQLToolEnvironment, reward._runners())
    return functools.partial(AsyncSQLToolEnvironment, reward)


class ToolEpisodeMetrics:
    """A zero-weight TRL reward function that logs the verdicts of multi-turn episodes.

    TRL adds :meth:`SQLToolEnvironment.get_reward` as a reward source of its own; this function
    (give it weight 0.0) returns the same rewards, so they are visible per function, and logs the
    share of each verdict and the mean number of tool calls through ``log_metric``. Being called
    first, it also scores a batch's :class:`AsyncSQLToolEnvironment` episodes in parallel.
    """

    __name__ = "quill_verdicts"

    def __call__(
        self,
        environments: Sequence[_Episode] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Rewards of the episodes' submissions (the environments' verdicts)."""
        if environments is None:
            raise ConfigError("ToolEpisodeMetrics needs TRL's environment_factory")
        results = episode_results(environments)
        log_verdicts(results, log_metric, log_extra)
        if log_metric is not None and environments:
            log_metric("quill/tool_calls", sum(e.tool_calls for e in environments) / len(environments))
            log_metric("quill/submitted", sum(e.submitted for e in environments) / len(environments))
        return [float(r.reward) for r in results]


__all__ = [
    "TOOL_OUTPUTS",
    "VERDICTS",
    "AsyncSQLToolEnvironment",
    "EnvironmentReward",
    "SQLToolEnvironment",
    "TaskRunners",
    "ToolEpisodeMetrics",
    "completion_text",
    "episode_results",
    "log_verdicts",
    "tool_environment_factory",
]
