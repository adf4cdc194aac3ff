"""Slow-query sources: where the data loop's slow queries come from.

A source writes one slow query for a schema and a pattern (a :mod:`quill_env.authoring.querygen` family):
the procedural "junior developer" generator offline, or a teacher LLM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from quill_agents.proposers import model_of
from quill_env.action_policy import SchemaView
from quill_env.authoring.querygen import Candidate, SchemaInfo, generate
from quill_env.backends import open_backend


class SchemaContext:
    """Per (suite, scale): database path, schema map and text, generator metadata."""

    def __init__(self, suite: Any, scale: str) -> None:
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
            self._info = SchemaInfo(self.suite)
        return self._info

    def close(self) -> None:
        """Close the generator's connections."""
        if self._info is not None:
            self._info.close()


class SlowQuerySource(Protocol):
    """Writes one slow query for a schema and a pattern."""

    name: str

    def draw(
        self, ctx: SchemaContext, family: str, rng: np.random.Generator, examples: Sequence[Mapping[str, Any]]
    ) -> Candidate | None:
        """A candidate slow query (with a reference when the source knows one), or ``None``."""
        ...


class ProceduralSource:
    """Slow queries from the procedural "junior developer" generator (offline, deterministic)."""

    name = "querygen"

    def draw(
        self, ctx: SchemaContext, family: str, rng: np.random.Generator, examples: Sequence[Mapping[str, Any]]
    ) -> Candidate | None:
        """One :func:`quill_env.authoring.querygen.generate` draw of ``family``."""
        return generate(ctx.info, rng, family)


class TeacherSource:
    """Slow queries written by a teacher LLM (``write_slow_query(schema_text, pattern, examples)``)."""

    def __init__(self, teacher: Any) -> None:
        self.teacher = teacher
        self.name = f"teacher:{model_of(teacher) or 'unknown'}"

    def draw(
        self, ctx: SchemaContext, family: str, rng: np.random.Generator, examples: Sequence[Mapping[str, Any]]
    ) -> Candidate | None:
        """Ask the teacher for a slow query showing ``family``."""
        # a distinct sample per draw: the teacher caches responses by (prompt, sample)
        sample = int(rng.integers(2**31 - 1))
        sql = self.teacher.write_slow_query(ctx.schema_text, family, list(examples), sample=sample)
        if not sql:
            return None
        return Candidate(family, ctx.suite.name, sql.strip().rstrip(";"), "", (family,))


__all__ = ["ProceduralSource", "SchemaContext", "SlowQuerySource", "TeacherSource"]
