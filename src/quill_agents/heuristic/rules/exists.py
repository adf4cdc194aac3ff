"""Existence tests: ``COUNT(*) > 0`` -> EXISTS or IN, (NOT) IN -> (NOT) EXISTS, DISTINCT join -> EXISTS."""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.catalog import TableMeta
from quill_agents.heuristic.rules.correlation import correlate
from quill_agents.heuristic.rules.rule_context import (
    Context,
    finish,
    has_star,
    no_distinct,
    replace_where_terms,
    top_select,
    where_terms,
)
from quill_agents.heuristic.sqlutil import (
    AGGREGATES,
    conjuncts,
    fresh_alias,
    from_items,
    has_subquery,
    int_literal,
    is_inner,
    is_simple_select,
    owner,
    set_where,
    single_table,
    sources,
)


def count_to_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``(SELECT COUNT(*) ...) > 0`` -> ``EXISTS (SELECT 1 ...)`` (``= 0`` -> ``NOT EXISTS``).

    A COUNT(*) without GROUP BY returns exactly one non-NULL row, so the two agree everywhere.
    """
    tree = tree.copy()
    changed = False
    for node in list(tree.find_all(exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ, exp.NEQ)):
        found = _count_test(node)
        if found is None:
            continue
        sub, positive = found
        inner = sub.this.copy()
        inner.set("expressions", [exp.Literal.number(1)])
        test = exp.Exists(this=inner)
        node.replace(test if positive else exp.Not(this=test))
        changed = True
    return finish(tree, changed)


def _count_test(node: exp.Expression) -> tuple[exp.Subquery, bool] | None:
    """``(subquery, True)`` for ``COUNT(*) > 0``-like tests, ``False`` for ``= 0``-like ones."""
    a, b = node.this, node.expression
    flipped = False
    if isinstance(b, exp.Subquery) and not isinstance(a, exp.Subquery):
        a, b, flipped = b, a, True
    if not isinstance(a, exp.Subquery) or int_literal(b) not in (0, 1):
        return None
    sub = a.this
    if not is_simple_select(sub) or len(sub.expressions) != 1:
        return None
    count = sub.expressions[0]
    if not (isinstance(count, exp.Count) and isinstance(count.this, exp.Star)):
        return None
    op = type(node)
    if flipped:
        op = {exp.GT: exp.LT, exp.LT: exp.GT, exp.GTE: exp.LTE, exp.LTE: exp.GTE}.get(op, op)
    n = int_literal(b)
    table = {
        (exp.GT, 0): True, (exp.GTE, 1): True, (exp.NEQ, 0): True,
        (exp.EQ, 0): False, (exp.LT, 1): False, (exp.LTE, 0): False,
    }  # fmt: skip
    positive = table.get((op, n))
    return None if positive is None else (a, positive)


def count_to_in(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``(SELECT COUNT(*) FROM c x WHERE x.fk = p.k AND f) > 0`` -> ``p.k IN (SELECT x.fk ...)``.

    Only as a top-level WHERE conjunct (where NULL and false both drop the row) and with one
    correlation equality between columns of the same affinity.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None:
        return None

    def replace(term: exp.Expression) -> exp.Expression | None:
        if not isinstance(term, (exp.GT, exp.GTE, exp.NEQ)):
            return None
        found = _count_test(term)
        if found is None or not found[1]:
            return None
        sub = found[0].this
        corr = correlate(sub, select, ctx)
        if corr is None or len(corr.pairs) != 1:
            return None
        inner_col, outer_col = corr.pairs[0]
        new_sub = sub.copy()
        new_sub.set("expressions", [inner_col.copy()])
        set_where(new_sub, [t.copy() for t in corr.rest])
        return exp.In(this=outer_col.copy(), query=exp.Subquery(this=new_sub))

    return replace_where_terms(tree, select, replace)


def not_in_to_not_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``k NOT IN (SELECT c FROM t WHERE f)`` -> ``NOT EXISTS (SELECT 1 FROM t x WHERE x.c = k AND f)``.

    Only when both ``k`` and ``c`` are NOT NULL (a NULL on either side makes NOT IN unknown
    where NOT EXISTS is true) and of the same affinity, and the subquery is uncorrelated.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None:
        return None
    srcs = sources(select, ctx.catalog)

    def replace(term: exp.Expression) -> exp.Expression | None:
        if not (isinstance(term, exp.Not) and isinstance(term.this.unnest(), exp.In)):
            return None
        test = term.this.unnest()
        lhs, query = test.this, test.args.get("query")
        if not isinstance(lhs, exp.Column) or query is None or test.expressions:
            return None
        alias = owner(lhs, srcs)
        outer_table = srcs.get(alias) if alias else None
        if outer_table is None or not outer_table.not_null(lhs.name):
            return None
        built = _semi_join_subquery(query.this, lhs, ctx)
        return None if built is None else exp.Not(this=exp.Exists(this=built))

    return replace_where_terms(tree, select, replace)


def _semi_join_subquery(
    sub: exp.Expression, lhs: exp.Column, ctx: Context, *, require_not_null: bool = True
) -> exp.Select | None:
    """``SELECT 1 FROM t x WHERE x.c = lhs AND f`` from ``SELECT c FROM t WHERE f`` (uncorrelated)."""
    if not isinstance(sub, exp.Select) or not is_simple_select(sub) or has_subquery(sub):
        return None
    if len(sub.expressions) != 1 or not isinstance(sub.expressions[0], exp.Column):
        return None
    found = single_table(sub, ctx.catalog)
    if found is None:
        return None
    table, meta = found
    name = table.alias_or_name.lower()
    for col in sub.find_all(exp.Column):
        if (col.table and col.table.lower() != name) or not meta.column(col.name):
            return None
    target = sub.expressions[0]
    inner = meta.column(target.name)
    found_lhs = _lhs_meta(lhs, ctx, sub)
    if found_lhs is None or inner.affinity != found_lhs[1].affinity:
        return None
    if require_not_null and not meta.not_null(target.name):
        return None
    new = sub.copy()
    new_table = from_items(new)[0]
    alias = fresh_alias(lhs.find_ancestor(exp.Select).root(), "x")
    _qualify_inner(new, new_table, meta, alias)
    outer_ref = exp.column(lhs.name, table=found_lhs[0])  # qualified: the subquery must not capture it
    match = exp.EQ(this=exp.column(target.name, table=alias), expression=outer_ref)
    new.set("expressions", [exp.Literal.number(1)])
    set_where(new, [match, *where_terms(new)])
    return new


def _lhs_meta(lhs: exp.Column, ctx: Context, sub: exp.Select):
    """``(outer alias, column)`` of the left-hand side of ``lhs IN (sub)``, or ``None``."""
    outer = sub.find_ancestor(exp.Select)
    if outer is None:
        return None
    srcs = sources(outer, ctx.catalog)
    alias = owner(lhs, srcs)
    table = srcs.get(alias) if alias else None
    column = table.column(lhs.name) if table is not None else None
    return (alias, column) if column is not None else None


def _qualify_inner(sub: exp.Select, table: exp.Table, meta: TableMeta, alias: str) -> None:
    """Alias the subquery's table as ``alias`` and qualify its own columns with it."""
    old = table.alias_or_name.lower()
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    for col in sub.find_all(exp.Column):
        if (col.table and col.table.lower() == old) or (not col.table and meta.column(col.name)):
            col.set("table", exp.to_identifier(alias))


def in_to_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``k IN (SELECT c FROM t WHERE f)`` -> ``EXISTS (SELECT 1 FROM t x WHERE x.c = k AND f)``.

    As a top-level WHERE conjunct only (IN may be NULL where EXISTS is false; WHERE drops both).
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None:
        return None

    def replace(term: exp.Expression) -> exp.Expression | None:
        if not isinstance(term, exp.In) or term.args.get("query") is None or term.expressions:
            return None
        if not isinstance(term.this, exp.Column):
            return None
        built = _semi_join_subquery(term.args["query"].this, term.this, ctx, require_not_null=False)
        return None if built is None else exp.Exists(this=built)

    return replace_where_terms(tree, select, replace)


def join_to_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """A DISTINCT query joining a table that contributes no output -> ``EXISTS`` on that table.

    ``SELECT DISTINCT p.a FROM p JOIN c ON c.fk = p.id WHERE f(c)`` -> ``SELECT DISTINCT p.a
    FROM p WHERE EXISTS (SELECT 1 FROM c WHERE c.fk = p.id AND f(c))``. Under DISTINCT a join is
    a semi-join; a forgotten join predicate becomes ``EXISTS (SELECT 1 FROM c)``.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None or not isinstance(select.args.get("distinct"), exp.Distinct):
        return None
    if (
        select.args["distinct"].args.get("on")
        or has_subquery(select)
        or not is_simple_select(no_distinct(select))
    ):
        return None
    if has_star(select) or any(e.find(*AGGREGATES) for e in select.expressions):
        return None
    joins = select.args.get("joins") or []
    if not joins or not all(is_inner(j) for j in joins):
        return None
    srcs = sources(select, ctx.catalog)
    if any(t is None for t in srcs.values()):
        return None
    for col in select.find_all(exp.Column):
        if owner(col, srcs) is None:
            return None
    for j in reversed(range(len(joins))):
        join = joins[j]
        if not isinstance(join.this, exp.Table):
            continue
        alias = join.this.alias_or_name.lower()
        on = join.args.get("on")
        on_terms = [] if on is None or isinstance(on, exp.Boolean) else conjuncts(on)
        terms = where_terms(select)
        moved = [t for t in terms if any(owner(c, srcs) == alias for c in t.find_all(exp.Column))]
        kept = [t for t in terms if t not in moved]
        uses = [c for c in select.find_all(exp.Column) if owner(c, srcs) == alias]
        allowed = {id(c) for t in on_terms + moved for c in t.find_all(exp.Column)}
        if any(id(c) not in allowed for c in uses):
            continue
        for t in on_terms + moved:
            for c in t.find_all(exp.Column):
                if not c.table:
                    c.set("table", exp.to_identifier(owner(c, srcs)))
        inner = exp.select(exp.Literal.number(1)).from_(join.this.copy())
        set_where(inner, [t.copy() for t in on_terms + moved])
        new_joins = [x for k, x in enumerate(joins) if k != j]
        select.set("joins", new_joins or None)
        set_where(select, [*kept, exp.Exists(this=inner)])
        return tree
    return None
