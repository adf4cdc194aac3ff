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

Nothing here imports torch: worker processes import only ``quill_env``.
"""

from __future__ import annotations

import collections
import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from quill_env.action_policy import PolicyViolation
from quill_env.errors import ConfigError, EnvStateError, IndexBuildError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.prompt import extract_sql
from quill_env.reward import Verdict
from quill_env.reward_functions import TaskRunners, completion_text, task_groups
from quill_env.workers import WorkerPool

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
    ) -> None:
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        self.suites = tuple(suites) if suites else None
        self.scale = scale
        self.eval_options = dict(eval_options or {})
        EvalOptions.from_kwargs(**self.eval_options)  # validate early, in the caller's process
        self.workers = workers
        self.mp_context = mp_context
        self.calls = 0
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=history_size)
        """One dict per scored completion: call, task_id, action, reward, verdict, speedup, error."""
        self._pool: WorkerPool | None = None
        self._local: TaskRunners | None = None

    # --- scoring ---------------------------------------------------------------------------

    def _executor(self) -> WorkerPool:
        if self._pool is None:
            self._pool = WorkerPool(
                self.workers,
                _init_worker,
                (self.suites, self.scale, self.eval_options),
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
            if self._local is None:
                self._local = TaskRunners(self.suites, self.scale, self.eval_options)
            return self._local.score(task_ids, actions)
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
        self.calls += 1
        for tid, action, result in zip(task_id, actions, results):
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
        return state


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


class SQLToolEnvironment:
    """One multi-turn episode on a Quill task, for TRL's ``environment_factory``.

    TRL calls :meth:`reset` with the dataset row (which carries ``task_id``), exposes the public
    methods (:meth:`dry_run`, :meth:`query_plan`, :meth:`submit`) as tools, and calls
    :meth:`get_reward` once the rollout ends. Make a factory with
    :func:`tool_environment_factory`, whose instances share their suites, scale and options.

    Args:
        runners: where the episodes' runners come from (the shipped suites at their default
            scale and default options when ``None``).
    """

    def __init__(self, runners: TaskRunners | None = None) -> None:
        self._runners = runners or TaskRunners()
        self._task_id: str | None = None
        self._answer: str | None = None
        self._result: EvalResult | None = None
        self.tool_calls = 0

    def reset(self, **row: Any) -> str | None:
        """Start an episode on ``row["task_id"]``; returns the tool instructions for the prompt."""
        if "task_id" not in row:
            raise ConfigError("the multi-turn dataset needs a 'task_id' column")
        self._task_id = str(row["task_id"])
        self._answer = None
        self._result = None
        self.tool_calls = 0
        self._runners.runner(self._task_id)
        return TOOL_INSTRUCTIONS

    @property
    def _runner(self) -> TaskRunner:
        if self._task_id is None:
            raise EnvStateError("call reset() before using the tools")
        return self._runners.runner(self._task_id)

    def query_plan(self, sql: str) -> str:
        """Show the database engine's query plan of a candidate rewrite.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            The query plan as an indented tree, or why the SQL was refused.
        """
        self.tool_calls += 1
        runner = self._runner
        try:
            action = runner.parse_action(extract_sql(sql))
        except PolicyViolation as violation:
            return f"refused ({violation.verdict.value}): {violation.message}"
        try:
            with runner.backend.scratch_indexes(action.indexes):
                return runner.backend.explain(action.query_sql) or "(empty plan)"
        except IndexBuildError as err:  # an index the engine cannot build: report it to the model
            return f"building the indexes failed: {err}"

    def dry_run(self, sql: str) -> str:
        """Verify a candidate rewrite without submitting it.

        Args:
            sql: Optional CREATE INDEX statements followed by one query.

        Returns:
            The verdict, the speedup when the rewrite is correct, and the error if any.
        """
        self.tool_calls += 1
        result = self._runner.evaluate(extract_sql(sql))
        text = f"verdict={result.verdict.value}"
        if result.speedup is not None:
            text += f"; speedup={result.speedup:.2f}x"
        if result.error:
            text += f"; error: {result.error}"
        return text

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
        """The environment's verdict on the submitted rewrite (computed once per episode).

        An episode without a submission is scored as the empty action (``syntax_error``).
        Private on purpose: TRL exposes every public method as a tool.
        """
        if self._result is None:
            self._result = self._runner.evaluate(self._answer or "")
        return self._result

    def get_reward(self) -> float:
        """The environment's reward of the submitted rewrite (TRL calls this once per rollout)."""
        return float(self._episode_result().reward)


def tool_environment_factory(
    suites: Sequence[str] | None = None,
    scale: str | None = None,
    eval_options: Mapping[str, Any] | None = None,
) -> Callable[[], SQLToolEnvironment]:
    """A factory of :class:`SQLToolEnvironment` whose instances share suites, scale and options."""
    return functools.partial(SQLToolEnvironment, TaskRunners(suites, scale, eval_options))


class ToolEpisodeMetrics:
    """A zero-weight TRL reward function that logs the verdicts of multi-turn episodes.

    TRL adds :meth:`SQLToolEnvironment.get_reward` as a reward source of its own; this function
    (give it weight 0.0) returns the same rewards, so they are visible per function, and logs the
    share of each verdict and the mean number of tool calls through ``log_metric``.
    """

    __name__ = "quill_verdicts"

    def __call__(
        self,
        environments: Sequence[SQLToolEnvironment] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        """Rewards of the episodes' submissions (the environments' verdicts)."""
        if environments is None:
            raise ConfigError("ToolEpisodeMetrics needs TRL's environment_factory")
        results = [env._episode_result() for env in environments]
        log_verdicts(results, log_metric, log_extra)
        if log_metric is not None and environments:
            log_metric("quill/tool_calls", sum(e.tool_calls for e in environments) / len(environments))
            log_metric("quill/submitted", sum(e.submitted for e in environments) / len(environments))
        return [float(r.reward) for r in results]


__all__ = [
    "VERDICTS",
    "EnvironmentReward",
    "SQLToolEnvironment",
    "TaskRunners",
    "ToolEpisodeMetrics",
    "completion_text",
    "log_verdicts",
    "tool_environment_factory",
]
