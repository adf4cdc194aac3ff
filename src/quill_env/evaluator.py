"""Scoring actions: the pipeline from untrusted text to a verdict and a reward.

:class:`TaskRunner` owns one task's databases (the main one and its K variants) and its cached
baseline, and scores actions in a fixed order: sandbox policy -> anti-reward-hacking checks ->
variants (cheap, catch coincidental matches) -> main database under a budget relative to the
baseline -> measurement -> reward. :func:`evaluate` is the one-call public API.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from quill_env import cache as baseline_cache
from quill_env._version import DATA_FORMAT, __version__
from quill_env.backends import open_backend
from quill_env.backends.base import Backend, Budget, ExecResult, ExecStatus, Timer
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.compare import OrderPolicy, compare_rows, tie_segments
from quill_env.errors import BaselineError, ConfigError, DatabaseError, IndexBuildError, UnknownNameError
from quill_env.fingerprint import canonical_sql
from quill_env.measure import CostMode, WallOptions, calibrated, interleaved, work_ratio
from quill_env.policy import Action, PolicyViolation, SchemaView, parse_action
from quill_env.reward import RewardConfig, Verdict, compute_reward
from quill_env.tasks import Suite, Task
from quill_env.variants import Variant, VariantBuilder
from quill_env.verify import anti_hacking, order_keys, order_plan, project


@dataclass(frozen=True)
class EvalOptions:
    """How actions are scored.

    Args:
        cost: ``work`` (deterministic, default) or ``wall``.
        reward: the reward configuration.
        budget_factor: a candidate is stopped at this multiple of the baseline's cost.
        num_variants: variant databases checked besides the main one (0 disables them).
        variant_rows: rows sampled per table for each variant.
        variant_work_floor: the smallest work budget on a variant (they are tiny).
        index_work: the work budget for building an action's indexes.
        max_rows: the most rows the baseline may return.
        max_seconds: wall-clock safety net for any one execution.
        wall: options of the ``wall`` mode.
        order: how strictly row order is compared when the original has an ORDER BY.
        rel_tol: relative float tolerance of the comparison.
        seed: seed of the variant databases.
    """

    cost: CostMode = CostMode.WORK
    reward: RewardConfig = field(default_factory=RewardConfig)
    budget_factor: float = 2.0
    num_variants: int = 8
    variant_rows: int = 40
    variant_work_floor: int = 200_000
    index_work: int = 200_000_000
    max_rows: int = 1_000_000
    max_seconds: float = 60.0
    wall: WallOptions = field(default_factory=WallOptions)
    order: OrderPolicy = OrderPolicy.TIES
    rel_tol: float = 1e-9
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost", _coerce(CostMode, self.cost, "cost mode"))
        object.__setattr__(self, "order", _coerce(OrderPolicy, self.order, "order policy"))
        if self.budget_factor < 1.0:
            raise ConfigError("budget_factor must be >= 1.0 (a multiple of the baseline's cost)")
        if self.num_variants < 0 or self.num_variants > len(VariantBuilder.MUTATIONS):
            raise ConfigError(f"num_variants must lie in [0, {len(VariantBuilder.MUTATIONS)}]")
        if self.variant_rows < 1 or self.max_rows < 1 or self.max_seconds <= 0:
            raise ConfigError("variant_rows, max_rows and max_seconds must be positive")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> EvalOptions:
        """Build options from keyword arguments, with a clear error for unknown ones."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UnknownNameError("option", unknown[0], known)
        if isinstance(kwargs.get("reward"), Mapping):
            kwargs["reward"] = RewardConfig(**kwargs["reward"])
        return cls(**kwargs)


def _coerce(enum: type, value: Any, kind: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise UnknownNameError(kind, str(value), [m.value for m in enum]) from None


@dataclass(frozen=True)
class VariantOutcome:
    """How the candidate fared on one variant database."""

    name: str
    status: str
    """``match``, ``mismatch``, ``error``, ``timeout`` or ``skipped``."""
    detail: str = ""


@dataclass
class EvalResult:
    """The outcome of scoring one action."""

    verdict: Verdict
    reward: float
    correct: bool = False
    speedup: float | None = None
    """Calibrated speedup estimate (``work`` mode) or conservative bound (``wall`` mode)."""
    speedup_raw: float | None = None
    """Raw work ratio (``work``) or point estimate (``wall``)."""
    reward_terms: dict[str, float] = field(default_factory=dict)
    error: str = ""
    baseline_cost: float | None = None
    candidate_cost: float | None = None
    cost_unit: str = ""
    cost_mode: str = "work"
    variants: list[VariantOutcome] = field(default_factory=list)
    n_indexes: int = 0
    engine: str = ""
    task_id: str = ""
    wall: dict[str, float] | None = None
    seconds: float = 0.0
    """Time spent scoring this action."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (verdict as its string)."""
        out = asdict(self)
        out["verdict"] = self.verdict.value
        return out

    @property
    def info(self) -> dict[str, Any]:
        """The Gymnasium ``info`` dict of a step (deterministic in ``work`` mode: no timings)."""
        out = self.to_dict()
        out.pop("reward")
        out.pop("seconds")
        return out


@dataclass
class RunRecord:
    """The original query's outcome on one database."""

    rows: list[tuple]
    columns: list[str]
    work: int
    seconds: float
    segments: list[tuple[int, int]] | None


@dataclass
class Baseline:
    """The original query's results and costs on the main database and every variant."""

    main: RunRecord
    variants: list[RunRecord]


class TaskRunner:
    """Scores actions on one task. One runner per task per worker; not thread-safe.

    Args:
        task: the task (its ``query`` is the slow original).
        backend: the main database.
        variants: variant database images.
        options: scoring options.
        timer: the clock (inject a fake one in tests).
        data_key: identity of the data (databases and variants); when given, the baseline is
            also cached on disk under that key.
    """

    def __init__(
        self,
        task: Task,
        backend: Backend,
        variants: Sequence[Variant] = (),
        options: EvalOptions | None = None,
        timer: Timer = time.perf_counter,
        data_key: str | None = None,
    ) -> None:
        self.task = task
        self.data_key = data_key
        self.backend = backend
        self.options = options or EvalOptions()
        self._timer = timer
        self._variant_images = list(variants)
        self._variants: list[SQLiteBackend] | None = None
        tables = backend.tables()
        self.schema_view = SchemaView({k: [c.name.lower() for c in t.columns] for k, t in tables.items()})
        self._schema_map = {t.name: {c.name: c.type or "TEXT" for c in t.columns} for t in tables.values()}
        self._base_tables = {k for k, t in tables.items()}
        try:
            self.query = sqlglot.parse_one(task.query, read=backend.dialect)
        except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as err:
            raise BaselineError(f"task {task.id}: cannot parse the original query: {err}") from None
        if not isinstance(self.query, exp.Query):
            raise BaselineError(
                f"task {task.id}: the original must be a query, got {type(self.query).__name__}"
            )
        self._plan = order_plan(self.query, backend.dialect)
        self._size = _ast_size(self.query)
        self._normalized = self.query.sql(backend.dialect, normalize=True)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_suite(
        cls, suite: Suite, task: Task, scale: str | None = None, options: EvalOptions | None = None
    ) -> TaskRunner:
        """A runner for a suite task at ``scale``; variants come from the suite's generator."""
        options = options or EvalOptions()
        backend = _shared_backend(str(suite.database(scale)))
        source_path = str(suite.database("variant"))
        images = _variants_for(source_path, task.query, options)
        data_key = f"suite:{suite.name}:{suite.data_hash}:{scale or suite.default_scale}"
        return cls(task, backend, images, options, data_key=data_key)

    @classmethod
    def for_database(
        cls,
        database: str | os.PathLike[str],
        query: str,
        options: EvalOptions | None = None,
        task_id: str | None = None,
        output_columns: Sequence[str] | None = None,
    ) -> TaskRunner:
        """A runner for a user's own database; variants are derived from that database."""
        options = options or EvalOptions()
        path = str(Path(_strip_url(database)).resolve())
        backend = _shared_backend(path)
        images = _variants_for(path, query, options)
        digest = hashlib.sha1(query.encode()).hexdigest()[:10]
        task = Task(
            id=task_id or f"user/{Path(path).stem}-{digest}",
            query=query,
            output_columns=tuple(output_columns) if output_columns else None,
        )
        return cls(task, backend, images, options, data_key=_file_key(path))

    # --- baseline --------------------------------------------------------------------------

    @property
    def variant_backends(self) -> list[SQLiteBackend]:
        """The variant databases (opened on first use)."""
        if self._variants is None:
            self._variants = [SQLiteBackend.from_bytes(v.image, label=v.name) for v in self._variant_images]
        return self._variants

    @functools.cached_property
    def baseline(self) -> Baseline:
        """The original's rows and costs everywhere, computed once.

        Raises:
            BaselineError: the original fails or returns more than ``max_rows`` rows.
        """
        key = self._cache_key()
        entry = baseline_cache.load(key) if key else None
        if entry is not None:
            return Baseline(
                _record_from_json(entry["main"]), [_record_from_json(v) for v in entry["variants"]]
            )
        main = self._run_original(self.backend, "main database")
        variants = [self._run_original(b, f"variant {b!r}") for b in self.variant_backends]
        if key and len(main.rows) + sum(len(v.rows) for v in variants) <= baseline_cache.MAX_CACHED_ROWS:
            entry = {"main": _record_to_json(main), "variants": [_record_to_json(v) for v in variants]}
            baseline_cache.save(key, entry)
        return Baseline(main, variants)

    def _cache_key(self) -> str | None:
        if self.data_key is None:
            return None
        opts = self.options
        return baseline_cache.cache_key(
            __version__, DATA_FORMAT, self.backend.engine_version(), self.data_key, self.task.query,
            self.task.output_columns, opts.num_variants, opts.variant_rows, opts.seed, opts.max_rows,
        )  # fmt: skip

    def _run_original(self, backend: Backend, where: str) -> RunRecord:
        opts = self.options
        result = backend.execute(
            self.task.query, Budget(max_seconds=opts.max_seconds * 5, max_rows=opts.max_rows)
        )
        if not result.ok:
            raise BaselineError(
                f"task {self.task.id}: the original query fails on the {where}: "
                f"{result.status.value}: {result.error}"
            )
        rows, columns = result.rows, result.columns
        segments = None
        plan = self._plan
        if plan.ordered and not plan.strict:
            if plan.augmented_sql is not None:
                aug = backend.execute(
                    plan.augmented_sql, Budget(max_seconds=opts.max_seconds * 5, max_rows=opts.max_rows)
                )
                if aug.ok and len(aug.rows) == len(rows):
                    width = len(columns)
                    rows = [r[:width] for r in aug.rows]
                    segments = tie_segments(order_keys(plan, aug.rows, width))
            else:
                segments = tie_segments(order_keys(plan, rows, len(columns)))
        if self.task.output_columns:
            try:
                rows = project(rows, columns, self.task.output_columns)
            except ValueError:
                raise BaselineError(
                    f"task {self.task.id}: output_columns {list(self.task.output_columns)} are not all "
                    f"among the original's columns {columns}"
                ) from None
            columns = list(self.task.output_columns)
        return RunRecord(rows, columns, result.work, result.seconds, segments)

    # --- observation -----------------------------------------------------------------------

    @functools.cached_property
    def schema_text(self) -> str:
        """The schema with row counts and existing indexes."""
        return self.backend.schema_text()

    @functools.cached_property
    def plan_text(self) -> str:
        """The engine's plan of the slow query."""
        return self.backend.explain(self.task.query)

    def observation(self) -> dict[str, str]:
        """The observation of this task: schema, query and plan."""
        query = self.task.query.strip()
        if self.task.output_columns:
            query += f"\n-- the application reads only: {', '.join(self.task.output_columns)}"
        return {"schema": self.schema_text, "query": query, "plan": self.plan_text}

    # --- scoring ---------------------------------------------------------------------------

    def evaluate(self, action: object) -> EvalResult:
        """Score one action. Never raises for anything the action contains."""
        start = self._timer()
        try:
            result = self._evaluate(action)
        except RecursionError:
            result = self._finish(Verdict.REJECTED, "the SQL is nested too deeply to analyse")
        result.seconds = self._timer() - start
        result.engine = self.backend.engine_version()
        result.task_id = self.task.id
        result.cost_mode = self.options.cost.value
        result.cost_unit = self.backend.work_unit if self.options.cost is CostMode.WORK else "seconds"
        return result

    def _finish(self, verdict: Verdict, error: str = "", **kw: Any) -> EvalResult:
        verdict, reward, terms = compute_reward(verdict, None, config=self.options.reward)
        return EvalResult(
            verdict=verdict, reward=reward, reward_terms=terms, error=error, correct=verdict.correct, **kw
        )

    def _evaluate(self, action: object) -> EvalResult:
        base = self.baseline
        cfg = self.options
        try:
            act = parse_action(
                action,
                self.schema_view,
                max_indexes=cfg.reward.max_indexes,
                dialect=self.backend.dialect,
                allow_values=self.query.find(exp.Values) is not None,
            )
            if not act.indexes and act.query.sql(self.backend.dialect, normalize=True) == self._normalized:
                return self._finish(
                    Verdict.UNCHANGED, baseline_cost=base.main.work, candidate_cost=base.main.work
                )
            anti_hacking(self.query, act.query)
        except PolicyViolation as violation:
            return self._finish(violation.verdict, violation.message, n_indexes=0)
        n_idx = len(act.indexes)
        outcomes: list[VariantOutcome] = []
        for backend, record in zip(self.variant_backends, base.variants):
            budget = Budget(
                max_work=max(int(cfg.budget_factor * record.work), cfg.variant_work_floor),
                max_seconds=cfg.max_seconds,
                max_rows=len(record.rows) + 1,
            )
            failure = self._check(backend, act, record, budget, f"variant {backend!r}")
            if failure is not None:
                outcomes.append(VariantOutcome(repr(backend), _outcome_status(failure), failure.error))
                failure.variants = outcomes
                failure.n_indexes = n_idx
                return failure
            outcomes.append(VariantOutcome(repr(backend), "match"))
        main = base.main
        if cfg.cost is CostMode.WORK:
            budget = Budget(
                max_work=int(cfg.budget_factor * main.work) + 10_000,
                max_seconds=cfg.max_seconds,
                max_rows=len(main.rows) + 1,
            )
        else:
            budget = Budget(
                max_seconds=max(cfg.budget_factor * main.seconds, 0.05), max_rows=len(main.rows) + 1
            )
        holder: list[ExecResult] = []
        failure = self._check(self.backend, act, main, budget, "main database", holder)
        common = {"variants": outcomes, "n_indexes": n_idx, "baseline_cost": float(main.work)}
        if failure is not None:
            for key, value in common.items():
                setattr(failure, key, value)
            return failure
        run = holder[0]
        wall = None
        if cfg.cost is CostMode.WORK:
            raw = work_ratio(main.work, run.work)
            backend = self.backend
            speedup = calibrated(
                main.work,
                run.work,
                len(main.rows),
                alpha=backend.calibration_alpha,
                statement_work=backend.calibration_statement_work,
                row_work=backend.calibration_row_work,
            )
            cand_cost: float = float(run.work)
        else:
            measurement = self._measure_wall(act)
            raw, speedup = measurement.speedup, measurement.lower
            common["baseline_cost"] = measurement.baseline_seconds
            cand_cost = measurement.candidate_seconds
            wall = {
                "lower": measurement.lower,
                "upper": measurement.upper,
                "point": measurement.speedup,
                "pairs": measurement.pairs,
            }
        verdict, reward, terms = compute_reward(
            Verdict.IMPROVED,
            speedup,
            original_size=self._size,
            rewrite_size=_ast_size(act.query),
            n_indexes=n_idx,
            config=cfg.reward,
        )
        if verdict is Verdict.NO_GAIN and not act.indexes and self._canonically_same(act.query):
            verdict = Verdict.UNCHANGED
            reward = cfg.reward.verdict_rewards[verdict.value]
            terms = {"verdict": reward}
        return EvalResult(
            verdict=verdict,
            reward=reward,
            correct=True,
            speedup=speedup,
            speedup_raw=raw,
            reward_terms=terms,
            candidate_cost=cand_cost,
            wall=wall,
            **common,
        )

    def _check(
        self,
        backend: Backend,
        act: Action,
        record: RunRecord,
        budget: Budget,
        where: str,
        holder: list[ExecResult] | None = None,
    ) -> EvalResult | None:
        """Run the candidate on one database and compare; an EvalResult on failure, else None."""
        try:
            with backend.scratch_indexes(
                act.indexes, Budget(max_work=self.options.index_work, max_seconds=self.options.max_seconds)
            ):
                run = backend.execute(act.query_sql, budget)
        except IndexBuildError as err:
            return self._finish(Verdict.RUNTIME_ERROR, f"building the indexes failed on the {where}: {err}")
        if holder is not None:
            holder.append(run)
        status = run.status
        if status is ExecStatus.TIMEOUT:
            return self._finish(
                Verdict.TIMEOUT,
                f"stopped on the {where} at {self.options.budget_factor:g}x the baseline's cost",
                candidate_cost=float(run.work),
            )
        if status is ExecStatus.PREPARE_ERROR:
            return self._finish(Verdict.SYNTAX_ERROR, f"{where}: {run.error}")
        if status is ExecStatus.DENIED:
            return self._finish(Verdict.REJECTED, f"{where}: {run.error}")
        if status is ExecStatus.RUNTIME_ERROR:
            return self._finish(Verdict.RUNTIME_ERROR, f"{where}: {run.error}")
        if status is ExecStatus.ROW_CAP:
            return self._finish(
                Verdict.WRONG_RESULT, f"{where}: returns more rows than the original ({len(record.rows)})"
            )
        if self._base_tables and not (run.tables_read & self._base_tables):
            return self._finish(Verdict.REJECTED, "the rewrite reads no base table (hard-coded answer)")
        rows, columns = run.rows, run.columns
        if self.task.output_columns:
            wanted = [c.lower() for c in self.task.output_columns]
            if [c.lower() for c in columns] != wanted:
                return self._finish(
                    Verdict.WRONG_RESULT,
                    f"the application reads exactly {list(self.task.output_columns)}; "
                    f"the rewrite returns {columns}",
                )
        policy = self.options.order if self._plan.ordered else OrderPolicy.IGNORE
        if self._plan.ordered and self._plan.strict and policy is OrderPolicy.TIES:
            policy = OrderPolicy.STRICT
        verdict = compare_rows(
            record.rows,
            rows,
            n_expected_columns=len(record.columns),
            n_actual_columns=len(columns),
            order=policy,
            segments=record.segments,
            rel_tol=self.options.rel_tol,
        )
        if not verdict.equal:
            return self._finish(Verdict.WRONG_RESULT, f"{where}: {verdict.reason}")
        return None

    def _measure_wall(self, act: Action) -> Any:
        main = self.backend
        target = _clone(main) if act.indexes else main

        def run_base() -> float:
            return main.execute(self.task.query, Budget(max_seconds=self.options.max_seconds)).seconds

        try:
            with target.scratch_indexes(act.indexes):
                return interleaved(
                    run_base,
                    lambda: (
                        target.execute(act.query_sql, Budget(max_seconds=self.options.max_seconds)).seconds
                    ),
                    self.options.wall,
                    self._timer,
                )
        finally:
            if target is not main:
                target.close()

    def _canonically_same(self, candidate: exp.Query) -> bool:
        if _ast_size(candidate) > 4 * self._size + 200:
            return False  # canonicalization is superlinear; a far bigger rewrite is not the same query
        dialect = self.backend.dialect
        return canonical_sql(candidate, self._schema_map, dialect) == canonical_sql(
            self.query, self._schema_map, dialect
        )

    def close(self) -> None:
        """Close the databases this runner opened."""
        self.backend.close()
        for b in self._variants or []:
            b.close()


def _record_to_json(record: RunRecord) -> dict:
    out = asdict(record)
    out["rows"] = baseline_cache.encode_rows(record.rows)
    return out


def _record_from_json(raw: dict) -> RunRecord:
    segments = [tuple(s) for s in raw["segments"]] if raw["segments"] is not None else None
    return RunRecord(
        rows=baseline_cache.decode_rows(raw["rows"]),
        columns=list(raw["columns"]),
        work=int(raw["work"]),
        seconds=float(raw["seconds"]),
        segments=segments,
    )


def _outcome_status(result: EvalResult) -> str:
    return {
        Verdict.WRONG_RESULT: "mismatch",
        Verdict.TIMEOUT: "timeout",
    }.get(result.verdict, "error")


def _ast_size(tree: exp.Expression) -> int:
    return sum(1 for _ in tree.walk())


def _strip_url(database: str | os.PathLike[str]) -> str:
    text = os.fspath(database)
    return text.removeprefix("sqlite:///") if text.startswith("sqlite:///") else text


# --- process-wide caches -------------------------------------------------------------------

_LOCK = threading.Lock()
_BACKENDS: OrderedDict[str, bytes] = OrderedDict()
_VARIANTS: OrderedDict[tuple, list[Variant]] = OrderedDict()
_RUNNERS: OrderedDict[tuple, TaskRunner] = OrderedDict()


def _file_key(path: str) -> str:
    if not os.path.exists(path):
        raise DatabaseError(f"no such database file: {path}")
    st = os.stat(path)
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def _shared_backend(path: str) -> SQLiteBackend:
    """A private in-memory copy of ``path``; the file is read once per process and version."""
    key = _file_key(path)
    with _LOCK:
        image = _BACKENDS.get(key)
    if image is None:
        backend = open_backend(path)
        image = backend.serialize()
        backend.close()
        with _LOCK:
            _BACKENDS[key] = image
            while len(_BACKENDS) > 8:
                _BACKENDS.popitem(last=False)
    return SQLiteBackend.from_bytes(image, label=path)


def _clone(backend: SQLiteBackend) -> SQLiteBackend:
    return SQLiteBackend.from_bytes(backend.serialize(), label=backend.label)


def _variants_for(source_path: str, query: str, options: EvalOptions) -> list[Variant]:
    """Variant images of ``query`` sampled from the database at ``source_path`` (cached)."""
    if options.num_variants == 0:
        return []
    key = (_file_key(source_path), query, options.num_variants, options.variant_rows, options.seed)
    with _LOCK:
        cached = _VARIANTS.get(key)
    if cached is None:
        source = _shared_backend(source_path)
        try:
            builder = VariantBuilder(source, rows_per_table=options.variant_rows, seed=options.seed)
            cached = builder.build(query, options.num_variants)
        finally:
            source.close()
        with _LOCK:
            _VARIANTS[key] = cached
            while len(_VARIANTS) > 256:
                _VARIANTS.popitem(last=False)
    return cached


def evaluate(
    database: str | os.PathLike[str],
    slow_sql: str,
    candidate_sql: str,
    *,
    output_columns: Sequence[str] | None = None,
    **options: Any,
) -> EvalResult:
    """Score a rewrite of a slow query on your own database, without an RL loop.

    The original's baseline and variant databases are cached per process, so scoring many
    candidates of one query pays for them once.

    Args:
        database: path of a SQLite file (or ``sqlite:///path``); it is never modified.
        slow_sql: the original query.
        candidate_sql: the rewrite (optionally preceded by ``CREATE INDEX`` statements; a
            markdown ``sql`` fence is accepted).
        output_columns: the columns the application reads, when the original selects more.
        **options: any field of :class:`EvalOptions` (``cost="wall"``, ``num_variants=4``,
            ``budget_factor=3.0``, ``reward={...}``).

    Returns:
        An :class:`EvalResult` with ``verdict``, ``correct``, ``speedup``, ``reward`` and
        ``error`` among others.

    Raises:
        DatabaseError: the database cannot be opened.
        BaselineError: the slow query itself fails.
        ConfigError: an option is invalid.
    """
    opts = EvalOptions.from_kwargs(**options)
    path = str(Path(_strip_url(database)).resolve())
    key = (_file_key(path), slow_sql, tuple(output_columns or ()), repr(opts))
    with _LOCK:
        runner = _RUNNERS.get(key)
    if runner is None:
        runner = TaskRunner.for_database(path, slow_sql, opts, output_columns=output_columns)
        with _LOCK:
            _RUNNERS[key] = runner
            while len(_RUNNERS) > 16:
                _RUNNERS.popitem(last=False)[1].close()
    return runner.evaluate(candidate_sql)


__all__ = ["EvalOptions", "EvalResult", "TaskRunner", "VariantOutcome", "evaluate"]
