"""The heuristic agent: rule-based rewrites plus an index advisor, offline or measured.

Without a database the agent works from the observation alone: it parses the schema text,
rewrites the query with :data:`~quill_agents.heuristic.rewrites.RULES` and adds the advisor's
indexes for the tables the plan scans. Given the database, it also builds each candidate index
in a scratch state, keeps only those the engine's plan uses, and submits the candidate action
that scores best by the environment's own measurement.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from quill_agents.heuristic.advisor import IndexCandidate, advise, index_specs
from quill_agents.heuristic.catalog import Catalog, parse_schema
from quill_agents.heuristic.rewrites import ALTERNATIVES, RULES, Context, rewrite, select_star_to_columns
from quill_agents.heuristic.sqlutil import parse, render
from quill_agents.protocol import BaseAgent, Observation
from quill_env.backends import open_backend
from quill_env.backends.base import Backend, IndexSpec
from quill_env.errors import IndexBuildError
from quill_env.evaluator import EvalOptions, TaskRunner
from quill_env.prompt import observed_output_columns, observed_query

MIN_ROWS = 200
"""Tables smaller than this get no index offline (a scan is already cheap)."""


@dataclass(frozen=True)
class Candidate:
    """One candidate action: indexes and a query."""

    query: str
    indexes: tuple[IndexCandidate, ...] = ()
    rules: tuple[str, ...] = ()
    """The rewrite rules that produced the query (empty: the original)."""

    @property
    def sql(self) -> str:
        """The action text: ``CREATE INDEX`` statements, then the query."""
        return "\n".join([*(i.sql() for i in self.indexes), self.query])


class HeuristicAgent(BaseAgent):
    """A rule-based SQL optimizer: safe AST rewrites plus an index advisor.

    Args:
        database: path or URL of the task's database (any engine). When given, candidates are
            measured with the environment's own scoring and the best one is submitted; otherwise
            the agent works from the observation alone.
        max_indexes: the most ``CREATE INDEX`` statements in one action.
        options: scoring options for database mode (fields of ``quill_env.EvalOptions``).

    Example:
        >>> agent = HeuristicAgent()
        >>> obs = {"schema": "-- t: 5,000 rows\\nCREATE TABLE t (id INTEGER PRIMARY KEY, a INT);",
        ...        "query": "SELECT id FROM t WHERE a = 1 OR a = 2", "plan": "SCAN t"}
        >>> print(agent.act(obs))
        CREATE INDEX idx_t_a ON t(a);
        SELECT id FROM t WHERE a IN (1, 2)
    """

    name = "heuristic"

    def __init__(
        self,
        database: str | os.PathLike[str] | None = None,
        *,
        max_indexes: int = 3,
        options: dict | None = None,
    ) -> None:
        self.database = os.fspath(database) if database is not None else None
        self.max_indexes = max_indexes
        self.options = dict(options or {})
        self._backend = None

    # --- candidates ------------------------------------------------------------------------

    def candidates(self, observation: Observation) -> list[str]:
        """Every distinct candidate action for an observation, best guess first."""
        return list(dict.fromkeys(c.sql for c in self._candidates(observation)))

    def _queries(
        self, observation: Observation, catalog: Catalog
    ) -> list[tuple[str, exp.Expression | None, tuple]]:
        """``(text, tree, rules)`` of the original and each distinct rewrite, preferred first."""
        text = observed_query(observation)
        wanted = observed_output_columns(observation)
        ctx = Context(catalog, wanted)
        tree = parse(text)
        if tree is None:
            return [(text, None, ())]
        base: list[tuple[str, exp.Expression, tuple]] = []
        if wanted:
            projected = select_star_to_columns(tree, ctx)
            if projected is None:
                projected = exp.select(*[exp.column(c) for c in wanted]).from_(
                    exp.Subquery(this=tree.copy(), alias=exp.TableAlias(this=exp.to_identifier("q")))
                )
                base.append((render(projected), projected, ("project_output",)))
            else:
                base.append((render(projected), projected, ("select_star_to_columns",)))
        else:
            base.append((text, tree, ()))
        _, start, start_rules = base[0]
        out = []
        chained, fired = rewrite(start, ctx)
        if fired:
            out.append((render(chained), chained, (*start_rules, *fired)))
        out.append(base[0])
        for rule in [*RULES, *ALTERNATIVES]:
            new = rule(start, ctx)
            if new is not None:
                out.append((render(new), new, (*start_rules, rule.__name__)))
        seen, unique = set(), []
        for item in out:
            if item[0] not in seen:
                seen.add(item[0])
                unique.append(item)
        return unique

    def _offline_indexes(
        self, tree: exp.Expression | None, catalog: Catalog, plan: str
    ) -> list[IndexCandidate]:
        if tree is None:
            return []
        cands = [c for c in advise(tree, catalog, plan) if (catalog.table(c.table).rows or 0) >= MIN_ROWS]
        return index_specs(cands, self.max_indexes)

    def _candidates(self, observation: Observation) -> list[Candidate]:
        catalog = parse_schema(observation.get("schema", ""))
        plan = observation.get("plan", "")
        out: list[Candidate] = []
        for text, tree, rules in self._queries(observation, catalog):
            best = tuple(self._offline_indexes(tree, catalog, plan))
            out.append(Candidate(text, best, rules))
            if best:
                out.append(Candidate(text, (), rules))
            singles = advise(tree, catalog, plan) if tree is not None else []
            for cand in singles[:6]:
                out.append(Candidate(text, (cand,), rules))
        return out

    # --- acting ----------------------------------------------------------------------------

    def act(self, observation: Observation) -> str:
        """The best candidate action: measured in database mode, the first guess otherwise."""
        cands = self._candidates(observation)
        if self.database is None or not cands:
            return cands[0].sql if cands else observed_query(observation)
        return self._measure(observation, cands)

    def act_batch(self, observations: Sequence[Observation]) -> list[str]:
        """:meth:`act` for each observation."""
        return [self.act(o) for o in observations]

    # --- database mode ---------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The agent's own copy of the database, for plans with scratch indexes."""
        if self._backend is None:
            self._backend = open_backend(self.database)
        return self._backend

    def used_indexes(self, query: str, indexes: Sequence[IndexCandidate]) -> list[IndexCandidate]:
        """The subset of ``indexes`` the engine's plan of ``query`` uses when all are built."""
        if not indexes:
            return []
        specs = [IndexSpec(c.table, tuple((col, False) for col in c.columns)) for c in indexes]
        try:
            plan = self.backend.plan_with_indexes(query, specs)
        except IndexBuildError:
            return []
        return [c for i, c in enumerate(indexes) if re.search(rf"\bquill_scratch_{i}\b", plan)]

    def _measure(self, observation: Observation, cands: list[Candidate]) -> str:
        runner = TaskRunner.for_database(
            self.database,
            observed_query(observation),
            EvalOptions.from_kwargs(**self.options),
            output_columns=observed_output_columns(observation),
        )
        trials: dict[str, Candidate] = {}
        for cand in cands:
            kept = []
            for idx in cand.indexes:
                if self.used_indexes(cand.query, [idx]):
                    kept.append(idx)
            together = tuple(self.used_indexes(cand.query, kept))
            for variant in (
                Candidate(cand.query, together, cand.rules),
                Candidate(cand.query, (), cand.rules),
            ):
                trials.setdefault(variant.sql, variant)
        best, best_key = None, None
        for sql, cand in trials.items():
            result = runner.evaluate(sql)
            if not result.verdict.correct:
                continue
            key = (result.reward, -len(cand.indexes), -len(sql))
            if best_key is None or key > best_key:
                best, best_key = sql, key
        return best if best is not None else cands[0].query
