"""Filters on group keys move before the grouping: HAVING -> WHERE, filter a grouped table first."""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.rules.rule_context import Context, top_select, where_terms
from quill_agents.heuristic.sqlutil import (
    AGGREGATES,
    conjoin,
    conjuncts,
    from_items,
    has_subquery,
    is_simple_select,
    owner,
    set_where,
    sources,
)


def having_to_where(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """HAVING conjuncts on plain GROUP BY columns (no aggregates) move to WHERE."""
    tree = tree.copy()
    select = top_select(tree)
    if select is None or not select.args.get("group") or not select.args.get("having"):
        return None
    if select.find(exp.Window) is not None:
        return None
    srcs = sources(select, ctx.catalog)
    keys = {g.sql() for g in select.args["group"].expressions if isinstance(g, exp.Column)}
    aliases = {e.alias.lower() for e in select.expressions if isinstance(e, exp.Alias)}
    moved, kept = [], []
    for term in conjuncts(select.args["having"].this):
        cols = list(term.find_all(exp.Column))
        ok = (
            cols
            and not term.find(*AGGREGATES)
            and not has_subquery(term)
            and all(c.sql() in keys and owner(c, srcs) and c.name.lower() not in aliases for c in cols)
        )
        (moved if ok else kept).append(term)
    if not moved:
        return None
    set_where(select, [*where_terms(select), *moved])
    cond = conjoin(kept)
    select.set("having", exp.Having(this=cond) if cond is not None else None)
    return tree


def filter_into_group(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """Filter on a group key of an aggregated derived table -> filter first, no derived table.

    ``SELECT k, n FROM (SELECT fk AS k, COUNT(*) AS n FROM t GROUP BY fk) WHERE k = 5`` ->
    ``SELECT fk AS k, COUNT(*) AS n FROM t WHERE fk = 5 GROUP BY fk``: keeping the groups whose
    key passes a row-level test is the same as grouping the rows that pass it.
    """
    outer = top_select(tree)
    if outer is None or not is_simple_select(outer) or outer.args.get("joins"):
        return None
    items = from_items(outer)
    if len(items) != 1 or not isinstance(items[0], exp.Subquery):
        return None
    inner = items[0].this
    if not isinstance(inner, exp.Select) or not inner.args.get("group") or has_subquery(inner):
        return None
    if any(inner.args.get(k) for k in ("distinct", "order", "limit", "offset", "with_")):
        return None
    if inner.find(exp.Window) is not None:
        return None
    derived = items[0].alias_or_name.lower()
    outputs: dict[str, exp.Expression] = {}
    for e in inner.expressions:
        if not isinstance(e, (exp.Alias, exp.Column)) or e.alias_or_name.lower() in outputs:
            return None
        outputs[e.alias_or_name.lower()] = e.this if isinstance(e, exp.Alias) else e
    keys = {g.sql() for g in inner.args["group"].expressions if isinstance(g, exp.Column)}

    def target(col: exp.Column) -> exp.Expression | None:
        if col.table and col.table.lower() != derived:
            return None
        return outputs.get(col.name.lower())

    projections = []
    for e in outer.expressions:
        col = e.this if isinstance(e, exp.Alias) else e
        if not isinstance(col, exp.Column) or target(col) is None:
            return None
        expr = target(col).copy()
        name = e.alias_or_name
        same = isinstance(expr, exp.Column) and expr.name == name
        projections.append(expr if same else exp.alias_(expr, name))
    filters = []
    for term in where_terms(outer):
        if has_subquery(term):
            return None
        term = term.copy()
        for col in list(term.find_all(exp.Column)):
            expr = target(col)
            if expr is None or expr.sql() not in keys:
                return None
            col.replace(expr.copy())
        filters.append(term)
    if not filters:
        return None
    new = inner.copy()
    new.set("expressions", projections)
    set_where(new, [*where_terms(new), *filters])
    return new
