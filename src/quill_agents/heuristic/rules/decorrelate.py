"""Decorrelation: correlated aggregate subqueries -> a join to a grouped derived table.

These are :data:`~quill_agents.heuristic.rewrites.ALTERNATIVES`: they pay off when the outer
query keeps many rows, so they are measured rather than preferred.
"""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.catalog import TableMeta
from quill_agents.heuristic.rules.correlation import Correlation, correlate
from quill_agents.heuristic.rules.rule_context import (
    Context,
    finish,
    has_star,
    no_distinct,
    top_select,
    where_terms,
)
from quill_agents.heuristic.sqlutil import (
    AGGREGATES,
    conjoin,
    fresh_alias,
    has_subquery,
    is_inner,
    is_simple_select,
    set_where,
    sources,
)


def scalar_aggregates_to_join(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """Correlated aggregates in the SELECT list -> one LEFT JOIN to a grouped derived table.

    ``(SELECT COUNT(*) FROM c x WHERE x.fk = p.id) AS n`` becomes ``COALESCE(agg.n, 0) AS n``
    with ``LEFT JOIN (SELECT x.fk, COUNT(*) AS n FROM c x GROUP BY x.fk) agg ON agg.fk = p.id``;
    SUM/AVG/MIN/MAX keep NULL for parents without children. Subqueries with the same table,
    correlation and filters share one derived table. The derived table has one row per key, so
    the LEFT JOIN keeps every parent row exactly once.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None or not is_simple_select(no_distinct(select)):
        return None
    srcs = sources(select, ctx.catalog)
    if any(t is None for t in srcs.values()) or has_star(select):
        return None
    groups: dict[tuple, list[tuple[int, exp.Expression, Correlation]]] = {}
    for i, e in enumerate(select.expressions):
        if not (isinstance(e, exp.Alias) and isinstance(e.this, exp.Subquery)):
            if has_subquery(e) or e.find(*AGGREGATES):
                return None
            continue
        sub = e.this.this
        if not isinstance(sub, exp.Select) or len(sub.expressions) != 1:
            return None
        agg = _plain_aggregate(sub.expressions[0])
        corr = correlate(sub, select, ctx)
        if agg is None or corr is None:
            return None
        key = (
            corr.table.sql(),
            tuple((a.sql(), b.sql()) for a, b in corr.pairs),
            tuple(sorted(t.sql() for t in corr.rest)),
        )
        groups.setdefault(key, []).append((i, agg, corr))
    if not groups or _name_clash(
        srcs, [f"k{n}" for n in range(8)] + [f"v{n}" for n in range(len(select.expressions))]
    ):
        return None
    for members in groups.values():
        corr = members[0][2]
        alias = fresh_alias(tree, "agg")
        keys = [exp.alias_(a.copy(), f"k{n}") for n, (a, _) in enumerate(corr.pairs)]
        aggs = [exp.alias_(agg.copy(), f"v{n}") for n, (_, agg, _) in enumerate(members)]
        derived = exp.select(*keys, *aggs).from_(corr.table.copy())
        set_where(derived, [t.copy() for t in corr.rest])
        derived.set("group", exp.Group(expressions=[a.copy() for a, _ in corr.pairs]))
        on = conjoin(
            [
                exp.EQ(this=exp.column(f"k{n}", table=alias), expression=b.copy())
                for n, (_, b) in enumerate(corr.pairs)
            ]
        )
        join = exp.Join(
            this=exp.Subquery(this=derived, alias=exp.TableAlias(this=exp.to_identifier(alias))),
            side="LEFT",
            on=on,
        )
        select.append("joins", join)
        for n, (i, agg, _) in enumerate(members):
            value: exp.Expression = exp.column(f"v{n}", table=alias)
            if isinstance(agg, exp.Count):
                value = exp.Coalesce(this=value, expressions=[exp.Literal.number(0)])
            select.expressions[i].set("this", value)
    return tree


def _plain_aggregate(expr: exp.Expression) -> exp.Expression | None:
    """``expr`` if it is one COUNT/SUM/AVG/MIN/MAX call with plain arguments."""
    if isinstance(expr, AGGREGATES) and not has_subquery(expr) and expr.find(exp.Window) is None:
        return expr
    return None


def _name_clash(srcs: dict[str, TableMeta | None], names: list[str]) -> bool:
    """Whether a new derived table's column names could make an outer column ambiguous."""
    return any(t is None or any(t.column(n) for n in names) for t in srcs.values())


_STRICT = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Paren, exp.Neg, exp.Literal)


def where_aggregate_to_join(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``x > (SELECT 3 * AVG(y) FROM c WHERE c.k = p.k)`` in WHERE -> JOIN a grouped table.

    The compared value is arithmetic over one SUM/AVG/MIN/MAX, so it is NULL exactly when the
    correlated rows are missing; a top-level WHERE conjunct drops those rows, as the inner join
    does. One row per key keeps the outer multiplicity.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None or select.args.get("limit") or select.args.get("offset") or has_star(select):
        return None
    srcs = sources(select, ctx.catalog)
    if any(t is None for t in srcs.values()) or not all(is_inner(j) for j in select.args.get("joins") or []):
        return None
    terms = where_terms(select)
    changed = False
    for i, term in enumerate(terms):
        if not isinstance(term, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ)):
            continue
        sides = [term.this, term.expression]
        subs = [s for s in sides if isinstance(s, exp.Subquery)]
        if len(subs) != 1 or has_subquery(sides[1 - sides.index(subs[0])]):
            continue
        sub = subs[0].this
        if not isinstance(sub, exp.Select) or len(sub.expressions) != 1:
            continue
        value = sub.expressions[0]
        aggs = list(value.find_all(*AGGREGATES))
        if len(aggs) != 1 or isinstance(aggs[0], exp.Count) or not _strict_around(value, aggs[0]):
            continue
        corr = correlate(sub, select, ctx)
        if corr is None or _name_clash(srcs, ["v"] + [f"k{n}" for n in range(len(corr.pairs))]):
            continue
        alias = fresh_alias(tree, "agg")
        keys = [exp.alias_(a.copy(), f"k{n}") for n, (a, _) in enumerate(corr.pairs)]
        derived = exp.select(*keys, exp.alias_(value.copy(), "v")).from_(corr.table.copy())
        set_where(derived, [t.copy() for t in corr.rest])
        derived.set("group", exp.Group(expressions=[a.copy() for a, _ in corr.pairs]))
        on = conjoin(
            [
                exp.EQ(this=exp.column(f"k{n}", table=alias), expression=b.copy())
                for n, (_, b) in enumerate(corr.pairs)
            ]
        )
        select.append(
            "joins",
            exp.Join(
                this=exp.Subquery(this=derived, alias=exp.TableAlias(this=exp.to_identifier(alias))), on=on
            ),
        )
        new = term.copy()
        new.set("this" if sides[0] is subs[0] else "expression", exp.column("v", table=alias))
        terms[i] = new
        changed = True
        break
    if changed:
        set_where(select, terms)
    return finish(tree, changed)


def _strict_around(value: exp.Expression, agg: exp.Expression) -> bool:
    """Whether ``value`` is arithmetic on literals and ``agg`` (NULL whenever ``agg`` is)."""
    for node in value.walk():
        if _inside(node, agg):
            continue
        if not isinstance(node, _STRICT):
            return False
    return True


def _inside(node: exp.Expression, agg: exp.Expression) -> bool:
    while node is not None:
        if node is agg:
            return True
        node = node.parent
    return False
