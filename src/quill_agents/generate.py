"""The ReST-EM data loop behind ``quill generate`` (DESIGN §1).

One *draw* is: choose a schema and a pattern (steered toward what the store lacks) -> write a slow
query (the procedural generator of :mod:`quill_env.authoring.querygen`, or a teacher LLM) -> validate it
(it runs within the time cap, its baseline work is above a floor, it is not a near-duplicate of a
kept one) -> ask the proposer for ``k`` optimizations -> score each with Quill -> keep those that
are verified ``improved`` with reward >= 0.25 -> de-duplicate by canonical fingerprint -> append
them to the :class:`~quill_agents.store.DatasetStore`. Every ``round_size`` draws a new *round*
(ReST-EM iteration) begins and its few-shot examples are drawn from the store, favouring
patterns and schemas that are under-represented.

Restarts are exact: the RNG of draw ``d`` is derived from ``(seed, d)`` and the steering state is
a pure function of the records and of the draw log (``draws.jsonl``) of earlier draws, so a run
that is killed and restarted stores the same records as one that was never interrupted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import quill_env
from quill_agents.dedup import action_fingerprint, shape_fingerprint
from quill_agents.heldout import check_schemas, held_out_shapes, training_schemas
from quill_agents.proposers import (
    CompositeProposer,
    DrawContext,
    HeuristicProposer,
    Observation,
    Propose,
    ReferenceProposer,
    TeacherProposer,
    build_proposer,
    build_teacher,
    model_of,
    name_of,
)
from quill_agents.slow_sources import ProceduralSource, SchemaContext, SlowQuerySource, TeacherSource
from quill_agents.steering import BELOW_MIX, Steering
from quill_agents.store import DRAWS_FILE, RECORDS_FILE, DataRecord, DatasetStore, JsonlLog, record_key
from quill_env.authoring.querygen import FAMILIES, Candidate
from quill_env.authoring.taskgen import TARGET_MIX, bucket
from quill_env.canonical import fingerprint
from quill_env.errors import ConfigError, QuillError
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner
from quill_env.reward import Verdict
from quill_env.tasks import Task, get_suite, list_suites
from quill_env.workers import make_pool

log = logging.getLogger(__name__)


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of one ``quill generate`` run.

    Args:
        out: the run directory (``records.jsonl`` and ``draws.jsonl`` live there).
        target: stop when the store holds this many verified records.
        suites: schemas (suite names) to draw from; empty means every shipped suite that is not a
            held-out test schema (:func:`~quill_agents.heldout.held_out_schemas`).
        scales: database scale tiers to draw from.
        seed: the run's seed; draw ``d`` uses ``numpy.random.default_rng([seed, d])``.
        k: optimizations asked for per slow query.
        acceptance: the smallest reward a kept rewrite earns (the acceptance tier).
        max_baseline_seconds: a slow query slower than this on the main database is dropped.
        min_baseline_work: a slow query cheaper than this (engine work units) is dropped.
        max_per_shape: the most slow queries kept that differ only in their literals.
        max_per_query: the most rewrites kept per slow query (the best rewards first; the
            others stay in the records' ``rejected`` lists for DPO).
        round_size: draws per ReST-EM round (few-shot examples are redrawn each round).
        n_examples: few-shot examples handed to a teacher per round.
        max_draws: give up after this many draws (default ``50 * target + 200``).
        num_variants: variant databases each rewrite is verified on.
        target_mix: the target speedup mix (bucket -> share).
        teacher: name of the optimizer (recorded with every record).
        model: the teacher's model name (recorded with every record).
        include_test_schemas: also draw from the held-out test schemas (``clinic``,
            ``logistics``) and keep slow queries shaped like test-split tasks; the data then
            overlaps the test split. Off by default; naming a held-out schema in ``suites``
            without it is a :class:`~quill_env.errors.ConfigError`.
        workers: processes (or Ray actors) that score a draw's candidates in parallel, a share
            each; 0 scores them in this process. Draws stay one after another (each draw's
            choices depend on the records before it), so the records are the same either way.
        ray: score on Ray actors of this cluster (``"local"``, ``"auto"``, ``"host:port"``, as
            :func:`~quill_env.workers.make_pool` takes it) instead of local processes.
    """

    out: str
    target: int = 1000
    suites: tuple[str, ...] = ()
    scales: tuple[str, ...] = ("medium",)
    seed: int = 0
    k: int = 4
    acceptance: float = 0.25
    max_baseline_seconds: float = 2.0
    min_baseline_work: int = 2000
    max_per_shape: int = 3
    max_per_query: int = 2
    round_size: int = 20
    n_examples: int = 4
    max_draws: int | None = None
    num_variants: int | None = None
    target_mix: Mapping[str, float] = field(default_factory=lambda: dict(TARGET_MIX))
    teacher: str = "heuristic"
    model: str | None = None
    include_test_schemas: bool = False
    workers: int = 0
    ray: str | None = None

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ConfigError(f"target must be >= 1, got {self.target}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.ray is not None and self.workers == 0:
            raise ConfigError("scoring on Ray needs workers >= 1 (the number of actors)")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.round_size < 1 or self.max_per_shape < 1 or self.max_per_query < 1:
            raise ConfigError("round_size, max_per_shape and max_per_query must be >= 1")
        if not self.scales:
            raise ConfigError("scales must name at least one scale tier")
        if abs(sum(self.target_mix.values()) - 1.0) > 1e-6:
            raise ConfigError(f"target_mix must sum to 1, got {dict(self.target_mix)}")
        check_schemas(self.suites, include_test_schemas=self.include_test_schemas)

    @property
    def draw_limit(self) -> int:
        """The most draws the run makes."""
        return self.max_draws if self.max_draws is not None else 50 * self.target + 200


# --- progress and the loop ---------------------------------------------------------------


@dataclass
class GenerateStats:
    """Progress of a run (cumulative over restarts).

    ``acceptance_rate`` is kept / scored candidates; ``unique_share`` is the number of distinct
    slow-query shapes (literals ignored) over the number of records (several verified rewrites
    of one slow query count once); ``mix`` is the speedup mix of the records.
    """

    target: int
    kept: int = 0
    draws: int = 0
    slow_valid: int = 0
    candidates: int = 0
    candidates_kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    mix: dict[str, float] = field(default_factory=dict)
    unique_share: float = 1.0
    usage: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Share of scored candidates that were kept."""
        return self.candidates_kept / self.candidates if self.candidates else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable summary."""
        return {
            "target": self.target,
            "kept": self.kept,
            "draws": self.draws,
            "slow_valid": self.slow_valid,
            "candidates": self.candidates,
            "candidates_kept": self.candidates_kept,
            "acceptance_rate": round(self.acceptance_rate, 4),
            "slow_rejected": dict(self.rejected),
            "unique_share": round(self.unique_share, 4),
            "mix": self.mix,
            "usage": self.usage,
            "seconds": round(self.seconds, 2),
            "resumed_from_draw": self.resumed_from,
        }


class DataLoop:
    """The ReST-EM generation loop over a run directory.

    Args:
        config: the run's settings.
        propose: the optimizer, any ``propose(observation, k) -> list[str]``; an optional
            ``prepare(DrawContext)`` method is called before each draw's proposals.
        source: where slow queries come from (default: the procedural generator).
    """

    def __init__(
        self, config: GenerateConfig, propose: Propose, source: SlowQuerySource | None = None
    ) -> None:
        self.config = config
        self.propose = propose
        self.source = source or ProceduralSource()
        names = list(config.suites) or (list_suites() if config.include_test_schemas else training_schemas())
        self.suites = {n: get_suite(n) for n in names}
        self.suite_names = list(self.suites)
        self.families = list(FAMILIES)
        self.out = Path(config.out)
        self.store = DatasetStore(self.out / RECORDS_FILE)
        self.draw_log = JsonlLog(self.out / DRAWS_FILE)
        self._ctx: dict[tuple[str, str], SchemaContext] = {}
        self._held_out: dict[str, set[str]] = {}
        self.next_draw = max((int(e["draw"]) for e in self.draw_log), default=-1) + 1
        self.steering = Steering(config.target_mix)
        for rec in self.store.records:
            if int(rec["draw"]) < self.next_draw:
                self.steering.observe_record(rec)
        for entry in self.draw_log:
            self.steering.observe_draw(entry)
        self.stats = GenerateStats(target=config.target, resumed_from=self.next_draw)
        for entry in self.draw_log:
            self._count_draw(entry)
        self._refresh_stats()
        self._round_examples: tuple[int, list[dict[str, Any]]] | None = None
        self._pool: Any = None

    # --- helpers ---------------------------------------------------------------------------

    def schema(self, suite: str, scale: str) -> SchemaContext:
        """The cached per-(suite, scale) context."""
        key = (suite, scale)
        if key not in self._ctx:
            self._ctx[key] = SchemaContext(self.suites[suite], scale)
        return self._ctx[key]

    def _held_out_shapes(self, suite: str, ctx: SchemaContext) -> set[str]:
        """Shapes of the suite's test-split queries, which draws must not repeat (none when allowed)."""
        if suite not in self._held_out:
            shapes = set()
            if not self.config.include_test_schemas:
                shapes = held_out_shapes(self.suites[suite], ctx.schema_map)
            self._held_out[suite] = shapes
        return self._held_out[suite]

    def _count_draw(self, entry: Mapping[str, Any]) -> None:
        s = self.stats
        s.draws += 1
        if entry.get("reason"):
            s.rejected[entry["reason"]] += 1
        else:
            s.slow_valid += 1
        s.candidates += int(entry.get("candidates", 0))
        s.candidates_kept += int(entry.get("kept", 0))
        for k, v in (entry.get("usage") or {}).items():
            s.usage[k] = s.usage.get(k, 0) + v

    def _refresh_stats(self) -> None:
        s = self.stats
        s.kept = self.steering.kept
        s.mix = self.steering.mix()
        shapes = {r.get("shape_fingerprint") for r in self.store.records}
        s.unique_share = len(shapes) / len(self.store) if len(self.store) else 1.0

    def _usage(self) -> dict[str, float]:
        meters: dict[int, Any] = {}
        for p in [self.propose, *getattr(self.propose, "proposers", [])]:
            teacher = getattr(p, "teacher", None)
            if teacher is not None:
                meters[id(teacher)] = teacher
        teacher = getattr(self.source, "teacher", None)
        if teacher is not None:
            meters[id(teacher)] = teacher
        total: Counter[str] = Counter()
        for teacher in meters.values():
            total.update({k: v for k, v in teacher.usage.to_dict().items() if isinstance(v, (int, float))})
        return dict(total)

    def examples_for(self, iteration: int) -> list[dict[str, Any]]:
        """The few-shot examples of a round (drawn once per round, deterministically)."""
        if self._round_examples is None or self._round_examples[0] != iteration:
            records = [r for r in self.store.records if r.get("iteration", 0) < iteration]
            rng = np.random.default_rng([self.config.seed, iteration, 1])
            ex = self.steering.examples(records, self.config.n_examples, rng)
            self._round_examples = (iteration, ex)
        return self._round_examples[1]

    # --- one draw --------------------------------------------------------------------------

    def draw(self, d: int) -> dict[str, Any]:
        """Run draw ``d``: returns its draw-log entry (records are appended as they are kept)."""
        cfg = self.config
        start = time.perf_counter()
        usage_before = self._usage()
        rng = np.random.default_rng([cfg.seed, d])
        iteration = d // cfg.round_size
        suite_name, family = self.steering.choose(rng, self.suite_names, self.families)
        scale = cfg.scales[int(rng.integers(len(cfg.scales)))]
        entry: dict[str, Any] = {
            "draw": d, "iteration": iteration, "suite": suite_name, "scale": scale, "family": family,
            "reason": None, "candidates": 0, "kept": 0,
        }  # fmt: skip
        ctx = self.schema(suite_name, scale)
        cand = self.source.draw(ctx, family, rng, self.examples_for(iteration))
        if cand is None:
            return self._close_entry(entry, "no_query", start, usage_before)
        qfp = fingerprint(cand.query, ctx.schema_map)
        sfp = shape_fingerprint(cand.query, ctx.schema_map)
        entry.update(query_fingerprint=qfp, shape_fingerprint=sfp)
        if qfp in self.steering.slow_seen:
            return self._close_entry(entry, "duplicate", start, usage_before)
        if self.steering.shapes[sfp] >= cfg.max_per_shape:
            return self._close_entry(entry, "near_duplicate", start, usage_before)
        if sfp in self._held_out_shapes(suite_name, ctx):
            return self._close_entry(entry, "test_task", start, usage_before)
        suite = self.suites[suite_name]
        task = Task(
            id=f"{suite_name}/gen-{d:06d}", query=cand.query, reference=cand.reference or None,
            patterns=cand.patterns, suite=suite_name, schema=str(suite.spec.get("schema_name", suite_name)),
            output_columns=cand.output_columns,
        )  # fmt: skip
        # max_seconds is each execution's wall-clock safety net (the baseline gets 5x of it)
        options = EvalOptions(max_seconds=cfg.max_baseline_seconds, num_variants=cfg.num_variants)
        try:
            runner = TaskRunner.from_suite(suite, task, scale, options)
        except QuillError as err:  # an unusable slow query (e.g. a teacher's) is an outcome, recorded
            entry["error"] = str(err)[:300]
            return self._close_entry(entry, "baseline_error", start, usage_before)
        try:
            reason = self._check_baseline(runner, entry)
            if reason:
                return self._close_entry(entry, reason, start, usage_before)
            observation = runner.observation()
            prepare = getattr(self.propose, "prepare", None)
            if callable(prepare):
                prepare(DrawContext(suite, scale, ctx.database, cand))
            try:
                proposed = self.propose(observation, cfg.k)
            except Exception as err:  # a proposer bug costs one draw, recorded, never the whole run
                log.warning("draw %d: the proposer failed: %s: %s", d, type(err).__name__, err)
                log.debug("proposer traceback", exc_info=True)
                entry["error"] = f"{type(err).__name__}: {err}"[:300]
                return self._close_entry(entry, "proposer_error", start, usage_before)
            actions = [a for a in dict.fromkeys(proposed) if isinstance(a, str) and a.strip()]
            results = list(zip(actions, self._score(suite_name, task, scale, options, runner, actions)))
            entry["candidates"] = len(results)
            kept = self._keep(d, iteration, ctx, cand, runner, results, qfp, sfp)
            entry["kept"] = len(kept)
            return self._close_entry(entry, None, start, usage_before)
        finally:
            runner.close()

    def _score(
        self,
        suite: str,
        task: Task,
        scale: str,
        options: EvalOptions,
        runner: TaskRunner,
        actions: Sequence[str],
    ) -> list[EvalResult]:
        """The candidates' results, in order: here, or a contiguous share per worker.

        A worker builds the task's runner itself; its baseline comes from the disk cache that
        ``runner`` filled (on another machine it is computed again, with the same result).
        """
        if self.config.workers == 0 or not actions:
            return [runner.evaluate(a) for a in actions]
        if self._pool is None:
            self._pool = make_pool(self.config.workers, ray=self.config.ray)
        n = min(self.config.workers, len(actions))
        shares = [list(actions[i * len(actions) // n : (i + 1) * len(actions) // n]) for i in range(n)]
        futures = [self._pool.submit(score_candidates, suite, task, scale, options, s) for s in shares]
        return [result for future in futures for result in future.result()]

    def _check_baseline(self, runner: Any, entry: dict[str, Any]) -> str | None:
        try:
            base = runner.baseline
        except QuillError as err:
            entry["error"] = str(err)[:300]
            return "baseline_error"
        if base.main.seconds > self.config.max_baseline_seconds:
            return "too_slow"
        if base.main.work < self.config.min_baseline_work:
            return "too_cheap"
        if not base.main.rows:
            return "empty_result"
        return None

    def _keep(
        self,
        d: int,
        iteration: int,
        ctx: SchemaContext,
        cand: Candidate,
        runner: Any,
        results: list[tuple[str, Any]],
        qfp: str,
        sfp: str,
    ) -> list[dict[str, Any]]:
        cfg = self.config
        sources = getattr(self.propose, "sources", {})
        good, fps = [], set()
        for action, res in results:
            if res.verdict is not Verdict.IMPROVED or res.reward < cfg.acceptance:
                continue
            afp = action_fingerprint(action, ctx.view, ctx.schema_map)
            if afp not in fps:
                fps.add(afp)
                good.append((action, res, afp))
        good.sort(key=lambda g: -g[1].reward)  # stable: ties keep the proposer's order
        good = good[: max(min(cfg.max_per_query, cfg.target - self.steering.kept), 0)]
        kept_actions = {a for a, _, _ in good}
        rejected = [
            {
                "action": a,
                "verdict": r.verdict.value,
                "reward": round(r.reward, 4),
                "speedup": None if r.speedup is None else round(r.speedup, 3),
                "error": (r.error or "")[:200],
            }
            for a, r in results
            if a not in kept_actions
        ]
        suite = ctx.suite
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        kept = []
        for action, res, afp in good:
            key = f"{qfp}:{afp}"
            rec = DataRecord.from_result(
                res,
                id=hashlib.sha1(key.encode()).hexdigest()[:16],
                suite=suite.name,
                schema=str(suite.spec.get("schema_name", suite.name)),
                suite_version=suite.version,
                suite_hash=suite.data_hash,
                scale=ctx.scale,
                query=cand.query,
                output_columns=list(cand.output_columns) if cand.output_columns else None,
                action=action,
                family=cand.family,
                patterns=list(cand.patterns),
                bucket=bucket(float(res.speedup)) or BELOW_MIX,
                quill_version=quill_env.__version__,
                query_fingerprint=qfp,
                action_fingerprint=afp,
                shape_fingerprint=sfp,
                proposer=sources.get(action, name_of(self.propose)),
                model=model_of(self.propose) or cfg.model,
                slow_source=self.source.name,
                iteration=iteration,
                draw=d,
                seed=cfg.seed,
                timestamp=now,
                rejected=rejected,
                siblings=[{"action": a, "reward": round(r.reward, 4)} for a, r, _ in good if a != action],
            ).to_dict()
            existing = self.store.get(key)
            if existing is None:
                self.store.append(rec)
            elif int(existing.get("draw", -1)) != d:
                continue  # stored by another draw: a duplicate, not this draw's record
            self.steering.observe_record(rec)
            kept.append(rec)
        return kept

    def _close_entry(
        self, entry: dict[str, Any], reason: str | None, start: float, usage_before: Mapping[str, float]
    ) -> dict[str, Any]:
        entry["reason"] = reason
        entry["seconds"] = round(time.perf_counter() - start, 4)
        after = self._usage()
        delta = {k: v - usage_before.get(k, 0) for k, v in after.items() if v != usage_before.get(k, 0)}
        if delta:
            entry["usage"] = delta
        return entry

    # --- the run ---------------------------------------------------------------------------

    def run(self, on_progress: Callable[[GenerateStats], None] | None = None) -> GenerateStats:
        """Draw until the store holds ``target`` records (or the draw limit is reached)."""
        start = time.perf_counter()
        d = self.next_draw
        try:
            while self.steering.kept < self.config.target and d < self.config.draw_limit:
                entry = self.draw(d)
                self.draw_log.write(entry)
                self.steering.observe_draw(entry)
                self._count_draw(entry)
                self._refresh_stats()
                self.stats.seconds = time.perf_counter() - start
                d += 1
                self.next_draw = d
                if on_progress:
                    on_progress(self.stats)
        finally:
            self.close()
        if self.steering.kept < self.config.target:
            log.warning(
                "stopped after %d draws with %d of %d records", d, self.steering.kept, self.config.target
            )
        return self.stats

    def close(self) -> None:
        """Close the store, the draw log, the generator's connections and the scoring workers."""
        if self._pool is not None:
            self._pool.close(cancel=True)
            self._pool = None
        self.store.close()
        self.draw_log.close()
        for ctx in self._ctx.values():
            ctx.close()


def score_candidates(
    suite: str, task: Task, scale: str, options: EvalOptions, actions: Sequence[str]
) -> list[EvalResult]:
    """Score a share of one draw's candidates on its slow query (in a worker of the loop)."""
    runner = TaskRunner.from_suite(get_suite(suite), task, scale, options)
    try:
        return [runner.evaluate(a) for a in actions]
    finally:
        runner.close()


def generate(
    config: GenerateConfig,
    propose: Propose | None = None,
    source: SlowQuerySource | None = None,
    on_progress: Callable[[GenerateStats], None] | None = None,
) -> GenerateStats:
    """Run the data loop until ``config.target`` verified records are stored.

    Args:
        config: the run's settings.
        propose: the optimizer (default: the heuristic agent, or the reference fallback when
            :mod:`quill_agents.heuristic` is not importable).
        source: where slow queries come from (default: the procedural generator).
        on_progress: called with the running statistics after every draw.

    Returns:
        The run's statistics (cumulative over restarts of the same run directory).
    """
    propose = propose or build_proposer(["heuristic"])
    return DataLoop(config, propose, source).run(on_progress)


def summarize(records: Sequence[Mapping[str, Any]], target_mix: Mapping[str, float] = TARGET_MIX) -> dict:
    """Counts, uniqueness, speedup mix and coverage of a set of records."""
    n = len(records)
    buckets = Counter(bucket(float(r["speedup"])) or BELOW_MIX for r in records)
    mix = {b: round(buckets.get(b, 0) / n, 4) if n else 0.0 for b in (*target_mix, BELOW_MIX)}
    return {
        "records": n,
        "unique_keys": len({record_key(r) for r in records}),
        "unique_slow_queries": len({r["query_fingerprint"] for r in records}),
        "unique_shapes": len({r.get("shape_fingerprint") for r in records}),
        "mix": mix,
        "target_mix": dict(target_mix),
        "families": dict(Counter(r["family"] for r in records).most_common()),
        "patterns": dict(Counter(p for r in records for p in r.get("patterns", ())).most_common()),
        "schemas": dict(Counter(r["suite"] for r in records).most_common()),
        "scales": dict(Counter(r["scale"] for r in records).most_common()),
        "mean_reward": round(sum(r["reward"] for r in records) / n, 4) if n else 0.0,
        "median_speedup": float(np.median([r["speedup"] for r in records])) if n else 0.0,
        "max_speedup": max((r["speedup"] for r in records), default=0.0),
        "geo_mean_speedup": (
            round(math.exp(sum(math.log(max(r["speedup"], 1e-9)) for r in records) / n), 3) if n else 0.0
        ),
    }


__all__ = [
    "BELOW_MIX",
    "CompositeProposer",
    "DataLoop",
    "DrawContext",
    "GenerateConfig",
    "GenerateStats",
    "HeuristicProposer",
    "Observation",
    "ProceduralSource",
    "Propose",
    "ReferenceProposer",
    "SlowQuerySource",
    "Steering",
    "TeacherProposer",
    "TeacherSource",
    "action_fingerprint",
    "build_proposer",
    "build_teacher",
    "generate",
    "shape_fingerprint",
    "summarize",
]
