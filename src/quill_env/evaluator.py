"""Scoring actions: the pipeline from untrusted text to a verdict and a reward.

:class:`TaskRunner` owns one task's databases (the main one and its K variants) and its cached
baseline, and scores actions in a fixed order: sandbox policy -> anti-reward-hacking checks ->
variants (cheap, catch coincidental matches) -> main database under a budget relative to the
baseline -> measurement -> reward. :func:`evaluate` is the one-call public API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from quill_env import cache as baseline_cache
from quill_env._version import DATA_FORMAT, __version__
from quill_env.action_policy import Action, PolicyViolation, SchemaView, encodable, parse_action
from quill_env.backends import DEFAULT_ENGINE, is_server_url, split_url
from quill_env.backends.base import Backend, Budget, ExecResult, ExecStatus, Timer
from quill_env.canonical import canonical_sql
from quill_env.compare import OrderPolicy, compare_rows, tie_segments
from quill_env.errors import BaselineError, ConfigError, IndexBuildError, UnknownNameError
from quill_env.lineage import lineage_rowids
from quill_env.measure import CostMode, WallMeasurement, WallOptions, interleaved, meter_for
from quill_env.prompt import make_observation
from quill_env.provenance import FAILED, LiteralGuard, LiteralPolicy
from quill_env.reward import RewardConfig, Verdict, compute_reward
from quill_env.runners import backend_lock, file_key, runner_cache, shared_backend, variants_for
from quill_env.tasks import Suite, Task
from quill_env.twins import Twin, build_twin, empty_table, materialized
from quill_env.twins import applied as twin_applied
from quill_env.unmetered import check_unmetered
from quill_env.variants import Variant, VariantBuilder
from quill_env.verify import anti_hacking, order_is_fixed, order_keys, order_plan, project, top_order


@dataclass(frozen=True)
class EvalOptions:
    """How actions are scored.

    Args:
        cost: ``work`` (deterministic, default) or ``wall``.
        reward: the reward configuration.
        budget_factor: a candidate is stopped at this multiple of the baseline's cost.
        num_variants: small variant databases checked besides the main one (0 disables them;
            ``None``: all of :attr:`VariantBuilder.MUTATIONS`).
        num_twins: full-size perturbed twins of the main database checked after it (see
            :mod:`quill_env.twins`: the first moves the answer's rows to other keys and changes
            their values, the second takes the answer away; 0 disables them).
        empty_tables: also run the candidate on copies of a variant with one table the original
            names emptied (rows that referenced it go too); off only for research on the other
            defences.
        literals: which constants a rewrite may contain (:class:`LiteralPolicy`).
        variant_rows: rows sampled per table for each variant.
        variant_work_floor: the smallest work budget on a variant (they are tiny).
        index_work: the work budget for building an action's indexes.
        max_rows: the most rows the baseline may return.
        max_seconds: the wall-clock deadline of each phase of an evaluation (the small variants;
            building the action's indexes on the full-size database; running on it and on its
            twins), so an evaluation returns within three times it; it is raised to 6 times the
            original's own time on every database when that is longer, so a slow task's
            candidates can still finish. In ``work`` mode it is a safety net only: a candidate
            that reaches it gets ``timeout`` whatever its work.
        max_heap_mb: the engine heap one execution of the action may add (exhausting it is
            ``runtime_error``).
        wall: options of the ``wall`` mode.
        order: how strictly row order is compared when the original has an ORDER BY.
        rel_tol: relative float tolerance of the comparison.
        seed: seed of the variant databases and twins.
    """

    cost: CostMode = CostMode.WORK
    reward: RewardConfig = field(default_factory=RewardConfig)
    budget_factor: float = 2.0
    num_variants: int | None = None
    num_twins: int = 2
    empty_tables: bool = True
    literals: LiteralPolicy = LiteralPolicy.DERIVED
    variant_rows: int = 40
    variant_work_floor: int = 200_000
    index_work: int = 200_000_000
    max_rows: int = 1_000_000
    max_seconds: float = 10.0
    max_heap_mb: int = 512
    wall: WallOptions = field(default_factory=WallOptions)
    order: OrderPolicy = OrderPolicy.TIES
    rel_tol: float = 1e-9
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost", _coerce(CostMode, self.cost, "cost mode"))
        object.__setattr__(self, "order", _coerce(OrderPolicy, self.order, "order policy"))
        object.__setattr__(self, "literals", _coerce(LiteralPolicy, self.literals, "literal policy"))
        if self.num_variants is None:
            object.__setattr__(self, "num_variants", len(VariantBuilder.MUTATIONS))
        if self.budget_factor < 1.0:
            raise ConfigError("budget_factor must be >= 1.0 (a multiple of the baseline's cost)")
        if self.num_variants < 0 or self.num_variants > len(VariantBuilder.MUTATIONS):
            raise ConfigError(f"num_variants must lie in [0, {len(VariantBuilder.MUTATIONS)}]")
        if not 0 <= self.num_twins <= 4:
            raise ConfigError("num_twins must lie in [0, 4]")
        if self.variant_rows < 1 or self.max_rows < 1 or self.max_seconds <= 0 or self.max_heap_mb < 1:
            raise ConfigError("variant_rows, max_rows, max_seconds and max_heap_mb must be positive")

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
    cost_mode: CostMode = CostMode.WORK
    variants: list[VariantOutcome] = field(default_factory=list)
    n_indexes: int = 0
    engine: str = ""
    task_id: str = ""
    wall: dict[str, float] | None = None
    seconds: float = 0.0
    """Time spent scoring this action."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (verdict and cost mode as their names)."""
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["cost_mode"] = self.cost_mode.value
        return out

    def fields_for(self, record: type, *, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The values of the fields that the dataclass ``record`` declares too, from this result.

        Records that carry a result (the leaderboard's rows, the data store's records) take these
        fields by name, so no field is copied by hand and none can drift from the result.

        >>> @dataclass
        ... class Row:
        ...     verdict: Verdict
        ...     reward: float
        ...     note: str = ""
        >>> EvalResult(Verdict.REJECTED, 0.0).fields_for(Row)
        {'verdict': <Verdict.REJECTED: 'rejected'>, 'reward': 0.0}
        """
        return {name: getattr(self, name) for name in _shared_fields(record) if name not in exclude}

    @property
    def info(self) -> dict[str, Any]:
        """The Gymnasium ``info`` dict of a step (deterministic in ``work`` mode: no timings)."""
        out = self.to_dict()
        out.pop("reward")
        out.pop("seconds")
        return out


@functools.cache
def _shared_fields(record: type) -> tuple[str, ...]:
    """The names of ``record``'s dataclass fields that :class:`EvalResult` has too, in its order."""
    names = {f.name for f in dataclasses.fields(EvalResult)}
    return tuple(f.name for f in dataclasses.fields(record) if f.name in names)


@dataclass
class RunRecord:
    """The original query's outcome on one database."""

    rows: list[tuple]
    columns: list[str]
    work: int
    seconds: float
    segments: list[tuple[int, int]] | None
    counters: dict[str, int] = field(default_factory=dict)
    """The engine's counters of the run (see :attr:`ExecResult.counters`)."""


@dataclass
class Baseline:
    """The original query's results and costs on the main database, every variant and twin."""

    main: RunRecord
    variants: list[RunRecord]
    twins: list[RunRecord] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """The original's own time on every database together."""
        return self.main.seconds + sum(r.seconds for r in (*self.variants, *self.twins))


@dataclass
class _Check:
    """A candidate's run on one database that matched the original (or the failure)."""

    failure: EvalResult | None
    run: ExecResult | None = None


BASELINE_FORMAT = "5"
"""Version of the baseline cache entries (bump when what a baseline holds changes).

5: SQLite step counts above 2**31 are whole (before, such a baseline's cost was negative)."""

DEADLINE_FACTOR = 6.0
"""An evaluation's deadline is at least this multiple of the original's own time on every database."""

LINEAGE_ROWS = 300
"""The most answer rows per scope whose source rows a twin perturbs."""

LINEAGE_WORK = 50_000_000
"""The work budget of the query that finds the rows behind the original's answer (for twins)."""

MIN_VALUE_BYTES = 1 << 20
"""The value-size limit of a candidate's execution is at least this (and 4x the original's need)."""


class TaskRunner:
    """Scores actions on one task; one runner per task per process, shared by its threads.

    A runner's databases have one scratch state at a time (a candidate's indexes, a twin), so
    scoring is serialized by :attr:`lock`, the lock of its main database: threads that share a
    runner or a database copy (a verl reward loop's executor, a served environment's sessions)
    take turns, and runners on other copies run in parallel. Code that uses :attr:`backend`
    directly holds the lock while it does.

    Args:
        task: the task (its ``query`` is the slow original).
        backend: the main database.
        variants: variant database images.
        options: scoring options.
        timer: the clock (inject a fake one in tests).
        data_key: identity of the data (databases and variants); when given, the baseline is
            also cached on disk under that key.
        owns_backend: close ``backend`` with the runner (``False`` for the process's shared copy
            of a file, see :func:`quill_env.runners.shared_backend`).
    """

    def __init__(
        self,
        task: Task,
        backend: Backend,
        variants: Sequence[Variant] = (),
        options: EvalOptions | None = None,
        timer: Timer = time.perf_counter,
        data_key: str | None = None,
        owns_backend: bool = True,
    ) -> None:
        self.task = task
        self.lock = backend_lock(backend)
        """Held while the runner scores or computes its baseline and observation: the lock of its
        main database, which the runners of other tasks on the same file share."""
        self._owns_backend = owns_backend
        self.data_key = data_key
        self.backend = backend
        self.options = options or EvalOptions()
        self.meter = meter_for(self.options.cost, backend, self.options.budget_factor)
        """Budgets and speedups in the options' cost mode (the only place that knows the mode)."""
        self._timer = timer
        self._variant_images = list(variants)
        self._variants: list[Backend] | None = None
        tables = backend.tables()
        self.schema_view = SchemaView({k: [c.name.lower() for c in t.columns] for k, t in tables.items()})
        self._schema_map = {t.name: {c.name: c.type or "TEXT" for c in t.columns} for t in tables.values()}
        self._base_tables = {k for k, t in tables.items()}
        self._column_names = {c.lower() for cols in self.schema_view.tables.values() for c in cols}
        if not encodable(task.query):
            raise BaselineError(f"task {task.id}: the original query is not valid Unicode text")
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
        self._normalized = _plain_sql(self.query, backend.dialect)
        self._legacy_strings = backend.needs_double_quoted_strings(task.query)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_suite(
        cls,
        suite: Suite,
        task: Task,
        scale: str | None = None,
        options: EvalOptions | None = None,
        engine: str = DEFAULT_ENGINE,
    ) -> TaskRunner:
        """A runner for a suite task at ``scale`` on ``engine``; variants come from the suite's generator.

        On an engine other than the suite's own dialect the task's query and reference are
        ported (:meth:`Backend.port`); the database holds the same generated rows.
        """
        options = options or EvalOptions()
        backend = shared_backend(str(suite.database(scale, engine=engine)))
        task = task.ported(functools.partial(backend.port, dialect=suite.dialect))
        images = _variants(str(suite.database("variant", engine=engine)), task.query, options)
        data_key = f"suite:{suite.name}:{suite.data_hash}:{scale or suite.default_scale}"
        return cls(task, backend, images, options, data_key=data_key, owns_backend=False)

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
        if not encodable(query):
            raise BaselineError("the original query is not valid Unicode text (a lone surrogate?)")
        path = _database_path(database)
        backend = shared_backend(path)
        images = _variants(path, query, options)
        digest = hashlib.sha1(query.encode()).hexdigest()[:10]
        task = Task(
            id=task_id or f"user/{Path(path).stem}-{digest}",
            query=query,
            output_columns=tuple(output_columns) if output_columns else None,
        )
        data_key = f"{file_key(path)}:{backend.data_version}" if backend.data_version else file_key(path)
        return cls(task, backend, images, options, data_key=data_key, owns_backend=False)

    # --- baseline --------------------------------------------------------------------------

    @property
    def variant_backends(self) -> list[Backend]:
        """The variant databases, loaded on the main database's engine on first use."""
        if self._variants is None:
            engine = type(self.backend)
            self._variants = [v.load(engine, label=v.name) for v in self._variant_images]
        return self._variants

    @functools.cached_property
    def twins(self) -> list[Twin]:
        """The full-size twins of the main database (built on first use, deterministic)."""
        n = self.options.num_twins
        if n == 0:
            return []
        main = self.backend
        lineage = lineage_rowids(main, self.task.query, limit=LINEAGE_ROWS, max_work=LINEAGE_WORK)
        # Where rolled-back changes linger in the pages (PostgreSQL), the twins' trial runs go to
        # a copy, so that the main database's plans and counts stay as they were.
        probe = main.clone() if main.harness_writes_linger else main
        try:
            return [build_twin(probe, lineage, seed=self.options.seed, index=i) for i in range(n)]
        finally:
            if probe is not main:
                probe.close()

    @contextlib.contextmanager
    def _on_twin(self, index: int) -> Iterator[Backend]:
        """The full-size database with twin ``index`` applied, for the duration of the context.

        On an engine with nested transient states (SQLite's savepoints) the twin is applied to
        the main database, inside the candidate's scratch indexes, and rolled back; on one
        without (DuckDB) it is a clone kept by the runner, where the candidate builds its
        indexes again.
        """
        if self.backend.nested_transient:
            with twin_applied(self.backend, self.twins[index]):
                yield self.backend
        else:
            yield self._twin_clones[index]

    @functools.cached_property
    def _twin_clones(self) -> list[Backend]:
        return [materialized(self.backend, twin) for twin in self.twins]

    @property
    def baseline(self) -> Baseline:
        """The original's rows and costs everywhere, computed once.

        Raises:
            BaselineError: the original fails or returns more than ``max_rows`` rows.
        """
        with self.lock:
            return self._baseline

    @functools.cached_property
    def _baseline(self) -> Baseline:
        key = self._cache_key()
        entry = baseline_cache.load(key) if key else None
        if entry is not None:
            return Baseline(
                _record_from_json(entry["main"]),
                [_record_from_json(v) for v in entry["variants"]],
                [_record_from_json(v) for v in entry["twins"]],
            )
        main = self._run_original(self.backend, "main database")
        variants = [self._run_original(b, f"variant {b!r}") for b in self.variant_backends]
        twins = []
        for i, twin in enumerate(self.twins):
            with self._on_twin(i) as target:
                twins.append(self._run_original(target, twin.name))
        records = [main, *variants, *twins]
        if key and sum(len(r.rows) for r in records) <= baseline_cache.MAX_CACHED_ROWS:
            entry = {
                "main": _record_to_json(main),
                "variants": [_record_to_json(v) for v in variants],
                "twins": [_record_to_json(v) for v in twins],
            }
            baseline_cache.save(key, entry)
        return Baseline(main, variants, twins)

    def _cache_key(self) -> str | None:
        if self.data_key is None:
            return None
        opts = self.options
        return baseline_cache.cache_key(
            __version__, DATA_FORMAT, BASELINE_FORMAT, self.backend.engine_version(), self.data_key,
            self.task.query, self.task.output_columns, opts.num_variants, opts.variant_rows,
            opts.num_twins, opts.seed, opts.max_rows, _cost_signature(self.backend),
            [twin.digest for twin in self.twins],
        )  # fmt: skip

    def _run_original(self, backend: Backend, where: str) -> RunRecord:
        opts = self.options
        budget = Budget(max_seconds=max(opts.max_seconds, 60.0) * 5, max_rows=opts.max_rows)
        result = backend.execute(self.task.query, budget)
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
                aug = backend.execute(plan.augmented_sql, budget)
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
        return RunRecord(rows, columns, result.work, result.seconds, segments, dict(result.counters))

    # --- observation -----------------------------------------------------------------------

    @property
    def schema_text(self) -> str:
        """The schema with row counts and existing indexes."""
        with self.lock:
            return self._observed[0]

    @property
    def plan_text(self) -> str:
        """The engine's plan of the slow query."""
        with self.lock:
            return self._observed[1]

    @functools.cached_property
    def _observed(self) -> tuple[str, str]:
        return self.backend.schema_text(), self.backend.explain(self.task.query)

    def observation(self) -> dict[str, str]:
        """The observation of this task: schema, query, plan and engine."""
        return make_observation(
            schema=self.schema_text,
            query=self.task.query,
            plan=self.plan_text,
            engine=self.backend.display_name,
            output_columns=self.task.output_columns,
        )

    # --- scoring ---------------------------------------------------------------------------

    def evaluate(self, action: object) -> EvalResult:
        """Score one action. Never raises for anything the action contains."""
        with self.lock:
            start = self._timer()
            try:
                result = self._evaluate(action)
            except RecursionError:
                result = self._finish(Verdict.REJECTED, "the SQL is nested too deeply to analyse")
            result.seconds = self._timer() - start
        result.engine = self.backend.engine_version()
        result.task_id = self.task.id
        result.cost_mode = self.meter.mode
        result.cost_unit = self.meter.unit
        return result

    def _finish(self, verdict: Verdict, error: str = "", **kw: Any) -> EvalResult:
        verdict, reward, terms = compute_reward(verdict, None, config=self.options.reward)
        return EvalResult(
            verdict=verdict, reward=reward, reward_terms=terms, error=error, correct=verdict.correct, **kw
        )

    def _evaluate(self, action: object) -> EvalResult:
        """Police the action, verify it on every database, measure it and reward it."""
        base = self.baseline
        try:
            act = self._police(action)
        except PolicyViolation as violation:
            return self._finish(violation.verdict, violation.message)
        except (AttributeError, TypeError, ValueError, KeyError, RecursionError) as err:
            # sqlglot parsed the text but cannot render it in the engine's dialect (a function
            # of another dialect with missing arguments, say): the action is not SQL of this
            # engine, and no exception of the toolkit may escape a step
            message = f"cannot read the SQL as {self.backend.dialect} ({type(err).__name__})"
            return self._finish(Verdict.SYNTAX_ERROR, message)
        if act is None:
            return self._finish(
                Verdict.UNCHANGED, baseline_cost=base.main.work, candidate_cost=base.main.work
            )
        limit = self._deadline_seconds(base)
        deadline = self._timer() + limit
        outcomes: list[VariantOutcome] = []
        common: dict[str, Any] = {"variants": outcomes, "n_indexes": len(act.indexes)}
        for backend, record in zip(self.variant_backends, base.variants):
            check = self._run_checked(
                backend, act, record, self._variant_budget(record), repr(backend), deadline
            )
            if check.failure is not None:
                outcomes.append(
                    VariantOutcome(repr(backend), _outcome_status(check.failure), check.failure.error)
                )
                return _with(check.failure, **common)
            outcomes.append(VariantOutcome(repr(backend), "match"))
        for name, backend, record in self._emptied:
            check = self._run_checked(backend, act, record, self._variant_budget(record), name, deadline)
            if check.failure is not None:
                outcomes.append(VariantOutcome(name, _outcome_status(check.failure), check.failure.error))
                return _with(check.failure, **common)
            outcomes.append(VariantOutcome(name, "match"))
        common["baseline_cost"] = float(base.main.work)
        main = self._check_main_and_twins(act, base, limit, outcomes)
        if main.failure is not None:
            return _with(main.failure, **common)
        return self._reward(act, base, main.run, common)

    @property
    def emptied_backends(self) -> list[Backend]:
        """The databases with one table emptied that every candidate also runs on (see below)."""
        return [backend for _, backend, _ in self._emptied]

    @functools.cached_property
    def _emptied(self) -> list[tuple[str, Backend, RunRecord]]:
        """One small database per base table the original names, with that table emptied alone.

        No variant or twin has exactly one table empty (the ``empty`` variant empties them all,
        twins keep every row count), so without these a rewrite could drop a table whose rows
        only had to exist (a cross join, an uncorrelated ``EXISTS``) and be paid. Each is a copy
        of the variant on which the original returns the most rows, with the table emptied (and
        the rows that referenced it: see :func:`quill_env.twins.empty_table`), built once per
        runner. Returns ``(name, backend, the original's record there)``.
        """
        if not self.variant_backends or not self.options.empty_tables:
            return []
        base = self.baseline
        pick = max(range(len(base.variants)), key=lambda i: (len(base.variants[i].rows), -i))
        source = self._variant_images[pick]
        out = []
        for table in self._named_tables():
            name = f"without:{table}"
            backend = source.load(type(self.backend), label=name)
            try:
                if not empty_table(backend, table):
                    raise BaselineError(f"cannot empty {table}")
                record = self._run_original(backend, name)
            except BaselineError:  # the check is skipped for this table; the others still run
                backend.close()
                continue
            out.append((name, backend, record))
        return out

    def _named_tables(self) -> list[str]:
        """The tables the original reads by name, views resolved to the tables behind them."""
        tables = self.backend.tables()
        by_lower = {name.lower(): name for name in tables}
        found: set[str] = set()
        pending = [self.query]
        while pending and len(found) < 64:
            tree = pending.pop()
            ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
            for node in tree.find_all(exp.Table):
                name = by_lower.get(node.name.lower())
                if name is None or node.name.lower() in ctes or name in found:
                    continue
                found.add(name)
                info = tables[name]
                if info.is_view:
                    with contextlib.suppress(sqlglot.errors.ParseError, sqlglot.errors.TokenError):
                        pending.append(sqlglot.parse_one(info.sql, read=self.backend.dialect))
        return sorted(name for name in found if not tables[name].is_view)

    def parse_action(self, action: object) -> Action:
        """``action`` parsed and checked by the sandbox policy of this task's engine.

        Raises:
            PolicyViolation: the action is not SQL, or is refused.
        """
        return parse_action(
            action,
            self.schema_view,
            rules=self.backend.sandbox_rules,
            dialect=self.backend.dialect,
            max_indexes=self.options.reward.max_indexes,
            allow_values=self.query.find(exp.Values) is not None,
        )

    def _police(self, action: object) -> Action | None:
        """The parsed action, ``None`` when it is the original unchanged; raises PolicyViolation."""
        cfg = self.options
        act = self.parse_action(action)
        if not act.indexes and _plain_sql(act.query, self.backend.dialect) == self._normalized:
            return None
        anti_hacking(self.query, act.query)
        check_unmetered(self.query, act.query)
        if cfg.literals is LiteralPolicy.DERIVED:
            self._literal_guard.check(act.query, string_columns=self._string_columns(act.query))
        return act

    @functools.cached_property
    def _literal_guard(self) -> LiteralGuard:
        return LiteralGuard(
            self.query, self._evaluate_constants, string_columns=self._string_columns(self.query)
        )

    def _string_columns(self, tree: exp.Expression) -> set[str]:
        """Double-quoted names SQLite reads as strings here (only when the original needs that)."""
        if not self._legacy_strings:
            return set()
        aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)}
        aliases |= {t.alias_or_name.lower() for t in tree.find_all(exp.TableAlias, exp.CTE)}
        return (
            {c.name.lower() for c in tree.find_all(exp.Column) if not c.table and c.this.args.get("quoted")}
            - self._column_names
            - aliases
        )

    def _evaluate_constants(self, nodes: Sequence[exp.Expression]) -> list[object]:
        """Values of constant expressions, computed by the engine in an empty sandbox."""
        scratch = self._constant_backend
        out: list[object] = []
        for node in nodes:
            sql = exp.select(node.copy()).sql(self.backend.dialect)
            run = scratch.execute(
                sql,
                Budget(max_work=1_000_000, max_seconds=1.0, max_rows=1, max_heap_bytes=64 << 20,
                       max_value_bytes=MIN_VALUE_BYTES),
            )  # fmt: skip
            out.append(run.rows[0][0] if run.ok and run.rows else FAILED)
        return out

    @functools.cached_property
    def _constant_backend(self) -> Backend:
        return type(self.backend).empty()

    def _variant_budget(self, record: RunRecord) -> Budget:
        cfg = self.options
        return Budget(
            max_work=max(int(cfg.budget_factor * record.work), cfg.variant_work_floor),
            max_rows=len(record.rows) + 1,
        )

    def _check_main_and_twins(
        self, act: Action, base: Baseline, limit: float, outcomes: list[VariantOutcome]
    ) -> _Check:
        """Run the candidate on the main database, then on each twin, under one index build.

        Building indexes on the full-size database has a deadline of its own (``limit``
        seconds); the runs on it and on its twins share another that starts after the build.
        """
        backend = self.backend
        try:
            with backend.scratch_indexes(act.indexes, self._index_budget(self._timer() + limit)):
                deadline = self._timer() + limit
                main = self._run_checked(
                    backend, act, base.main, self.meter.budget(base.main), "main database", deadline,
                    indexes_built=True,
                )  # fmt: skip
                if main.failure is not None:
                    return main
                for i, (twin, record) in enumerate(zip(self.twins, base.twins)):
                    budget = self.meter.budget(record, floor=base.main)
                    with self._on_twin(i) as target:
                        check = self._run_checked(
                            target, act, record, budget, twin.name, deadline, indexes_built=target is backend
                        )
                    if check.failure is not None:
                        outcomes.append(
                            VariantOutcome(twin.name, _outcome_status(check.failure), check.failure.error)
                        )
                        return check
                    outcomes.append(VariantOutcome(twin.name, "match"))
                return main
        except IndexBuildError as err:
            return _Check(self._index_failure(err, "main database"))

    def _index_budget(self, deadline: float) -> Budget:
        """Indexes may also take as much heap as the database itself (an index is at most that big)."""
        return Budget(
            max_work=self.options.index_work,
            max_seconds=max(deadline - self._timer(), 0.001),
            max_heap_bytes=(self.options.max_heap_mb << 20) + self._database_bytes,
        )

    @functools.cached_property
    def _database_bytes(self) -> int:
        return self.backend.size_bytes()

    def _index_failure(self, err: IndexBuildError, where: str) -> EvalResult:
        text = str(err)
        kind = "engine error"
        if "budget" in text or "memory" in text:
            kind = "out of budget" if "budget" in text else "out of memory"
        return self._finish(Verdict.RUNTIME_ERROR, f"building the indexes failed on the {where} ({kind})")

    def _run_checked(
        self,
        backend: Backend,
        act: Action,
        record: RunRecord,
        budget: Budget,
        where: str,
        deadline: float,
        *,
        indexes_built: bool = False,
    ) -> _Check:
        """Run the candidate on one database and compare it with the original there."""
        remaining = deadline - self._timer()
        if remaining <= 0:
            return _Check(self._deadline_failure(where))
        limits = Budget(
            max_work=budget.max_work,
            max_seconds=min(budget.max_seconds or remaining, remaining),
            max_rows=budget.max_rows,
            max_heap_bytes=self.options.max_heap_mb << 20,
            max_value_bytes=self._value_limit,
        )
        try:
            scratch = (
                contextlib.nullcontext()
                if indexes_built
                else backend.scratch_indexes(act.indexes, self._index_budget(deadline))
            )
            with scratch:
                run = backend.execute(act.query_sql, limits, double_quoted_strings=self._legacy_strings)
        except IndexBuildError as err:
            return _Check(self._index_failure(err, where))
        return _Check(self._judge(act, run, record, where, deadline), run)

    @functools.cached_property
    def _value_limit(self) -> int:
        main = self.baseline.main
        return max(MIN_VALUE_BYTES, 4 * int(main.counters.get("largest_alloc", 0)))

    def _deadline_seconds(self, base: Baseline) -> float:
        """The wall-clock deadline of one phase of an evaluation (see :class:`EvalOptions`)."""
        return max(self.options.max_seconds, DEADLINE_FACTOR * base.seconds)

    def _deadline_failure(self, where: str) -> EvalResult:
        return self._finish(
            Verdict.TIMEOUT, f"stopped on the {where}: the evaluation's wall-clock deadline has passed"
        )

    def _judge(
        self, act: Action, run: ExecResult, record: RunRecord, where: str, deadline: float
    ) -> EvalResult | None:
        """The failure of one run, or ``None`` when it matches the original. Messages carry no data."""
        status = run.status
        if status is ExecStatus.TIMEOUT:
            if self._timer() >= deadline:
                return self._deadline_failure(where)
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
            kind = (run.error_kind or "engine_error").replace("_", " ")
            return self._finish(Verdict.RUNTIME_ERROR, f"{where}: the query failed while running ({kind})")
        if status is ExecStatus.ROW_CAP:
            return self._finish(
                Verdict.WRONG_RESULT, f"{where}: the rewrite returns more rows than the original"
            )
        if self._base_tables and not (run.tables_read & self._base_tables):
            return self._finish(Verdict.REJECTED, "the rewrite reads no base table (hard-coded answer)")
        rows, columns = run.rows, run.columns
        if self.task.output_columns:
            wanted = list(self.task.output_columns)
            missing = [w for w in wanted if w.lower() not in {c.lower() for c in columns}]
            if missing:
                return self._finish(
                    Verdict.WRONG_RESULT,
                    f"the application reads {wanted}; the rewrite does not return {missing}",
                )
            rows, columns = project(rows, columns, wanted), wanted
        plan = self._plan
        fixed = order_is_fixed(len(record.rows), None if plan.strict else record.segments)
        if plan.ordered and top_order(act.query) is None and not fixed:
            return self._finish(
                Verdict.WRONG_RESULT,
                f"{where}: the original orders its rows and the rewrite dropped the ORDER BY",
            )
        policy = self.options.order if plan.ordered else OrderPolicy.IGNORE
        if plan.ordered and plan.strict and policy is OrderPolicy.TIES:
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
            kind = verdict.kind.description if verdict.kind else "the results differ"
            return self._finish(Verdict.WRONG_RESULT, f"{where}: {kind}")
        return None

    def _reward(
        self, act: Action, base: Baseline, run: ExecResult | None, common: dict[str, Any]
    ) -> EvalResult:
        """Measure a verified candidate and turn its speedup into a reward."""
        cfg = self.options
        assert run is not None
        measured = self.meter.measure(base.main, run, lambda: self._measure_wall(act))
        common["baseline_cost"] = measured.baseline_cost
        speedup = measured.speedup
        verdict, reward, terms = compute_reward(
            Verdict.IMPROVED,
            speedup,
            original_size=self._size,
            rewrite_size=_ast_size(act.query),
            n_indexes=len(act.indexes),
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
            speedup_raw=measured.raw,
            reward_terms=terms,
            candidate_cost=measured.candidate_cost,
            wall=measured.wall,
            **common,
        )

    def _measure_wall(self, act: Action) -> WallMeasurement:
        main = self.backend
        target = main.clone() if act.indexes else main

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
        """Close the databases this runner opened (not the process's shared copy of a file).

        Waits for a score in progress in another thread to finish.
        """
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self._owns_backend:
            self.backend.close()
        for b in self._variants or []:
            b.close()
        for _, b, _ in self.__dict__.get("_emptied", []):
            b.close()
        for b in self.__dict__.get("_twin_clones", []):
            b.close()
        constant = self.__dict__.get("_constant_backend")
        if constant is not None:
            constant.close()


def _cost_signature(backend: Backend) -> tuple:
    """The constants that turn counters into work (a baseline's work depends on them)."""
    names = ("page_work", "function_work", "value_work", "calibration_statement_work")
    return tuple(getattr(backend, n, None) for n in names)


def _with(result: EvalResult, **fields: Any) -> EvalResult:
    return dataclasses.replace(result, **fields)


def _plain_sql(tree: exp.Expression, dialect: str) -> str:
    """The normalized SQL of ``tree`` without comments (comments never change identity)."""
    return tree.sql(dialect, normalize=True, comments=False)


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
        counters={k: int(v) for k, v in raw.get("counters", {}).items()},
    )


def _outcome_status(result: EvalResult) -> str:
    return {
        Verdict.WRONG_RESULT: "mismatch",
        Verdict.TIMEOUT: "timeout",
    }.get(result.verdict, "error")


def _ast_size(tree: exp.Expression) -> int:
    return sum(1 for _ in tree.walk())


def _variants(source_path: str, query: str, options: EvalOptions) -> list[Variant]:
    return variants_for(
        source_path, query, count=options.num_variants, rows_per_table=options.variant_rows, seed=options.seed
    )


def _database_path(database: str | os.PathLike[str]) -> str:
    """The absolute path of a database given as a path or URL (its engine is read from the file).

    A server database's URL is returned as it is.
    """
    if is_server_url(database):
        return os.fspath(database)
    return str(Path(split_url(database)[1]).resolve())


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
        database: path of a SQLite or DuckDB file (the engine is read from the file), or a URL
            (``sqlite:///path``, ``duckdb:///path``); it is never modified.
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
    path = _database_path(database)
    key = ("database", file_key(path), slow_sql, tuple(output_columns or ()), repr(opts))
    runner = runner_cache().get(
        key, lambda: TaskRunner.for_database(path, slow_sql, opts, output_columns=output_columns)
    )
    return runner.evaluate(candidate_sql)


__all__ = ["EvalOptions", "EvalResult", "TaskRunner", "VariantOutcome", "evaluate"]
