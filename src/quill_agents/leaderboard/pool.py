"""Scoring in parallel worker processes: tasks are sharded over workers that keep their runners.

A job is a chunk of task ids and the players to score on them (an agent spec, or the fixed
actions of a submission). Every player of a chunk runs in the same worker, so a task's baseline
is computed once per run. A worker's runners live in its process's
:func:`~quill_env.runners.runner_cache` (bounded, least recently used first out), which an
environment or ``evaluate`` in the same process shares. Workers come from the one
:class:`~quill_env.workers.WorkerPool` (spawned, SIGINT ignored), or from Ray actors on a cluster
(``ray=ADDRESS``, :class:`~quill_env.ray_pool.RayPool`); ``workers=0`` scores in the calling
process, which tests and debuggers prefer.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from quill_agents.leaderboard.agents import AgentSpec, build_agent
from quill_env.backends import DEFAULT_ENGINE
from quill_env.errors import ConfigError, QuillError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.measure import CostMode
from quill_env.reward import Verdict, tier_reward
from quill_env.runners import runner_cache, suite_runner_key
from quill_env.tasks import Suite, Task, get_suite
from quill_env.workers import make_pool


class Unscored(str, Enum):
    """Why a leaderboard record has no :class:`~quill_env.reward.Verdict`: nothing was scored."""

    TASK_ERROR = "task_error"
    """The task's original query cannot be run (the task is broken, not the agent)."""
    AGENT_ERROR = "agent_error"
    """The agent raised on the task (e.g. an unreachable endpoint)."""
    MISSING = "missing"
    """A submission gives no action for the task."""

    def __str__(self) -> str:
        return self.value


TASK_ERROR = Unscored.TASK_ERROR
AGENT_ERROR = Unscored.AGENT_ERROR
MISSING = Unscored.MISSING

Outcome = Verdict | Unscored
"""What a leaderboard record reports: the verdict of a scored action, or why none was scored."""


def parse_outcome(value: str) -> Outcome:
    """The :data:`Outcome` named ``value`` (a verdict or an :class:`Unscored` reason).

    Raises:
        ValueError: no outcome has that name.
    """
    try:
        return Verdict(value)
    except ValueError:
        return Unscored(value)


@dataclass(frozen=True)
class RunConfig:
    """What every worker needs to score: the suites, the scale and the scoring options.

    Args:
        suites: shipped suite names or suite directories.
        scale: the data scale (``None``: each suite's default).
        options: keyword arguments of :class:`~quill_env.evaluator.EvalOptions` (``cost`` ...).
        engine: the backend the suites run on (``sqlite`` or ``duckdb``).
    """

    suites: tuple[str, ...]
    scale: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    engine: str = DEFAULT_ENGINE


@dataclass(frozen=True)
class Player:
    """Who acts in a job: an agent built from ``agent``, or the fixed ``actions`` by task id."""

    label: str
    agent: AgentSpec | None = None
    actions: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Job:
    """A chunk of tasks and the players to score on each of them."""

    task_ids: tuple[str, ...]
    players: tuple[Player, ...]


@dataclass
class StepRecord:
    """One scored (player, task): the action and everything the leaderboard reports about it."""

    agent: str
    task_id: str
    suite: str
    schema: str
    patterns: list[str]
    action: str
    verdict: Outcome
    correct: bool
    reward: float
    speedup: float | None = None
    speedup_raw: float | None = None
    tier: float | None = None
    reward_terms: dict[str, float] = field(default_factory=dict)
    error: str = ""
    baseline_cost: float | None = None
    candidate_cost: float | None = None
    cost_unit: str = ""
    cost_mode: CostMode | None = None
    """``None`` for an :class:`Unscored` record."""
    engine: str = ""
    wall: dict[str, float] | None = None
    step_seconds: float = 0.0
    """Time the environment spent scoring the action."""
    act_seconds: float = 0.0
    """Time the agent spent producing the action (its share of a batch)."""

    @classmethod
    def from_result(
        cls, agent: str, task: Task, action: str, result: EvalResult, act_seconds: float
    ) -> StepRecord:
        """A record from an evaluation result: every field the two share is the result's own."""
        return cls(
            **result.fields_for(cls, exclude=frozenset({"task_id"})),
            agent=agent,
            task_id=task.id,
            suite=task.suite,
            schema=task.schema,
            patterns=list(task.patterns),
            action=action,
            tier=tier_reward(result.speedup) if result.correct and result.speedup else None,
            step_seconds=result.seconds,
            act_seconds=act_seconds,
        )

    @classmethod
    def failed(cls, agent: str, task: Task, verdict: Unscored, error: str, action: str = "") -> StepRecord:
        """A record of a task that could not be scored (why is an :class:`Unscored` reason)."""
        return cls(
            agent=agent,
            task_id=task.id,
            suite=task.suite,
            schema=task.schema,
            patterns=list(task.patterns),
            action=action,
            verdict=verdict,
            correct=False,
            reward=0.0,
            error=error,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (verdict and cost mode as their names)."""
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["cost_mode"] = self.cost_mode.value if self.cost_mode is not None else ""
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StepRecord:
        """Inverse of :meth:`to_dict` (unknown keys are ignored).

        Raises:
            ValueError: an unknown verdict or cost mode.
        """
        known = cls.__dataclass_fields__
        out = {k: v for k, v in raw.items() if k in known}
        out["verdict"] = parse_outcome(str(out["verdict"]))
        out["cost_mode"] = CostMode(out["cost_mode"]) if out.get("cost_mode") else None
        return cls(**out)


@dataclass
class JobResult:
    """What a worker sends back for a job."""

    records: list[StepRecord]
    pid: int
    peak_rss_mb: float
    baseline_seconds: float


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss``; psutil where resource is missing)."""
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib / 1024 if os.uname().sysname != "Darwin" else kib / 2**20
    except ImportError:  # pragma: no cover - Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


class Worker:
    """The scoring state of one process: suites, agents, and task runners from the shared cache.

    Runners are keyed as :meth:`quill_env.SQLOptEnv.runner` keys them, so an environment with the
    same scale and options in this process reuses them (and the other way round).
    """

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.options = EvalOptions.from_kwargs(**dict(config.options))
        self.suites: dict[str, Suite] = {}
        self.tasks: dict[str, Task] = {}
        for name in config.suites:
            suite = get_suite(name)
            self.suites[suite.name] = suite
            self.tasks.update({t.id: t for t in suite.tasks})
        self._agents: dict[tuple, Any] = {}
        self.baseline_seconds = 0.0

    def runner(self, task_id: str) -> TaskRunner:
        """The runner of a task, with its baseline computed (built once, then from the cache).

        Raises:
            BaselineError: the task's original query fails (the runner is not cached).
        """
        task = self.tasks[task_id]
        suite = self.suites[task.suite]
        key = suite_runner_key(suite, task, self.config.scale, self.options, self.config.engine)
        runner = runner_cache().get(key, lambda: self._build(suite, task))
        self._compute_baseline(runner)  # free once computed; an environment may have cached it without
        return runner

    def _build(self, suite: Suite, task: Task) -> TaskRunner:
        runner = TaskRunner.from_suite(
            suite, task, self.config.scale, self.options, engine=self.config.engine
        )
        try:
            self._compute_baseline(runner)
        except QuillError:
            runner.close()
            raise
        return runner

    def _compute_baseline(self, runner: TaskRunner) -> None:
        start = time.perf_counter()
        try:
            _ = runner.baseline
        finally:
            self.baseline_seconds += time.perf_counter() - start

    def agent(self, spec: AgentSpec) -> Any:
        """The agent a spec describes, built once per process."""
        key = spec.key()
        if key not in self._agents:
            self._agents[key] = build_agent(spec, list(self.tasks.values()), self.config.engine)
        return self._agents[key]

    def run(self, job: Job) -> JobResult:
        """Score every player of a job on its tasks."""
        records: list[StepRecord] = []
        broken: dict[str, str] = {}
        for task_id in job.task_ids:
            try:
                self.runner(task_id)
            except QuillError as err:
                broken[task_id] = str(err)
        scorable = [t for t in job.task_ids if t not in broken]
        for player in job.players:
            for task_id, error in broken.items():
                records.append(StepRecord.failed(player.label, self.tasks[task_id], TASK_ERROR, error))
            records += self._play(player, scorable)
        return JobResult(records, os.getpid(), peak_rss_mb(), self.baseline_seconds)

    def _play(self, player: Player, task_ids: list[str]) -> list[StepRecord]:
        # Runners are looked up at each use, never held: a cache smaller than a job may evict
        # (and close) one between its observation and its scoring; it is then rebuilt.
        if player.actions is not None:
            task_ids = [t for t in task_ids if t in player.actions]
            actions = [player.actions[t] for t in task_ids]
            act_seconds = 0.0
        else:
            start = time.perf_counter()
            observations = [self.runner(t).observation() for t in task_ids]
            try:
                agent = self.agent(player.agent)  # type: ignore[arg-type]
                actions = list(agent.act_batch(observations))
                if len(actions) != len(task_ids):
                    raise ValueError(
                        f"act_batch returned {len(actions)} actions for {len(task_ids)} observations"
                    )
            except Exception as err:  # an agent's failure is recorded per task, never hidden
                message = f"{type(err).__name__}: {err}"
                tasks = [self.tasks[t] for t in task_ids]
                return [StepRecord.failed(player.label, t, AGENT_ERROR, message) for t in tasks]
            act_seconds = (time.perf_counter() - start) / max(len(task_ids), 1)
        records = []
        for task_id, action in zip(task_ids, actions):
            text = action if isinstance(action, str) else str(action)
            result = self.runner(task_id).evaluate(text)
            task = self.tasks[task_id]
            records.append(StepRecord.from_result(player.label, task, text, result, act_seconds))
        return records

    def close(self) -> None:
        """Forget this worker's agents.

        Its runners stay in the process-wide runner cache, which closes them when it evicts them:
        an environment or ``evaluate`` in this process may be using the same runners.
        """
        self._agents.clear()


_WORKER: Worker | None = None


def init_worker(config: RunConfig, warm: Sequence[str] = (), barrier: Any = None) -> None:
    """Pool initializer: build this process's :class:`Worker`.

    Args:
        config: suites, scale and options.
        warm: task ids whose runners and baselines to build now (benchmarks measure warm steps).
        barrier: a ``multiprocessing`` barrier to wait on once warm (so a timer can start after).
    """
    global _WORKER
    _WORKER = Worker(config)
    for task_id in warm:
        _WORKER.runner(task_id)
    if barrier is not None:
        barrier.wait()


def run_job(job: Job) -> JobResult:
    """Score a job in this pool worker (after :func:`init_worker`)."""
    if _WORKER is None:
        raise RuntimeError("run_job needs init_worker() first (it is the pool's initializer)")
    return _WORKER.run(job)


def make_jobs(task_ids: Sequence[str], players: Sequence[Player], workers: int) -> list[Job]:
    """Shard tasks into chunks (about four per worker, at most 8 tasks each), every player in each.

    >>> [len(j.task_ids) for j in make_jobs([f"t{i}" for i in range(10)], [Player("a")], 2)]
    [2, 2, 2, 2, 2]
    """
    if not task_ids:
        return []
    size = max(1, min(8, math.ceil(len(task_ids) / (max(workers, 1) * 4))))
    jobs = []
    for i in range(0, len(task_ids), size):
        chunk = tuple(task_ids[i : i + size])
        chunk_players = tuple(
            p
            if p.actions is None
            else Player(p.label, actions={t: p.actions[t] for t in chunk if t in p.actions})
            for p in players
        )
        jobs.append(Job(chunk, chunk_players))
    return jobs


@dataclass
class PoolStats:
    """How a run used its workers."""

    workers: int
    seconds: float
    peak_rss_mb: dict[int, float] = field(default_factory=dict)
    baseline_seconds: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (per-worker figures keyed by process id)."""
        return {
            "workers": self.workers,
            "seconds": round(self.seconds, 4),
            "peak_rss_mb": {str(k): round(v, 1) for k, v in self.peak_rss_mb.items()},
            "baseline_seconds": {str(k): round(v, 4) for k, v in self.baseline_seconds.items()},
        }


def _results(config: RunConfig, jobs: list[Job], workers: int, ray: str | None) -> Iterator[JobResult]:
    if workers <= 0:
        worker = Worker(config)
        try:
            for job in jobs:
                yield worker.run(job)
        finally:
            worker.close()
        return
    with make_pool(workers, init_worker, (config,), ray=ray) as pool:
        yield from pool.map(run_job, jobs, ordered=False)


def run_jobs(
    config: RunConfig,
    jobs: list[Job],
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    *,
    ray: str | None = None,
) -> tuple[list[StepRecord], PoolStats]:
    """Score every job, in ``workers`` spawned processes (``0``: in this process) or Ray actors.

    Args:
        config: suites, scale and options, given to every worker.
        jobs: from :func:`make_jobs`.
        workers: pool size; ``0`` scores in the calling process.
        progress: called with the number of records each finished job produced.
        ray: a Ray cluster to score on, as :func:`~quill_env.workers.make_pool` takes it
            (``None``: local processes).

    Returns:
        The records (in no particular order) and the pool's statistics.

    Raises:
        ConfigError: ``ray`` is given with ``workers=0``, or no Ray cluster answers there.
    """
    if ray is not None and workers <= 0:
        raise ConfigError("scoring on Ray needs workers >= 1 (the number of actors)")
    stats = PoolStats(workers=workers, seconds=0.0)
    start = time.perf_counter()
    records: list[StepRecord] = []
    for result in _results(config, jobs, workers, ray):
        records += result.records
        stats.peak_rss_mb[result.pid] = max(stats.peak_rss_mb.get(result.pid, 0.0), result.peak_rss_mb)
        stats.baseline_seconds[result.pid] = result.baseline_seconds
        if progress is not None:
            progress(len(result.records))
    stats.seconds = time.perf_counter() - start
    return records, stats


__all__ = [
    "AGENT_ERROR",
    "MISSING",
    "TASK_ERROR",
    "Job",
    "Outcome",
    "Player",
    "PoolStats",
    "RunConfig",
    "StepRecord",
    "Unscored",
    "Worker",
    "init_worker",
    "make_jobs",
    "parse_outcome",
    "peak_rss_mb",
    "run_job",
    "run_jobs",
]
