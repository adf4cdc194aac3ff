"""``SELECT DISTINCT`` that a unique key already makes distinct: drop DISTINCT."""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.rules.rule_context import Context, top_select
from quill_agents.heuristic.sqlutil import AGGREGATES, single_table


def drop_redundant_distinct(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``SELECT DISTINCT`` over one table that projects a NOT NULL unique key: drop DISTINCT."""
    tree = tree.copy()
    select = top_select(tree)
    if select is None or not isinstance(select.args.get("distinct"), exp.Distinct):
        return None
    if select.args["distinct"].args.get("on") or select.args.get("group") or select.args.get("having"):
        return None
    found = single_table(select, ctx.catalog)
    if found is None or select.find(exp.Window) is not None:
        return None
    if any(e.find(*AGGREGATES) for e in select.expressions):
        return None
    table, meta = found
    name = table.alias_or_name.lower()
    for e in select.expressions:
        col = e.this if isinstance(e, exp.Alias) else e
        own = isinstance(col, exp.Column) and (not col.table or col.table.lower() == name)
        if own and meta.is_unique_key(col.name):
            select.set("distinct", None)
            return tree
    return None
