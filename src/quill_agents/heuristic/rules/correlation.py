"""Correlated subqueries: split a subquery into its correlation equalities and local filters."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from quill_agents.heuristic.catalog import TableMeta
from quill_agents.heuristic.rules.rule_context import Context
from quill_agents.heuristic.sqlutil import conjuncts, has_subquery, is_simple_select, single_table, sources


@dataclass
class Correlation:
    """A subquery over one base table, split into correlation equalities and local filters."""

    table: exp.Table
    meta: TableMeta
    pairs: list[tuple[exp.Column, exp.Column]]
    """``(inner column, outer column)`` equalities."""
    rest: list[exp.Expression]
    """Conjuncts that reference only the subquery's own table."""


def correlate(sub: exp.Select, outer: exp.Select, ctx: Context) -> Correlation | None:
    """Analyse a subquery of ``outer``; ``None`` unless every column resolves unambiguously.

    Correlation equalities must compare an inner and an outer column of the same affinity (so
    comparing them in a join behaves like the correlated comparison).
    """
    if not is_simple_select(sub) or has_subquery(sub):
        return None
    found = single_table(sub, ctx.catalog)
    if found is None:
        return None
    table, meta = found
    inner = table.alias_or_name.lower()
    outer_srcs = sources(outer, ctx.catalog)

    def side(col: exp.Column) -> str | None:
        if col.table:
            name = col.table.lower()
            if name == inner:
                return "inner" if meta.column(col.name) else None
            src = outer_srcs.get(name)
            return "outer" if src is not None and src.column(col.name) else None
        return "inner" if meta.column(col.name) else None

    if any(side(c) is None for c in sub.find_all(exp.Column)):
        return None
    if any(side(c) == "outer" for e in sub.expressions for c in e.find_all(exp.Column)):
        return None
    pairs, rest = [], []
    for term in conjuncts(sub.args["where"].this if sub.args.get("where") else None):
        sides = {side(c) for c in term.find_all(exp.Column)}
        if "outer" not in sides:
            rest.append(term)
            continue
        if not (
            isinstance(term, exp.EQ)
            and isinstance(term.this, exp.Column)
            and isinstance(term.expression, exp.Column)
        ):
            return None
        a, b = term.this, term.expression
        if side(a) == side(b):
            return None
        inner_col, outer_col = (a, b) if side(a) == "inner" else (b, a)
        outer_meta = outer_srcs[outer_col.table.lower()]
        ic, oc = meta.column(inner_col.name), outer_meta.column(outer_col.name)
        if ic.affinity != oc.affinity:
            return None
        pairs.append((inner_col, outer_col))
    return Correlation(table, meta, pairs, rest) if pairs else None
