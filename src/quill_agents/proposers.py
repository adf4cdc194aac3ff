"""Proposers: the optimizers the data loop asks for rewrites of a slow query.

A proposer is any ``propose(observation, k) -> list of actions``; one may also have a
``prepare(DrawContext)`` method (called before each draw's proposals), a ``name`` and a ``model``
(recorded with every record) and a ``usage()`` (token and cost accounting).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from quill_agents.heuristic import HeuristicAgent
from quill_agents.teacher import TeacherAgent, TeacherConfig
from quill_env.action_policy import split_statements
from quill_env.authoring.querygen import Candidate
from quill_env.dialect import SUITE_DIALECT
from quill_env.errors import ConfigError, UnknownNameError

log = logging.getLogger(__name__)

Observation = Mapping[str, str]
Propose = Callable[[Observation, int], list[str]]
"""Any optimizer: ``propose(observation, k) -> list of actions``."""


@dataclass
class DrawContext:
    """What a proposer may want to know about the current draw beyond the observation."""

    suite: Any
    scale: str
    database: str
    candidate: Candidate


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
    parts = split_statements(reference)
    indexes, ref_query = parts[:-1], parts[-1]
    out = []
    if indexes:
        out.append(ref_query)
        out.append(";\n".join([*indexes, query]))
    try:
        tree = sqlglot.parse_one(ref_query, read=SUITE_DIALECT)
        flipped = False
        for node in tree.find_all(exp.EQ, exp.GT, exp.LT):
            new = {exp.EQ: exp.NEQ, exp.GT: exp.LTE, exp.LT: exp.GTE}[type(node)]
            node.replace(new(this=node.this.copy(), expression=node.expression.copy()))
            flipped = True
            break
        if flipped:
            out.append(";\n".join([*indexes, tree.sql(SUITE_DIALECT)]))
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
        self.model = model_of(teacher)

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
        self.name = "+".join(name_of(p) for p in self.proposers)
        models = [m for m in (model_of(p) for p in self.proposers) if m]
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
                self.sources.setdefault(action, name_of(p))
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
        MissingExtraError: the ``openai`` client (the ``teacher`` extra) is not installed.
    """
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
            raise UnknownNameError("proposer", name, ("heuristic", "reference", "openai"))
    if not out:
        raise ConfigError("name at least one proposer")
    return CompositeProposer(out)


def name_of(p: Any) -> str:
    """The name a proposer (or any callable) is recorded under."""
    return str(getattr(p, "name", None) or getattr(p, "__name__", None) or type(p).__name__)


def model_of(p: Any) -> str | None:
    """The model name of a proposer or teacher (its ``model`` or ``config.model``), if any."""
    model = getattr(p, "model", None)
    if model is None and getattr(p, "config", None) is not None:
        model = getattr(p.config, "model", None)
    return model if isinstance(model, str) else None


__all__ = [
    "CompositeProposer",
    "DrawContext",
    "HeuristicProposer",
    "Observation",
    "Propose",
    "ReferenceProposer",
    "TeacherProposer",
    "build_proposer",
    "build_teacher",
    "model_of",
    "name_of",
]
