"""Running the benchmark and re-validating submissions (the library behind ``quill bench``).

>>> from quill_agents.leaderboard import BenchConfig, AgentSpec
>>> BenchConfig(agents=[AgentSpec("identity")], suites=["shop"], scale="small").split
'test'
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill_agents.leaderboard.agents import AgentSpec
from quill_agents.leaderboard.fingerprint import fingerprint
from quill_agents.leaderboard.metrics import comparable, summarize
from quill_agents.leaderboard.pool import (
    MISSING,
    Player,
    PoolStats,
    RunConfig,
    StepRecord,
    make_jobs,
    run_jobs,
)
from quill_agents.leaderboard.submission import Issue, Submission, check_claims, read_submission
from quill_agents.trainers.model_card import add_leaderboard_result, leaderboard_entry
from quill_env.backends import DEFAULT_ENGINE
from quill_env.errors import ConfigError
from quill_env.evaluator import EvalOptions
from quill_env.measure import CostMode
from quill_env.tasks import Suite, Task, resolve_suites, select_tasks, suites_root

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (steps done, steps in total) as workers finish jobs."""

FORMAT = "quill-bench/1"
"""The ``format`` of a results JSON file."""


@dataclass
class BenchConfig:
    """What ``quill bench`` runs.

    Args:
        agents: the agents to run (specs, built inside the workers).
        submissions: submission files to score beside them.
        suites: suite names or directories (``None``: every shipped suite with tasks).
        split: ``test`` (default), ``train`` or ``all``.
        scale: the data scale (``None``: each suite's default).
        cost: the cost mode, ``work`` (deterministic, default) or ``wall`` (a name is parsed).
        engine: the backend the suites run on (``sqlite``, default, or ``duckdb``).
        workers: worker processes (``0``: score in this process), or Ray actors with ``ray``.
        ray: score on Ray actors on this cluster (``"local"``: a Ray instance started here;
            ``"auto"``, ``"host:port"``, ``"ray://host:port"``: that cluster); ``None``: local
            processes. Work-mode results are the same either way.
        task_ids: restrict to these tasks.
        limit: score only the first ``limit`` tasks.
        options: further :class:`~quill_env.evaluator.EvalOptions` fields.
    """

    agents: Sequence[AgentSpec] = ()
    submissions: Sequence[str | os.PathLike[str]] = ()
    suites: Sequence[str] | None = None
    split: str = "test"
    scale: str | None = None
    cost: CostMode = CostMode.WORK
    engine: str = DEFAULT_ENGINE
    workers: int = 2
    ray: str | None = None
    task_ids: Sequence[str] | None = None
    limit: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cost = CostMode.parse(self.cost)
        if self.workers < 0:
            raise ConfigError("workers must be >= 0 (0 scores in this process)")
        if self.ray is not None and self.workers < 1:
            raise ConfigError("scoring on Ray needs workers >= 1 (the number of actors)")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit must be >= 1")
        EvalOptions.from_kwargs(cost=self.cost, **dict(self.options))  # fail early on a bad option

    def run_config(self, suites: Sequence[Suite]) -> RunConfig:
        """The picklable part every worker gets."""
        options = {"cost": self.cost, **dict(self.options)}
        return RunConfig(tuple(map(suite_ref, suites)), self.scale, options, self.engine)


@dataclass
class AgentResult:
    """One leaderboard entry: an agent's (or a submission's) records, summary and validation."""

    label: str
    kind: str
    source: str
    records: list[StepRecord]
    summary: dict[str, Any]
    validated: bool = True
    issues: list[Issue] = field(default_factory=list)
    submission: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "agent": self.label,
            "kind": self.kind,
            "source": self.source,
            "validated": self.validated,
            "issues": [i.to_dict() for i in self.issues],
            "submission": self.submission,
            "summary": self.summary,
            "records": [r.to_dict() for r in self.records],
        }


@dataclass
class BenchResult:
    """A whole run: fingerprint, tasks, one entry per agent, pool statistics."""

    run: str
    created: str
    fingerprint: dict[str, Any]
    tasks: list[str]
    agents: list[AgentResult]
    pool: PoolStats
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to the results directory."""
        return {
            "format": FORMAT,
            "run": self.run,
            "created": self.created,
            "fingerprint": self.fingerprint,
            "tasks": self.tasks,
            "pool": self.pool.to_dict(),
            "seconds": round(self.seconds, 3),
            "agents": [a.to_dict() for a in self.agents],
        }

    def agent(self, label: str) -> AgentResult:
        """The entry of one agent."""
        for a in self.agents:
            if a.label == label:
                return a
        raise KeyError(label)


def suite_ref(suite: Suite) -> str:
    """How a worker finds a suite again: its name if shipped, else its directory."""
    if suite.path is not None and suite.path.resolve().parent != suites_root().resolve():
        return str(suite.path)
    return suite.name


def _prepare(suites: Sequence[Suite], scale: str | None, engine: str = DEFAULT_ENGINE) -> None:
    """Build the databases once here, so workers never race to generate them."""
    for suite in suites:
        suite.database(scale, engine=engine)
        suite.database("variant", engine=engine)


def default_run_name(
    split: str, scale: str | None, cost: CostMode | str, engine: str = DEFAULT_ENGINE
) -> str:
    """``<UTC time>-<split>-<scale>-<cost>``, the default name of a run.

    ``-<engine>`` follows when the engine is not the default. ``scale`` is the resolved tier
    (``run_bench`` passes the fingerprint's, e.g. ``medium``).
    """
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    suffix = "" if engine == DEFAULT_ENGINE else f"-{engine}"
    return f"{stamp}-{split}-{scale or 'default'}-{CostMode.parse(cost)}{suffix}"


def _sorted(records: list[StepRecord], order: Mapping[str, int]) -> list[StepRecord]:
    return sorted(records, key=lambda r: order.get(r.task_id, len(order)))


def _submission_result(
    sub: Submission, records: list[StepRecord], tasks: Sequence[Task], config: BenchConfig
) -> AgentResult:
    scored = {r.task_id: r for r in records}
    issues = list(sub.issues)
    settings = {"scale": config.scale, "cost": config.cost.value}
    mismatched = [
        k for k in ("scale", "cost") if k in sub.settings and settings[k] and sub.settings[k] != settings[k]
    ]
    if mismatched:
        what = ", ".join(f"{k} {sub.settings[k]!r} (this run: {settings[k]!r})" for k in mismatched)
        issues.append(
            Issue(
                "inconsistent_setting", f"claims were measured with {what}; re-validate with quill validate"
            )
        )
    else:
        for entry in sub.entries:
            if entry.task_id in scored:
                issues += check_claims(entry, scored[entry.task_id])
    out = [scored[t.id] for t in tasks if t.id in scored]
    out += [
        StepRecord.failed(sub.label, t, MISSING, "no action in the submission")
        for t in tasks
        if t.id not in scored
    ]
    order = {t.id: i for i, t in enumerate(tasks)}
    out = _sorted(out, order)
    return AgentResult(
        sub.label, "submission", "submission", out, summarize(out), not issues, issues, sub.path
    )


def run_bench(
    config: BenchConfig, *, run: str | None = None, progress: Progress | None = None
) -> BenchResult:
    """Score every agent and submission of ``config`` on its tasks, in worker processes.

    Args:
        config: agents, submissions, tasks and settings.
        run: the run's name (default: time, split, scale and cost).
        progress: called as jobs finish with (steps done, steps in total).

    Returns:
        The :class:`BenchResult`; write it with :func:`~quill_agents.leaderboard.report.save_run`.

    Raises:
        ConfigError: no agent and no submission, or an invalid setting.
        UnknownNameError: an unknown suite, split, scale or task.
    """
    if not config.agents and not config.submissions:
        raise ConfigError("nothing to run: name at least one agent or submission")
    labels = [a.label for a in config.agents]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"agent names must be unique, got {labels}")
    start = time.perf_counter()
    suites = resolve_suites(config.suites)
    pairs = select_tasks(suites, config.split, config.task_ids, config.limit, engine=config.engine)
    tasks = [t for _, t in pairs]
    used = [s for s in suites if any(t.suite == s.name for t in tasks)]
    _prepare(used, config.scale, config.engine)
    known = [t.id for s in suites for t in s.tasks]
    subs = [read_submission(p, known) for p in config.submissions]
    for sub in subs:
        label, n = sub.label, 2
        while label in labels:
            label, n = f"{sub.label}#{n}", n + 1
        labels.append(label)
    players = [Player(a.label, agent=a) for a in config.agents]
    wanted = {t.id for t in tasks}
    players += [
        Player(label, actions={k: v for k, v in s.actions().items() if k in wanted})
        for label, s in zip(labels[len(config.agents) :], subs)
    ]
    task_ids = [t.id for t in tasks]
    jobs = make_jobs(task_ids, players, config.workers)
    total = sum(len(j.task_ids) * len(j.players) for j in jobs)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    records, stats = run_jobs(config.run_config(used), jobs, config.workers, advance, ray=config.ray)
    by_agent: dict[str, list[StepRecord]] = {p.label: [] for p in players}
    for r in records:
        by_agent[r.agent].append(r)
    order = {t: i for i, t in enumerate(task_ids)}
    fp = fingerprint(used, scale=config.scale, cost=config.cost, split=config.split, engine=config.engine)
    run = run or default_run_name(config.split, fp["scale"], config.cost, config.engine)
    results = []
    for spec in config.agents:
        recs = _sorted(by_agent[spec.label], order)
        results.append(AgentResult(spec.label, spec.kind, "agent", recs, summarize(recs)))
        if spec.kind == "policy" and Path(spec.kwargs["path"]).is_dir():  # its model card shows it
            try:
                add_leaderboard_result(spec.kwargs["path"], leaderboard_entry(fp, results[-1].summary, run))
            except OSError as err:  # a read-only model directory must not lose the run
                log.warning("could not add the results to the model card in %s: %s", spec.kwargs["path"], err)
    for player, sub in zip(players[len(config.agents) :], subs):
        sub_result = _submission_result(sub, by_agent[player.label], tasks, config)
        sub_result.label = player.label
        results.append(sub_result)
    return BenchResult(
        run=run,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        fingerprint=fp,
        tasks=task_ids,
        agents=results,
        pool=stats,
        seconds=time.perf_counter() - start,
    )


# --- re-validation ---------------------------------------------------------------------------


@dataclass
class ValidationReport:
    """The outcome of re-running a submission from scratch."""

    path: str
    lines: int
    settings: dict[str, Any]
    issues: list[Issue]
    records: list[StepRecord]
    summary: dict[str, Any]
    fingerprint: dict[str, Any]
    pool: PoolStats

    @property
    def ok(self) -> bool:
        """Whether every line parsed and every claim reproduced."""
        return not self.issues

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "format": "quill-validate/1",
            "path": self.path,
            "ok": self.ok,
            "lines": self.lines,
            "checked": len(self.records),
            "settings": self.settings,
            "issues": [i.to_dict() for i in self.issues],
            "fingerprint": self.fingerprint,
            "summary": self.summary,
            "comparable": comparable(self.summary),
            "pool": self.pool.to_dict(),
            "records": [r.to_dict() for r in self.records],
        }


def validate_submission(
    path: str | os.PathLike[str],
    *,
    suites: Sequence[str] | None = None,
    scale: str | None = None,
    cost: CostMode | str | None = None,
    workers: int = 2,
    ray: str | None = None,
    progress: Progress | None = None,
) -> ValidationReport:
    """Re-run every action of a submission from scratch and check its claims.

    Args:
        path: the JSONL submission.
        suites: suites its task ids come from (default: every shipped suite with tasks).
        scale: the data scale; default: the submission's ``scale``, else each suite's default.
        cost: the cost mode; default: the submission's ``cost``, else ``work``.
        workers: worker processes (``0``: in this process), or Ray actors with ``ray``.
        ray: score on Ray actors on this cluster (as :class:`BenchConfig` takes it).
        progress: called with (steps done, steps in total).

    Returns:
        A :class:`ValidationReport`; ``report.ok`` is true when every claim reproduced.

    Raises:
        OSError: the file cannot be read.
    """
    all_suites = resolve_suites(suites)
    known = {t.id: t for s in all_suites for t in s.tasks}
    sub = read_submission(path, known)
    issues = list(sub.issues)
    scale = scale or sub.settings.get("scale")
    cost = str(cost or sub.settings.get("cost") or CostMode.WORK)
    for key, value in (("scale", scale), ("cost", cost)):
        if key in sub.settings and value != sub.settings[key]:
            issues.append(
                Issue(
                    "inconsistent_setting",
                    f"the claims were measured with {key} {sub.settings[key]!r}, this re-run uses {value!r}",
                )
            )
    tasks = [known[e.task_id] for e in sub.entries]
    used = [s for s in all_suites if any(t.suite == s.name for t in tasks)]
    try:
        options = EvalOptions.from_kwargs(cost=cost)
        if scale is not None:
            for s in used:
                s.database(scale)
    except ConfigError as err:
        issues.append(Issue("inconsistent_setting", str(err)))
        tasks, used, options = [], [], EvalOptions()
    _prepare(used, scale)
    config = RunConfig(tuple(map(suite_ref, used)), scale, {"cost": options.cost.value})
    player = Player(sub.label, actions=sub.actions())
    jobs = make_jobs([t.id for t in tasks], [player], workers)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(tasks))

    records, stats = ([], PoolStats(workers, 0.0))
    if jobs:
        records, stats = run_jobs(config, jobs, workers, advance, ray=ray)
    scored = {r.task_id: r for r in records}
    for entry in sub.entries:
        if entry.task_id in scored:
            issues += check_claims(entry, scored[entry.task_id])
    issues.sort(key=lambda i: (i.line if i.line is not None else 0, i.kind))
    ordered = [scored[e.task_id] for e in sub.entries if e.task_id in scored]
    return ValidationReport(
        path=str(path),
        lines=sub.lines,
        settings={"scale": scale, "cost": options.cost.value},
        issues=issues,
        records=ordered,
        summary=summarize(ordered),
        fingerprint=fingerprint(used, scale=scale, cost=options.cost.value, split="submission"),
        pool=stats,
    )


__all__ = [
    "FORMAT",
    "AgentResult",
    "BenchConfig",
    "BenchResult",
    "ValidationReport",
    "default_run_name",
    "resolve_suites",
    "run_bench",
    "select_tasks",
    "validate_submission",
]
