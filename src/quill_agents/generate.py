"""The ReST-EM data loop behind ``quill generate`` (DESIGN §1).

One *draw* is: choose a schema and a pattern (steered toward what the store lacks) -> write a slow
query (the procedural generator of :mod:`quill_env.querygen`, or a teacher LLM) -> validate it
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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sqlglot
from sqlglot import exp

from quill_agents.store import DRAWS_FILE, RECORDS_FILE, DatasetStore, JsonlLog, record_key
from quill_env.errors import ConfigError, MissingExtraError, QuillError
from quill_env.fingerprint import fingerprint
from quill_env.policy import PolicyViolation, SchemaView, parse_action
from quill_env.querygen import FAMILIES, Candidate
from quill_env.taskgen import TARGET_MIX, bucket

log = logging.getLogger(__name__)

Observation = Mapping[str, str]
Propose = Callable[[Observation, int], list[str]]
"""Any optimizer: ``propose(observation, k) -> list of actions``."""

BELOW_MIX = "<2x"
"""The bucket of kept records between the acceptance tier (1.5x) and 2x."""


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of one ``quill generate`` run.

    Args:
        out: the run directory (``records.jsonl`` and ``draws.jsonl`` live there).
        target: stop when the store holds this many verified records.
        suites: schemas (suite names) to draw from; empty means every shipped suite.
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
    num_variants: int = 8
    target_mix: Mapping[str, float] = field(default_factory=lambda: dict(TARGET_MIX))
    teacher: str = "heuristic"
    model: str | None = None

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ConfigError(f"target must be >= 1, got {self.target}")
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.round_size < 1 or self.max_per_shape < 1 or self.max_per_query < 1:
            raise ConfigError("round_size, max_per_shape and max_per_query must be >= 1")
        if not self.scales:
            raise ConfigError("scales must name at least one scale tier")
        if abs(sum(self.target_mix.values()) - 1.0) > 1e-6:
            raise ConfigError(f"target_mix must sum to 1, got {dict(self.target_mix)}")

    @property
    def draw_limit(self) -> int:
        """The most draws the run makes."""
        return self.max_draws if self.max_draws is not None else 50 * self.target + 200


# --- slow-query sources and proposers ------------------------------------------------------


@dataclass
class DrawContext:
    """What a proposer may want to know about the current draw beyond the observation."""

    suite: Any
    scale: str
    database: str
    candidate: Candidate


class SlowQuerySource(Protocol):
    """Writes one slow query for a schema and a pattern."""

    name: str

    def draw(
        self, ctx: _SchemaCtx, family: str, rng: np.random.Generator, examples: Sequence[Mapping[str, Any]]
    ) -> Candidate | None:
        """A candidate slow query (with a reference when the source knows one), or ``None``."""
        ...


class ProceduralSource:
    """Slow queries from the procedural "junior developer" generator (offline, deterministic)."""

    name = "querygen"

    def draw(
        self, ctx: _SchemaCtx, family: str, rng: np.random.Generator, examples: Sequence[Mapping[str, Any]]
    ) -> Candidate | None:
        """One :func:`quill_env.querygen.generate` draw of ``family``."""
        from quill_env.querygen import generate

        return generate(ctx.info, rng, family)


class TeacherSource:
    """Slow queries written by a teacher LLM (``write_slow_query(schema_text, pattern, examples)``)."""

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.name = f"teacher:{_model_of(teacher) or 'unknown'}"

    def draw(
        self, ctx: _SchemaCtx, family: str, rng: np.random.Generator, examples: Sequence[Mapping[str, Any]]
    ) -> Candidate | None:
        """Ask the teacher for a slow query showing ``family``."""
        # a distinct sample per draw: the teacher caches responses by (prompt, sample)
        sample = int(rng.integers(2**31 - 1))
        sql = self.teacher.write_slow_query(ctx.schema_text, family, list(examples), sample=sample)
        if not sql:
            return None
        return Candidate(family, ctx.suite.name, sql.strip().rstrip(";"), "", (family,))


class ReferenceProposer:
    """Offline fallback optimizer: the generator's reference plus a few mutated variants.

    The variants (the slow query's own text, the reference query without its indexes, the slow
    query with only the reference's indexes, a flipped comparison) are mostly wrong or slow, so
    runs with this proposer exercise rejection and produce DPO pairs.
    """

    name = "reference"
    model = None

    def __init__(self) -> None:
        self._ctx: DrawContext | None = None

    def prepare(self, ctx: DrawContext) -> None:
        """Remember the draw's candidate (its reference is the answer offered first)."""
        self._ctx = ctx

    def __call__(self, observation: Observation, k: int) -> list[str]:
        """Up to ``k`` actions: the reference first, then mutations."""
        cand = self._ctx.candidate if self._ctx else None
        if cand is None or not cand.reference:
            return []
        out = [cand.reference, *_mutations(cand.query, cand.reference)]
        return list(dict.fromkeys(out))[:k]


def _mutations(query: str, reference: str) -> list[str]:
    from quill_env.policy import split_statements

    parts = split_statements(reference)
    indexes, ref_query = parts[:-1], parts[-1]
    out = []
    if indexes:
        out.append(ref_query)
        out.append(";\n".join([*indexes, query]))
    try:
        tree = sqlglot.parse_one(ref_query, read="sqlite")
        flipped = False
        for node in tree.find_all(exp.EQ, exp.GT, exp.LT):
            new = {exp.EQ: exp.NEQ, exp.GT: exp.LTE, exp.LT: exp.GTE}[type(node)]
            node.replace(new(this=node.this.copy(), expression=node.expression.copy()))
            flipped = True
            break
        if flipped:
            out.append(";\n".join([*indexes, tree.sql("sqlite")]))
    except sqlglot.errors.SqlglotError:
        pass
    return out


class HeuristicProposer:
    """The rule-based optimizer (:class:`quill_agents.heuristic.HeuristicAgent`).

    Its candidates are listed offline (fast, best guess first) since the loop scores every
    proposal anyway; only when it has more than ``k`` does the database-bound agent measure them
    and its best is put first, so the cut at ``k`` never drops the winner.
    """

    name = "heuristic"
    model = None

    def __init__(self) -> None:
        from quill_agents.heuristic import HeuristicAgent

        self._cls = HeuristicAgent
        self._offline = HeuristicAgent()
        self._agents: dict[str, Any] = {}
        self._database: str | None = None

    def prepare(self, ctx: DrawContext) -> None:
        """Remember the draw's database (for measuring when there are more than ``k`` candidates)."""
        self._database = ctx.database

    def __call__(self, observation: Observation, k: int) -> list[str]:
        """Up to ``k`` candidate actions, the measured best first when it had to choose."""
        out = [a for a in self._offline.candidates(observation) if a and a.strip()]
        if len(out) > k and self._database is not None:
            if self._database not in self._agents:
                self._agents[self._database] = self._cls(database=self._database)
            out = [self._agents[self._database].act(observation), *out]
        return list(dict.fromkeys(out))[:k]


class TeacherProposer:
    """A teacher LLM's optimizations (``TeacherAgent.optimize(observation, k)``)."""

    name = "teacher"

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.model = _model_of(teacher)

    def __call__(self, observation: Observation, k: int) -> list[str]:
        """``k`` sampled optimizations."""
        return [a for a in self.teacher.optimize(observation, k) if a]

    def usage(self) -> dict[str, float]:
        """The teacher's token and cost accounting so far."""
        return dict(self.teacher.usage.to_dict())


class CompositeProposer:
    """Several proposers asked in turn; remembers which one offered each action."""

    def __init__(self, proposers: Sequence[Any]) -> None:
        self.proposers = list(proposers)
        self.name = "+".join(_name_of(p) for p in self.proposers)
        models = [m for m in (_model_of(p) for p in self.proposers) if m]
        self.model = models[0] if models else None
        self.sources: dict[str, str] = {}

    def prepare(self, ctx: DrawContext) -> None:
        """Forward the draw's context to every proposer that wants it."""
        for p in self.proposers:
            if hasattr(p, "prepare"):
                p.prepare(ctx)

    def __call__(self, observation: Observation, k: int) -> list[str]:
        """Every proposer's actions, de-duplicated, in proposer order."""
        self.sources = {}
        for p in self.proposers:
            for action in p(observation, k):
                self.sources.setdefault(action, _name_of(p))
        return list(self.sources)

    def usage(self) -> dict[str, float]:
        """Summed usage of the proposers that report one."""
        total: Counter[str] = Counter()
        for p in self.proposers:
            if hasattr(p, "usage"):
                total.update({k: v for k, v in p.usage().items() if isinstance(v, (int, float))})
        return dict(total)


def build_teacher(model: str | None, base_url: str | None, **overrides: Any) -> Any:
    """A :class:`quill_agents.teacher.TeacherAgent` for an OpenAI-compatible endpoint.

    Raises:
        MissingExtraError: the teacher module or the ``openai`` client is not installed.
    """
    try:
        from quill_agents.teacher import TeacherAgent, TeacherConfig
    except ImportError as err:
        raise MissingExtraError(f'the teacher needs `pip install "quill-sql[teacher]"` ({err})') from None
    return TeacherAgent(TeacherConfig(model=model, base_url=base_url, **overrides))


def build_proposer(names: Iterable[str], teacher: Any = None) -> CompositeProposer:
    """Proposers by name: ``heuristic``, ``reference`` and ``openai`` (needs ``teacher``).

    ``heuristic`` falls back to ``reference`` (with a logged warning) when
    :mod:`quill_agents.heuristic` is not importable.
    """
    out: list[Any] = []
    for name in names:
        if name == "heuristic":
            try:
                out.append(HeuristicProposer())
            except ImportError as err:
                log.warning("heuristic agent unavailable (%s); using the reference fallback", err)
                out.append(ReferenceProposer())
        elif name == "reference":
            out.append(ReferenceProposer())
        elif name in ("openai", "teacher"):
            if teacher is None:
                raise ConfigError("the openai proposer needs a teacher (--model and --base-url)")
            out.append(TeacherProposer(teacher))
        else:
            from quill_env.errors import UnknownNameError

            raise UnknownNameError("proposer", name, ("heuristic", "reference", "openai"))
    if not out:
        raise ConfigError("name at least one proposer")
    return CompositeProposer(out)


def _name_of(p: Any) -> str:
    return str(getattr(p, "name", None) or getattr(p, "__name__", None) or type(p).__name__)


def _model_of(p: Any) -> str | None:
    model = getattr(p, "model", None)
    if model is None and getattr(p, "config", None) is not None:
        model = getattr(p.config, "model", None)
    return model if isinstance(model, str) else None


# --- fingerprints --------------------------------------------------------------------------


def shape_fingerprint(sql: str, schema: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The fingerprint of a query with every literal replaced by a placeholder (near-duplicates).

    >>> shape_fingerprint("SELECT a FROM t WHERE b = 1") == shape_fingerprint("select a from t where b = 7")
    True
    """
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return fingerprint(sql, schema)
    tree = tree.transform(lambda n: exp.Placeholder() if isinstance(n, exp.Literal) else n)
    return fingerprint(tree, schema)


def action_fingerprint(action: str, view: SchemaView, schema: Mapping[str, Mapping[str, str]]) -> str:
    """A fingerprint of an action: its indexes (by table and columns) and its canonical query."""
    try:
        act = parse_action(action, view, max_indexes=64)
    except PolicyViolation:
        return hashlib.sha1(" ".join(action.split()).lower().encode()).hexdigest()[:16]
    indexes = sorted(
        f"{i.table.lower()}({','.join(c.lower() + (' desc' if d else '') for c, d in i.columns)})"
        for i in act.indexes
    )
    text = ";".join([*indexes, fingerprint(act.query, schema)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# --- steering ------------------------------------------------------------------------------


@dataclass
class Steering:
    """What the store lacks: counts by schema, family, pattern and speedup bucket.

    It is rebuilt from the records and the draw log, so a restarted run steers exactly as an
    uninterrupted one.
    """

    target_mix: Mapping[str, float]
    kept: int = 0
    by_schema: Counter[str] = field(default_factory=Counter)
    by_family: Counter[str] = field(default_factory=Counter)
    by_pattern: Counter[str] = field(default_factory=Counter)
    by_bucket: Counter[str] = field(default_factory=Counter)
    family_buckets: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    successes: Counter[tuple[str, str]] = field(default_factory=Counter)
    slow_seen: set[str] = field(default_factory=set)
    shapes: Counter[str] = field(default_factory=Counter)

    def observe_record(self, rec: Mapping[str, Any]) -> None:
        """Count one kept record."""
        self.kept += 1
        self.by_schema[rec["suite"]] += 1
        self.by_family[rec["family"]] += 1
        self.by_pattern.update(rec.get("patterns", ()))
        b = bucket(float(rec["speedup"])) or BELOW_MIX
        self.by_bucket[b] += 1
        self.family_buckets[rec["family"]][b] += 1

    def observe_draw(self, entry: Mapping[str, Any]) -> None:
        """Count one finished draw (kept or not)."""
        if entry.get("family") is None:
            return
        key = (entry["suite"], entry["family"])
        self.attempts[key] += 1
        if entry.get("kept", 0) > 0:
            self.successes[key] += 1
            self.slow_seen.add(entry["query_fingerprint"])
            self.shapes[entry["shape_fingerprint"]] += 1

    def mix(self) -> dict[str, float]:
        """The current speedup mix (shares, with the below-2x share apart)."""
        total = sum(self.by_bucket.values()) or 1
        return {b: round(self.by_bucket.get(b, 0) / total, 4) for b in (*self.target_mix, BELOW_MIX)}

    def _rarity(self, counts: Counter[str], name: str, names: Sequence[str]) -> float:
        mean = sum(counts[n] for n in names) / max(len(names), 1)
        return (mean + 1.0) / (counts[name] + 1.0)

    def _mix_need(self, family: str) -> float:
        total = sum(self.by_bucket.values())
        seen = self.family_buckets.get(family, Counter())
        n_f = sum(seen.values())
        need = 0.0
        for b, share in self.target_mix.items():
            deficit = max(share - (self.by_bucket[b] / total if total else 0.0), 0.0)
            p_b = (seen[b] + share) / (n_f + 1.0)  # the target mix is the prior of an unseen family
            need += p_b * (deficit + 0.05)
        need += 0.01 * seen[BELOW_MIX] / (n_f + 1.0)
        return need**2  # squared: the mix steers as firmly as the coverage terms

    def weights(self, suites: Sequence[str], families: Sequence[str]) -> np.ndarray:
        """Unnormalized draw weights of every ``(suite, family)`` pair (suite-major)."""
        w = np.empty((len(suites), len(families)))
        for i, s in enumerate(suites):
            rs = self._rarity(self.by_schema, s, suites)
            for j, f in enumerate(families):
                rf = self._rarity(self.by_family, f, families)
                key = (s, f)
                feasible = (self.successes[key] + 1.0) / (self.attempts[key] + 2.0)
                w[i, j] = rs * rf * self._mix_need(f) * feasible
        return w.ravel()

    def choose(
        self, rng: np.random.Generator, suites: Sequence[str], families: Sequence[str]
    ) -> tuple[str, str]:
        """Sample the next ``(suite, family)``, favouring what the store lacks."""
        w = self.weights(suites, families)
        idx = int(rng.choice(len(w), p=w / w.sum()))
        return suites[idx // len(families)], families[idx % len(families)]

    def examples(
        self, records: Sequence[Mapping[str, Any]], n: int, rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        """Few-shot examples for a round: records of rare patterns and schemas are favoured.

        Depends only on ``records`` and ``rng``, so a resumed run draws the same examples.
        """
        if not records or n <= 0:
            return []
        fams = Counter(r["family"] for r in records)
        schemas = Counter(r["suite"] for r in records)
        w = np.array([1.0 / (fams[r["family"]] * schemas[r["suite"]]) for r in records])
        picks = rng.choice(len(records), size=min(n, len(records)), replace=False, p=w / w.sum())
        return [
            {
                "suite": records[i]["suite"],
                "pattern": records[i]["family"],
                "patterns": list(records[i].get("patterns", ())),
                "query": records[i]["query"],
                "action": records[i]["action"],
                "speedup": records[i]["speedup"],
            }
            for i in sorted(int(p) for p in picks)
        ]


# --- the loop ------------------------------------------------------------------------------


class _SchemaCtx:
    """Per (suite, scale): database path, schema map and text, generator metadata."""

    def __init__(self, suite: Any, scale: str) -> None:
        from quill_env.backends import open_backend

        self.suite = suite
        self.scale = scale
        self.database = str(suite.database(scale))
        backend = open_backend(self.database)
        try:
            tables = backend.tables()
            self.schema_text = backend.schema_text()
            self.engine = backend.engine_version()
        finally:
            backend.close()
        self.view = SchemaView({k: [c.name.lower() for c in t.columns] for k, t in tables.items()})
        self.schema_map = {t.name: {c.name: c.type or "TEXT" for c in t.columns} for t in tables.values()}
        self._info: Any = None

    @property
    def info(self) -> Any:
        """The procedural generator's view of the schema (opened on first use)."""
        if self._info is None:
            from quill_env.querygen import SchemaInfo

            self._info = SchemaInfo(self.suite)
        return self._info

    def close(self) -> None:
        """Close the generator's connections."""
        if self._info is not None:
            self._info.close()


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
        from quill_env.tasks import get_suite, list_suites

        self.config = config
        self.propose = propose
        self.source = source or ProceduralSource()
        names = list(config.suites) or list_suites()
        self.suites = {n: get_suite(n) for n in names}
        self.suite_names = list(self.suites)
        self.families = list(FAMILIES)
        self.out = Path(config.out)
        self.store = DatasetStore(self.out / RECORDS_FILE)
        self.draw_log = JsonlLog(self.out / DRAWS_FILE)
        self._ctx: dict[tuple[str, str], _SchemaCtx] = {}
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

    # --- helpers ---------------------------------------------------------------------------

    def schema(self, suite: str, scale: str) -> _SchemaCtx:
        """The cached per-(suite, scale) context."""
        key = (suite, scale)
        if key not in self._ctx:
            self._ctx[key] = _SchemaCtx(self.suites[suite], scale)
        return self._ctx[key]

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
        from quill_env.evaluator import EvalOptions, TaskRunner
        from quill_env.tasks import Task

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
            results = [(a, runner.evaluate(a)) for a in actions]
            entry["candidates"] = len(results)
            kept = self._keep(d, iteration, ctx, cand, runner, results, qfp, sfp)
            entry["kept"] = len(kept)
            return self._close_entry(entry, None, start, usage_before)
        finally:
            runner.close()

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
        ctx: _SchemaCtx,
        cand: Candidate,
        runner: Any,
        results: list[tuple[str, Any]],
        qfp: str,
        sfp: str,
    ) -> list[dict[str, Any]]:
        import quill_env

        cfg = self.config
        sources = getattr(self.propose, "sources", {})
        good, fps = [], set()
        for action, res in results:
            if res.verdict.value != "improved" or res.reward < cfg.acceptance:
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
            rec = {
                "id": hashlib.sha1(key.encode()).hexdigest()[:16],
                "suite": suite.name,
                "schema": str(suite.spec.get("schema_name", suite.name)),
                "suite_version": suite.version,
                "suite_hash": suite.data_hash,
                "scale": ctx.scale,
                "query": cand.query,
                "output_columns": list(cand.output_columns) if cand.output_columns else None,
                "action": action,
                "family": cand.family,
                "patterns": list(cand.patterns),
                "verdict": res.verdict.value,
                "reward": round(res.reward, 6),
                "reward_terms": {k: round(v, 6) for k, v in res.reward_terms.items()},
                "speedup": res.speedup,
                "speedup_raw": res.speedup_raw,
                "bucket": bucket(float(res.speedup)) or BELOW_MIX,
                "baseline_cost": res.baseline_cost,
                "candidate_cost": res.candidate_cost,
                "cost_unit": res.cost_unit,
                "cost_mode": res.cost_mode,
                "n_indexes": res.n_indexes,
                "engine": res.engine,
                "quill_version": quill_env.__version__,
                "query_fingerprint": qfp,
                "action_fingerprint": afp,
                "shape_fingerprint": sfp,
                "proposer": sources.get(action, _name_of(self.propose)),
                "model": _model_of(self.propose) or cfg.model,
                "slow_source": self.source.name,
                "iteration": iteration,
                "draw": d,
                "seed": cfg.seed,
                "timestamp": now,
                "rejected": rejected,
                "siblings": [{"action": a, "reward": round(r.reward, 4)} for a, r, _ in good if a != action],
            }
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
        """Close the store, the draw log and the generator's connections."""
        self.store.close()
        self.draw_log.close()
        for ctx in self._ctx.values():
            ctx.close()


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
    "CompositeProposer",
    "DataLoop",
    "DrawContext",
    "GenerateConfig",
    "GenerateStats",
    "HeuristicProposer",
    "ProceduralSource",
    "ReferenceProposer",
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
