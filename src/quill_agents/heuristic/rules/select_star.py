"""``SELECT *`` -> the columns the application reads."""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.rules.rule_context import Context, top_select
from quill_agents.heuristic.sqlutil import single_table


def select_star_to_columns(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``SELECT *`` when the application reads only some columns: name those columns.

    The environment compares the original projected onto ``output_columns`` with the rewrite.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None or not ctx.output_columns or len(select.expressions) != 1:
        return None
    if not isinstance(select.expressions[0], exp.Star) or select.args.get("distinct"):
        return None
    found = single_table(select, ctx.catalog)
    if found is None or not all(found[1].column(c) for c in ctx.output_columns):
        return None
    select.set("expressions", [exp.column(found[1].column(c).name) for c in ctx.output_columns])
    return tree
