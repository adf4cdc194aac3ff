"""The classic adversarial mutations, and the registry of every variant's recipe.

Each mutation edits one variant's rows in place, deterministically from the variant's random
generator, and keeps the declared constraints (NOT NULL, keys, foreign keys) and each column's
observed value domain:

``sample``       nothing: the coverage-seeded sample as drawn
``nulls``        NULLs in 30% of every nullable column (join keys and filters included)
``duplicates``   copies of rows with fresh keys: duplicated children, repeated non-unique values
``childless``    parents without children: new parent rows, and parents whose children moved away
``boundary``     the query's literals and their neighbours in the compared columns
``ties``         few distinct values in every non-key column: ties and group collisions
``empty``        every table empty
``combined``     duplicates, NULLs, boundary values and ties together
``groups``       groups of exactly k-1..k+2 rows for every ``COUNT(...) op k`` (see :mod:`.grouping`)
``aggregates``   groups whose SUM/AVG/MIN/MAX equals the compared literal, ``COUNT(DISTINCT)`` = k
``near_duplicates`` copies that keep a grouping or join column and change the others
``strings``      values containing the string literals, in other cases, with trailing spaces
``skew``         groups whose counts and sums rank differently, heavy-tailed measures
"""

from __future__ import annotations

from collections.abc import Callable

from quill_env.variants import grouping, values
from quill_env.variants.context import Context
from quill_env.variants.literals import neighbours

Mutation = Callable[[Context], None]


def nulls(ctx: Context) -> None:
    """NULLs in 30% of every nullable column (join keys and filters included), at least one each."""
    rng = ctx.rng
    for info in ctx.schema.order:
        cols = ctx.schema.nullable(info.name)
        rows = ctx.rows(info.name)
        for row in rows:
            for col in cols:
                if rng.random() < 0.3:
                    row[col] = None
        if rows:
            for col in cols:
                rows[int(rng.integers(len(rows)))][col] = None


def duplicates(ctx: Context) -> None:
    """Copies of rows with fresh keys: duplicated children, repeated non-unique values."""
    rng = ctx.rng
    for info in ctx.schema.order:
        rows = ctx.rows(info.name)
        picks = [r for r in list(rows) if rng.random() < 0.35]
        picks = [r for r in picks for _ in range(int(rng.integers(1, 3)))]
        rows += [copy for copy in ctx.editor.clones(info.name, picks) if copy is not None]


def childless(ctx: Context) -> None:
    """Parents without children: new parent rows, and parents whose children moved away.

    No table is emptied (that would leave many queries without an answer): the ``empty``
    variant does that.
    """
    rng = ctx.rng
    for info in ctx.schema.order:
        rows = ctx.rows(info.name)
        if info.name.lower() not in ctx.schema.referenced or not rows:
            continue
        picks = [rows[int(rng.integers(len(rows)))] for _ in range(max(2, len(rows) // 4))]
        rows += [copy for copy in ctx.editor.clones(info.name, picks) if copy is not None]
    for link in ctx.schema.links:
        if len(link.columns) != 1 or link.child == link.parent:
            continue
        column, ref = link.columns[0], link.ref_columns[0]
        parents = [p.get(ref) for p in ctx.rows(link.parent) if p.get(ref) is not None]
        keys = list(dict.fromkeys(parents))
        if len(keys) < 2 or column in ctx.schema.key_columns(link.child):
            continue
        orphaned = set(ctx.pick(keys, max(1, len(keys) // 4)))
        others = [k for k in keys if k not in orphaned]
        for child in ctx.rows(link.child):
            if child.get(column) in orphaned and others:
                child[column] = others[int(rng.integers(len(others)))]


def boundary(ctx: Context) -> None:
    """Values equal to the query's literals, and their neighbours, in the compared columns."""
    rng = ctx.rng
    for (table, col), found in ctx.literals.items():
        if table.lower() not in ctx.schema.tables:
            continue
        if col in ctx.schema.key_columns(table) or col in ctx.schema.fk_columns(table):
            continue
        pool = [v for value in found for v in neighbours(value)]
        for row in ctx.rows(table):
            if rng.random() < 0.5:
                row[col] = pool[int(rng.integers(len(pool)))]


def ties(ctx: Context) -> None:
    """Few distinct values in every non-unique, non-key column: ties and group collisions."""
    rng = ctx.rng
    for info in ctx.schema.order:
        rows = ctx.rows(info.name)
        skip = ctx.schema.key_columns(info.name) | ctx.schema.fk_columns(info.name)
        for col in info.column_names:
            if col in skip or not rows:
                continue
            observed = [r[col] for r in rows if r.get(col) is not None]
            if not observed:
                continue
            few = [
                observed[int(i)] for i in rng.choice(len(observed), size=min(2, len(observed)), replace=False)
            ]
            for row in rows:
                if row.get(col) is not None and rng.random() < 0.7:
                    row[col] = few[int(rng.integers(len(few)))]


def empty(ctx: Context) -> None:
    """Every table empty."""
    for rows in ctx.data.values():
        rows.clear()


RECIPES: dict[str, tuple[Mutation, ...]] = {
    "sample": (),
    "nulls": (nulls,),
    "duplicates": (duplicates,),
    "childless": (childless,),
    "boundary": (boundary,),
    "ties": (ties,),
    "empty": (empty,),
    "combined": (duplicates, nulls, boundary, ties),
    "groups": (grouping.groups,),
    "aggregates": (grouping.aggregates,),
    "near_duplicates": (values.near_duplicates,),
    "strings": (values.strings,),
    "skew": (grouping.skew,),
}
"""Every variant's mutations, in the order :attr:`VariantBuilder.MUTATIONS` builds them."""


__all__ = ["RECIPES", "Mutation", "boundary", "childless", "duplicates", "empty", "nulls", "ties"]
