"""``c = 1 OR c = 2`` -> ``c IN (1, 2)``."""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.rules.rule_context import Context, column_eq_literal


def or_to_in(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``c = 1 OR c = 2 OR ...`` -> ``c IN (1, 2, ...)`` (equal under three-valued logic)."""
    tree = tree.copy()
    changed = False
    for node in list(tree.find_all(exp.Or)):
        if isinstance(node.parent, exp.Or):
            continue
        terms = _disjuncts(node)
        groups: dict[str, list[int]] = {}
        for i, term in enumerate(terms):
            pair = column_eq_literal(term)
            if pair is not None:
                groups.setdefault(pair[0].sql(), []).append(i)
        merged = {k: v for k, v in groups.items() if len(v) >= 2}
        if not merged:
            continue
        out: list[exp.Expression] = []
        for i, term in enumerate(terms):
            pair = column_eq_literal(term)
            key = pair[0].sql() if pair else None
            if key in merged:
                if merged[key][0] == i:
                    lits = [column_eq_literal(terms[j])[1] for j in merged[key]]
                    out.append(exp.In(this=pair[0], expressions=lits))
                continue
            out.append(term)
        new = out[0]
        for term in out[1:]:
            new = exp.Or(this=new, expression=term)
        node.replace(exp.Paren(this=new) if isinstance(node.parent, exp.And) and len(out) > 1 else new)
        changed = True
    return tree if changed else None


def _disjuncts(expr: exp.Expression) -> list[exp.Expression]:
    expr = expr.unnest()
    if isinstance(expr, exp.Or):
        return _disjuncts(expr.this) + _disjuncts(expr.expression)
    return [expr]
