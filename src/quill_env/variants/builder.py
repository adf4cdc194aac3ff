"""Assembling variants: sample, plant witnesses, mutate, write, and check the original answers.

For each mutation of :attr:`VariantBuilder.MUTATIONS`, with its own random generator:

1. a coverage-seeded sample (:mod:`.sampling`), seeded from the query's lineage on the source;
2. when the source holds no answer at all, witnesses planted before the mutation
   (:mod:`.planting`), so the mutation acts on rows the query returns;
3. the mutation (:mod:`.mutations`, :mod:`.grouping`, :mod:`.values`);
4. foreign keys enforced, rows written into the schema (:mod:`.materialize`);
5. the original run on the result under a small work budget: when it returns no row (and the
   variant is not ``empty``), witnesses are planted into the mutated rows and the variant is
   written again, up to :data:`REPAIRS` times. So the original returns rows on nearly every
   variant, and a wrong rewrite has something to disagree on.

Everything runs through the :class:`~quill_env.backends.base.Backend` interface on the source's
own engine (its scratch databases are ``type(source)``), and a :class:`Variant` is engine-neutral:
its DDL and rows, which :meth:`Variant.load` builds on any backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from quill_env.action_policy import encodable
from quill_env.backends.base import Backend, Budget, ExecStatus
from quill_env.lineage import lineage_scopes
from quill_env.variants.context import Context
from quill_env.variants.edit import Editor
from quill_env.variants.literals import query_literals
from quill_env.variants.materialize import SchemaImage, enforce_foreign_keys
from quill_env.variants.mutations import RECIPES
from quill_env.variants.planting import FilterCheck, Planter, witness_count
from quill_env.variants.query import QueryModel
from quill_env.variants.sampling import Sampler
from quill_env.variants.schema import Data, Schema
from quill_env.variants.source import Source

LINEAGE_ROWS = 200
"""Answer rows read per SELECT scope of the lineage on the source."""

LINEAGE_WORK = 20_000_000
"""Work units (SQLite: VM steps) the lineage on the source may run (a large source gets a partial
lineage)."""

COVER_WORK = 5_000_000
"""Work units the coverage check of one variant may run (a variant that exhausts it counts as covered)."""

REPAIRS = 3
"""Times a variant without an answer gets witnesses planted and is written again (from the
second time on aggressively: see :meth:`~.planting.Planter.plant`)."""


NULL_TRAPS = frozenset({"nulls", "combined"})
"""Variants whose NULLs are the point: repairs never delete the NULLs that empty a ``NOT IN``."""


@dataclass(frozen=True)
class Variant:
    """One variant database, engine-neutral: its mutation recipe, DDL and rows.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> v = Variant("nulls", ("CREATE TABLE t (a INT, b TEXT)",), {"t": ((1, None), (2, "x"))}, "sqlite")
    >>> db = v.load(SQLiteBackend)
    >>> db.label, db.query("SELECT a, b FROM t ORDER BY rowid")
    ('nulls', [(1, None), (2, 'x')])
    """

    name: str
    """The mutation (one of :attr:`VariantBuilder.MUTATIONS`)."""
    schema_sql: tuple[str, ...]
    """The DDL (tables, their indexes, views) in :attr:`dialect`."""
    rows: Mapping[str, tuple[tuple, ...]]
    """Rows per table name, each in the table's column order, in row order."""
    dialect: str
    """The sqlglot dialect of :attr:`schema_sql` (the source's)."""

    def load(self, backend_cls: type[Backend], *, label: str | None = None) -> Backend:
        """A new in-memory database of this variant on ``backend_cls`` (the caller closes it).

        Raises:
            DatabaseError: the engine refused a statement or a row.
        """
        return backend_cls.from_rows(
            self.schema_sql, self.rows, label=label or self.name, dialect=self.dialect
        )


class VariantBuilder:
    """Derive adversarial, coverage-guided variants from a source database.

    Args:
        source: the database to sample from (never modified); queries given to :meth:`build`
            are in its dialect, and the scratch databases are of its engine.
        rows_per_table: random rows sampled per table (the query's answer rows, their
            children and the parents of everything sampled come on top).
        seed: makes the variants deterministic.
    """

    MUTATIONS: tuple[str, ...] = tuple(RECIPES)
    """Every variant's name, in build order (``build(sql, k)`` builds the first ``k``)."""

    def __init__(self, source: Backend, *, rows_per_table: int = 40, seed: int = 0) -> None:
        self.source = source
        self.dialect = source.dialect
        self.rows_per_table = rows_per_table
        self.seed = seed
        self.schema = Schema(source.tables())
        self.tables = self.schema.tables
        self.order = self.schema.order
        self._sampler = Sampler(Source(source), self.schema, rows_per_table)
        self._image: SchemaImage | None = None

    def build(self, sql: str | None = None, k: int | None = None) -> list[Variant]:
        """Build ``k`` variants (default: one per mutation) for the query ``sql``.

        Args:
            sql: the original query, in the source's dialect; without one, variants are plain
                mutated samples.
            k: how many of :attr:`MUTATIONS` to build, in order.

        Returns:
            The variants, named after their mutation.
        """
        names = self.MUTATIONS[: k or len(self.MUTATIONS)]
        if sql is not None and not encodable(sql):
            sql = None  # no engine can run it (a lone surrogate): plain mutated samples
        image = self._schema_image()
        model = QueryModel(sql or "", self.schema, self.dialect)
        literals = query_literals(sql, self.schema.all_tables, self.dialect) if sql else {}
        lineage = lineage_scopes(self.source, sql, limit=LINEAGE_ROWS, max_work=LINEAGE_WORK) if sql else []
        checker = FilterCheck(self.schema, image.empty())
        planter = Planter(model, self.schema, checker)
        witnesses = witness_count(self.rows_per_table)
        out = []
        try:
            for i, name in enumerate(names):
                rng = np.random.default_rng([self.seed, i])
                data = self._sampler.sample(rng, lineage)
                editor = Editor(self.schema, data, rng)
                ctx = Context(self.schema, model, literals, planter, editor)
                wanted = bool(sql) and name != "empty" and planter.active
                if wanted and not lineage:
                    planter.plant(editor, witnesses)
                for step in RECIPES[name]:
                    step(ctx)
                backend = self._write(data)
                for attempt in range(REPAIRS if wanted else 0):
                    if _answers(backend, sql or ""):
                        break
                    backend.close()
                    planter.plant(editor, witnesses, aggressive=attempt > 0, keep_nulls=name in NULL_TRAPS)
                    backend = self._write(data)
                out.append(Variant(name, image.schema_sql, image.rows(backend), self.dialect))
                backend.close()
        finally:
            checker.close()
        return out

    def _schema_image(self) -> SchemaImage:
        if self._image is None:
            self._image = SchemaImage(self.schema, type(self.source), self.dialect, self.source.type_sql())
        return self._image

    def _write(self, data: Data) -> Backend:
        enforce_foreign_keys(self.schema, data)
        return self._schema_image().write(data)


def _answers(backend: Backend, sql: str) -> bool:
    """Whether ``sql`` returns a row on ``backend`` (a run that cannot tell counts as yes)."""
    result = backend.execute(sql, Budget(max_work=COVER_WORK, max_rows=0))
    if result.status is ExecStatus.OK:
        return bool(result.rows)
    return True


__all__ = ["COVER_WORK", "LINEAGE_ROWS", "LINEAGE_WORK", "REPAIRS", "Variant", "VariantBuilder"]
