"""UNIONs of filters on one table: one scan with IN, or UNION ALL when the branches are disjoint."""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.rules.rule_context import Context, column_eq_literal, where_terms
from quill_agents.heuristic.sqlutil import (
    AGGREGATES,
    has_subquery,
    int_literal,
    is_simple_select,
    set_where,
    single_table,
)


def union_to_in(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``SELECT p FROM t WHERE c = 1 UNION SELECT p FROM t WHERE c = 2`` -> one scan with IN.

    UNION is a set: the rows of ``t`` matching any branch, projected and de-duplicated. One
    SELECT DISTINCT with ``c IN (...)`` returns that set; DISTINCT is dropped when the
    projection holds a NOT NULL unique key (each base row is then already distinct).
    """
    branches = _union_branches(tree)
    if branches is None or len(branches) < 2:
        return None
    first = branches[0]
    found = single_table(first, ctx.catalog)
    if found is None:
        return None
    table, meta = found
    proj = [e.sql() for e in first.expressions]
    if any(isinstance(e, exp.Star) or e.find(*AGGREGATES) for e in first.expressions):
        return None
    split = []
    for b in branches:
        other = single_table(b, ctx.catalog)
        if other is None or other[0].sql() != table.sql() or [e.sql() for e in b.expressions] != proj:
            return None
        if not is_simple_select(b) or has_subquery(b):
            return None
        split.append(_terms(b))
    column = _common_eq_column(split)
    if column is None:
        return None
    values, rest = [], None
    for terms in split:
        eqs = [t for t in terms if _filter_on(t, column) is not None]
        others = sorted(t.sql() for t in terms if t is not eqs[0])
        if rest is not None and others != rest:
            return None
        rest = others
        values.append(column_eq_literal(eqs[0])[1].copy())
    new = first.copy()
    eq_col = next(_filter_on(t, column) for t in split[0] if _filter_on(t, column) is not None)
    kept = [t.copy() for t in split[0] if _filter_on(t, column) is None]
    set_where(new, [exp.In(this=eq_col.copy(), expressions=values), *kept])
    name = table.alias_or_name.lower()
    keyed = any(
        isinstance(e, exp.Column) and (not e.table or e.table.lower() == name) and meta.is_unique_key(e.name)
        for e in (x.this if isinstance(x, exp.Alias) else x for x in new.expressions)
    )
    if not keyed:
        new.set("distinct", exp.Distinct())
    if isinstance(tree, exp.Union) and tree.args.get("order"):
        new.set("order", tree.args["order"].copy())
    return new


def _filter_on(term: exp.Expression, column: str) -> exp.Column | None:
    """The column of a ``column = literal`` term on ``column`` (by SQL text), else ``None``."""
    pair = column_eq_literal(term)
    return pair[0] if pair is not None and pair[0].sql() == column else None


def _terms(select: exp.Select) -> list[exp.Expression]:
    return where_terms(select)


def _union_branches(tree: exp.Expression) -> list[exp.Select] | None:
    """The SELECT branches of a chain of plain UNIONs (no ALL, LIMIT or inner ORDER BY)."""
    if not isinstance(tree, exp.Union) or not tree.args.get("distinct") or tree.args.get("limit"):
        return None
    if tree.args.get("offset") or tree.args.get("with_"):
        return None
    out = []
    for side in (tree.this, tree.expression):
        if isinstance(side, exp.Union):
            if side.args.get("order") or side.args.get("limit"):
                return None
            inner = _union_branches(side)
            if inner is None:
                return None
            out += inner
        elif isinstance(side, exp.Select):
            out.append(side)
        else:
            return None
    if isinstance(tree.args.get("order"), exp.Order):
        names = {e.alias_or_name.lower() for e in out[0].expressions}
        for o in tree.args["order"].expressions:
            key = o.this
            if not (
                int_literal(key) is not None or (isinstance(key, exp.Column) and key.name.lower() in names)
            ):
                return None
    return out


def _common_eq_column(split: list[list[exp.Expression]]) -> str | None:
    """A column that every branch filters with exactly one ``column = literal`` conjunct."""
    candidates = None
    for terms in split:
        keys = [column_eq_literal(t)[0].sql() for t in terms if column_eq_literal(t)]
        once = {k for k in keys if keys.count(k) == 1}
        candidates = once if candidates is None else candidates & once
    return sorted(candidates)[0] if candidates else None


def union_to_union_all(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """UNION -> UNION ALL when the branches are provably disjoint and each is duplicate-free.

    Every branch reads the same table, projects its NOT NULL unique key (at the same position)
    and filters the same column with a different literal of the same kind.
    """
    branches = _union_branches(tree)
    if branches is None or len(branches) < 2 or tree.args.get("order"):
        return None
    found = single_table(branches[0], ctx.catalog)
    if found is None:
        return None
    table, meta = found
    keys = None
    split = []
    for b in branches:
        other = single_table(b, ctx.catalog)
        if other is None or other[0].name.lower() != table.name.lower() or not is_simple_select(b):
            return None
        name = other[0].alias_or_name.lower()
        pos = {
            i
            for i, e in enumerate(b.expressions)
            if isinstance(e, exp.Column)
            and (not e.table or e.table.lower() == name)
            and meta.is_unique_key(e.name)
        }
        keys = pos if keys is None else keys & pos
        split.append(_terms(b))
    column = _common_eq_column(split)
    if not keys or column is None:
        return None
    seen = set()
    for terms in split:
        lit = next(column_eq_literal(t)[1] for t in terms if _filter_on(t, column) is not None)
        value = (lit.is_string, lit.this) if isinstance(lit, exp.Literal) else (False, lit.sql())
        if not isinstance(lit, exp.Literal) or value in seen or (seen and next(iter(seen))[0] != value[0]):
            return None
        if not lit.is_string:
            value = (False, float(lit.this))
        if value in seen:
            return None
        seen.add(value)
    new = tree.copy()
    for node in new.find_all(exp.Union):
        node.set("distinct", False)
    return new
