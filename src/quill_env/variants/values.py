"""Mutations of values that look alike: near-duplicate rows and strings near a literal.

``near_duplicates``  copies of rows that keep one grouping, distinct or join column and change
                     the others to values other rows hold: ``GROUP BY id, dept`` and
                     ``GROUP BY id`` differ only when one ``id`` has two ``dept`` (``id`` not a
                     key), a DISTINCT over a non-key differs from one over the key, a join on a
                     non-unique column multiplies rows
``strings``          for every string literal a column is compared with: values equal to it,
                     containing it, in other cases, with a leading or trailing space, and strings
                     that match a LIKE pattern without being its literal text (``=`` vs
                     ``LIKE '%x%'``, ``=`` vs ``LIKE``'s case-insensitivity, trimmed vs not);
                     without one, case and space variants of the values of text columns the
                     query filters or groups on
"""

from __future__ import annotations

from quill_env.variants.context import Context
from quill_env.variants.literals import containing, like_matches, parse_date

MAX_KEPT = 6
"""Kept columns (one batch of copies each) per variant."""


def near_duplicates(ctx: Context) -> None:
    """Copies that keep one grouping or join column and change the others (see the module docstring)."""
    targets = _kept_columns(ctx)
    rng = ctx.rng
    for table, keep in targets[:MAX_KEPT]:
        rows = ctx.rows(table)
        if not rows:
            continue
        skip = ctx.schema.key_columns(table) | {keep}
        composite = [link.columns for link in ctx.schema.links_from(table) if len(link.columns) > 1]
        tied = {c for cols in composite for c in cols}
        changeable = [c for c in ctx.schema.info(table).column_names if c not in skip and c not in tied]
        for row in ctx.pick(list(rows), max(1, min(8, len(rows) // 4))):
            copy = ctx.editor.clone(table, row, keep=frozenset({keep}))
            if copy is None:
                continue
            for column in changeable:
                others = [r.get(column) for r in rows if r.get(column) != row.get(column)]
                if others:
                    copy[column] = others[int(rng.integers(len(others)))]
            for cols in composite:
                if not set(cols) & skip:
                    donor = rows[int(rng.integers(len(rows)))]
                    copy.update({c: donor.get(c) for c in cols})
            rows.append(copy)
            ctx.satisfy(table, copy, skip=frozenset({keep}))


def strings(ctx: Context) -> None:
    """Strings near the query's string literals (see the module docstring)."""
    rng = ctx.rng
    planted = False
    for (table, column), found in ctx.literals.items():
        if table.lower() not in ctx.schema.tables or column in ctx.schema.fk_columns(table):
            continue
        texts = [v for v in found if isinstance(v, str) and parse_date(v) is None]
        if not texts:
            continue
        observed = [v for v in ctx.observed(table, column) if isinstance(v, str)]
        pool: list[str] = []
        for text in texts:
            pool += containing(text, observed, rng)
            if "%" in text or "_" in text:
                pool += like_matches(text, observed, rng)
        pool = list(dict.fromkeys(pool))
        rows = ctx.rows(table)
        if not rows:
            continue
        order = [rows[int(i)] for i in rng.permutation(len(rows))]
        for row, value in zip(
            order, pool + [pool[int(rng.integers(len(pool)))] for _ in range(len(rows) // 3)]
        ):
            if ctx.editor.assign(table, row, column, value):
                ctx.satisfy(table, row, skip=frozenset({column}))
                planted = True
    if not planted:
        _case_and_space(ctx)


def _case_and_space(ctx: Context) -> None:
    """Case and space variants of the text values the query filters or groups on."""
    rng = ctx.rng
    columns = {(f.node.table, c) for f in ctx.model.filters for c in f.columns if not f.node.negative}
    columns |= {(r.node.table, r.column) for r in ctx.model.keys}
    for table, column in sorted(columns):
        if column in ctx.schema.fk_columns(table):
            continue
        for row in ctx.rows(table):
            value = row.get(column)
            if isinstance(value, str) and rng.random() < 0.3 and parse_date(value) is None:
                variant = [value.upper(), value.lower(), value + " ", " " + value][int(rng.integers(4))]
                ctx.editor.assign(table, row, column, variant)


def _kept_columns(ctx: Context) -> list[tuple[str, str]]:
    """``(table, column)`` pairs a near-duplicate keeps: the query's keys, then its join columns."""
    refs = [*ctx.model.keys, *ctx.model.join_columns()]
    pairs = [(r.node.table, r.column) for r in refs if not r.node.negative]
    pairs += [(g.node.table, c) for g in ctx.model.groupings for c in g.columns]
    out = []
    for table, column in dict.fromkeys(pairs):
        if column not in ctx.schema.unique_columns(table):
            out.append((table, column))
    if not out:
        for node in ctx.model.positive_nodes():
            keys = ctx.schema.key_columns(node.table)
            free = [c for c in ctx.schema.info(node.table).column_names if c not in keys]
            if free:
                out.append((node.table, free[int(ctx.rng.integers(len(free)))]))
    return out


__all__ = ["near_duplicates", "strings"]
