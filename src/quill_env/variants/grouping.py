"""Mutations that shape groups: their sizes, their aggregates, and how they rank.

A rewrite that changes ``HAVING COUNT(*) > 3`` into ``> 4``, ``SUM(x) > 100`` into ``>= 100``
or ``ORDER BY COUNT(*)`` into ``ORDER BY SUM(x)`` agrees with the original on almost every
database: only a group of exactly four rows, a group whose sum is exactly 100, or groups whose
counts and sums rank differently tell them apart. These mutations build such groups on the
query's own grouping (its GROUP BY columns, or the foreign key a correlated aggregate follows),
with rows made to pass the query's filters so that the groups are counted:

``groups``      for every ``COUNT(...) op k``: groups of k-1, k, k+1 and k+2 rows (and of k-1..k+1
                distinct values for ``COUNT(DISTINCT x)``); without one, groups of 1 to 4 rows
``aggregates``  for every ``SUM|AVG|MIN|MAX|TOTAL(x) op v``: groups whose aggregate is exactly v;
                groups with exactly k distinct values for ``COUNT(DISTINCT x) op k``; without
                either, groups with equal sums and different counts
``skew``        one large group of small values, single rows with the largest values, and a
                heavy tail: counts and sums rank the groups differently
"""

from __future__ import annotations

from quill_env.variants.context import Context
from quill_env.variants.literals import neighbours
from quill_env.variants.query import AggTest
from quill_env.variants.schema import Row, integer_typed, is_numeric

MAX_GROUP = 40
"""The largest group a mutation builds (a ``COUNT(*) > 1000`` threshold is not reproduced)."""

Group = tuple[str, tuple[str, ...]]
"""A grouping: a table and the columns whose equal values form one group."""


def groups(ctx: Context) -> None:
    """Groups sized at the query's COUNT thresholds (see the module docstring)."""
    done = False
    for test in [t for t in ctx.model.tests if t.func == "count"][:3]:
        k = round(test.literal)
        group = _group_of(test)
        if test.distinct and test.argument is not None and group is not None:
            done |= bool(distinct_groups(ctx, group, test.argument.column, [k - 1, k, k + 1]))
        elif group is not None:
            sizes = sorted({s for s in (k - 1, k, k + 1, k + 2) if 1 <= s <= MAX_GROUP})
            members = regroup(ctx, group, sizes)
            if test.argument is not None:
                for rows in members:
                    _fill(ctx, test.argument.node.table, test.argument.column, rows)
            done |= bool(members)
        elif test.counted is not None and 0 <= k < MAX_GROUP:
            exact_count(ctx, test.counted.table, k + 1)
            done = True
    if not done:
        group = fallback_group(ctx)
        if group is not None:
            regroup(ctx, group, [1, 2, 3, 4])


def aggregates(ctx: Context) -> None:
    """Groups whose aggregates land exactly on the compared literals (see the module docstring)."""
    done = False
    for test in [t for t in ctx.model.tests if t.func != "count" and t.argument is not None][:3]:
        table, column = test.argument.node.table, test.argument.column
        if column in ctx.schema.key_columns(table) or not is_numeric(test.literal):
            continue
        integer = integer_typed(ctx.schema.type_of(table, column)) or all(
            isinstance(v, int) for v in ctx.observed(table, column)
        )
        lands = landing_values(test.literal, integer)
        group = _group_of(test)
        if group is not None:
            members = regroup(ctx, group, [len(v) for v in lands])
            for rows, wanted in zip(members, lands):
                for row, value in zip(rows, wanted):
                    ctx.editor.assign(table, row, column, value)
            done |= bool(members)
        else:
            kept = exact_count(ctx, table, 1)
            for row in kept:
                ctx.editor.assign(table, row, column, lands[0][0])
            done |= bool(kept)
    for test in [t for t in ctx.model.tests if t.func == "count" and t.distinct and t.argument][:2]:
        group = _group_of(test)
        if group is not None:
            k = round(test.literal)
            done |= bool(distinct_groups(ctx, group, test.argument.column, [k, k, k - 1, k + 1]))
    if not done:
        _equal_sums(ctx)


def skew(ctx: Context) -> None:
    """Groups whose counts and sums rank differently, and heavy-tailed measures."""
    group = fallback_group(ctx)
    table = group[0] if group else next((n.table for n in ctx.model.positive_nodes()), None)
    if table is None:
        return
    measures = _measures(ctx, table)
    members = regroup(ctx, group, [6, 1, 2, 3]) if group else []
    in_groups = {id(r) for rows in members for r in rows}
    for column in measures:
        nums = sorted(v for v in ctx.observed(table, column) if is_numeric(v))
        if len(nums) < 2:
            continue
        lo, mid, hi = nums[0], nums[len(nums) // 2], nums[-1]
        plan = [[lo] * 6, [hi], [hi, mid], [mid] * 3]
        for rows, wanted in zip(members, plan):
            for row, value in zip(rows, wanted):
                ctx.editor.assign(table, row, column, value)
        rest = [r for r in ctx.rows(table) if id(r) not in in_groups]
        for row in rest:
            roll = ctx.rng.random()
            value = hi if roll < 0.1 else nums[int(ctx.rng.integers(max(1, len(nums) // 3)))]
            ctx.editor.assign(table, row, column, value)


# --- building blocks ----------------------------------------------------------------------


def regroup(ctx: Context, group: Group, sizes: list[int]) -> list[list[Row]]:
    """Make groups of exactly ``sizes`` rows on ``group``, rows passing the query's filters.

    Group values are existing ones (or, for a foreign key, keys its parent holds), those that
    pass the query's filters on the grouping columns first; rows come from other groups, then
    from copies. Returns the members of each group (none when the grouping is a key).
    """
    table, columns = group
    schema, editor, rng = ctx.schema, ctx.editor, ctx.rng
    if not columns or any(set(s) <= set(columns) for s in schema.unique_sets(table)):
        return []
    rows = ctx.rows(table)
    if not rows:
        return []

    def key(row: Row) -> tuple:
        return tuple(row.get(c) for c in columns)

    values = [v for v in dict.fromkeys(key(r) for r in rows) if None not in v]
    if len(columns) == 1:
        for link in schema.links_from(table):
            if link.columns == columns:
                keys = dict.fromkeys((p.get(link.ref_columns[0]),) for p in ctx.rows(link.parent))
                values += [v for v in keys if None not in v and v not in values]
    if not values:
        return []
    values = [values[int(i)] for i in rng.permutation(len(values))]
    values = _passing_first(ctx, table, columns, values, rows[0])
    chosen, spill = values[: len(sizes)], values[len(sizes) :]
    pool = [r for r in rows if key(r) not in chosen]
    pool = [pool[int(i)] for i in rng.permutation(len(pool))]
    out = []
    for value, size in zip(chosen, sizes):
        members = [r for r in rows if key(r) == value]
        while len(members) > size:
            extra = members.pop()
            if spill:
                _set(ctx, table, extra, columns, spill[int(rng.integers(len(spill)))])
            else:
                rows.remove(extra)
        while len(members) < size:
            if pool:
                row = pool.pop()
            else:
                row = editor.clone(table, members[0] if members else rows[0], keep=frozenset(columns))
                if row is None:
                    break
                rows.append(row)
            _set(ctx, table, row, columns, value)
            members.append(row)
        out.append(members)
    for members, value in zip(out, chosen):
        for row in members:
            ctx.satisfy(table, row, skip=frozenset(columns))
            _set(ctx, table, row, columns, value)
    return out


def distinct_groups(ctx: Context, group: Group, column: str, counts: list[int]) -> list[list[Row]]:
    """Groups holding exactly ``counts`` distinct values of ``column`` (each one row more)."""
    table = group[0]
    counts = [d for d in counts if 1 <= d < MAX_GROUP]
    if not counts or column in ctx.schema.unique_columns(table):
        return []
    members = regroup(ctx, group, [d + 1 for d in counts])
    domain = ctx.observed(table, column)
    for value in list(domain):
        if len(domain) > max(counts):
            break
        domain += [v for v in neighbours(value) if v not in domain]
    for rows, d in zip(members, counts):
        picks = ctx.pick(domain, d)
        for i, row in enumerate(rows):
            ctx.editor.assign(table, row, column, picks[i % len(picks)])
    return members


def exact_count(ctx: Context, table: str, n: int) -> list[Row]:
    """Make exactly ``n`` rows of ``table`` pass the query's filters on it; returns them."""
    node = ctx.node_of(table)
    rows = ctx.rows(table)
    if node is None or not rows:
        return []
    filters = ctx.model.filters_of(node)
    flags = ctx.planter.checker.check(node, filters, rows)
    passing = [r for r, ok in zip(rows, flags) if ok]
    others = [r for r, ok in zip(rows, flags) if not ok]
    for _ in range(2 * n + 4):
        if len(passing) >= n:
            break
        if others:
            row = others.pop(int(ctx.rng.integers(len(others))))
            if ctx.planter.solve(ctx.editor, node, row):
                passing.append(row)
        elif passing:
            copy = ctx.editor.clone(table, passing[0])
            if copy is None:
                break
            rows.append(copy)
            passing.append(copy)
        else:
            break
    for extra in passing[n:]:
        rows.remove(extra)
    return passing[:n]


def landing_values(literal: int | float, integer: bool) -> list[list[int | float]]:
    """Groups of values whose SUM, AVG, MIN or MAX is exactly ``literal``.

    >>> landing_values(100, True)
    [[100], [50, 50], [100, 100, 100], [100, 101], [99, 100]]
    """
    value = round(literal) if integer else literal
    step = 1 if integer else 0.01
    half = value // 2 if integer else round(value / 2, 6)
    return [[value], [half, value - half], [value] * 3, [value, value + step], [value - step, value]]


def fallback_group(ctx: Context) -> Group | None:
    """The query's first grouping, else a foreign key into a table the query reads."""
    for grouping in ctx.model.groupings:
        return grouping.node.table, grouping.columns
    for test in ctx.model.tests:
        group = _group_of(test)
        if group is not None:
            return group
    read = {n.table.lower() for n in ctx.model.positive_nodes()}
    links = [link for link in ctx.schema.links if len(link.columns) == 1 and link.child.lower() in read]
    links += [link for link in ctx.schema.links if len(link.columns) == 1]
    for link in links:
        if link.columns[0] not in ctx.schema.unique_columns(link.child):
            return link.child, link.columns
    return None


def _group_of(test: AggTest) -> Group | None:
    return (test.grouping.node.table, test.grouping.columns) if test.grouping else None


def _set(ctx: Context, table: str, row: Row, columns: tuple[str, ...], value: tuple) -> None:
    for column, v in zip(columns, value):
        ctx.editor.assign(table, row, column, v)


def _passing_first(
    ctx: Context, table: str, columns: tuple[str, ...], values: list[tuple], like: Row
) -> list[tuple]:
    node = ctx.node_of(table)
    if node is None:
        return values
    own = [f for f in ctx.model.filters_of(node) if f.columns <= set(columns)]
    if not own:
        return values
    trials = [{**like, **dict(zip(columns, v))} for v in values]
    flags = ctx.planter.checker.check(node, own, trials)
    return [v for v, ok in zip(values, flags) if ok] + [v for v, ok in zip(values, flags) if not ok]


def _fill(ctx: Context, table: str, column: str, rows: list[Row]) -> None:
    """Give NULLs of ``column`` an observed value, so ``COUNT(column)`` counts every row."""
    domain = ctx.observed(table, column)
    for row in rows:
        if row.get(column) is None and domain:
            ctx.editor.assign(table, row, column, domain[int(ctx.rng.integers(len(domain)))])


def _measures(ctx: Context, table: str) -> list[str]:
    own = list(dict.fromkeys(m.column for m in ctx.model.measures if m.node.table.lower() == table.lower()))
    if own:
        return own[:3]
    skip = ctx.schema.key_columns(table) | ctx.schema.fk_columns(table)
    numeric = [c for c in ctx.schema.info(table).column_names
               if c not in skip and any(is_numeric(v) for v in ctx.observed(table, c))]  # fmt: skip
    return numeric[:3]


def _equal_sums(ctx: Context) -> None:
    """Groups with equal sums and different counts (and equal counts, different sums)."""
    group = fallback_group(ctx)
    if group is None:
        return
    table = group[0]
    for column in _measures(ctx, table)[:1]:
        nums = [v for v in ctx.observed(table, column) if is_numeric(v) and v]
        if not nums:
            continue
        v = nums[int(ctx.rng.integers(len(nums)))]
        members = regroup(ctx, group, [1, 2, 2])
        for rows, wanted in zip(members, [[2 * v], [v, v], [v, 3 * v]]):
            for row, value in zip(rows, wanted):
                ctx.editor.assign(table, row, column, value)


__all__ = [
    "MAX_GROUP",
    "aggregates",
    "distinct_groups",
    "exact_count",
    "groups",
    "landing_values",
    "regroup",
    "skew",
]
