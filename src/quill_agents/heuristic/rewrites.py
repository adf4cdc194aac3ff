"""Query rewrites: small sqlglot AST transforms that are semantics-preserving by construction.

Each rule takes a parsed query and a :class:`Context` and returns a rewritten copy, or ``None``
when it does not apply. A rule fires only when its preconditions make the rewrite equivalent
under SQLite's semantics (three-valued logic, duplicates, empty inputs, type affinity), keeps
ORDER BY, never adds or moves a LIMIT and keeps output column names and order. When in doubt a
rule declines: an index-only action is always safe.

:data:`RULES` are applied in order, repeatedly, to build the agent's preferred rewrite;
:data:`ALTERNATIVES` are other equivalent forms worth measuring (database mode).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from quill_agents.heuristic.schema import Catalog, TableMeta
from quill_agents.heuristic.sqlutil import (
    AGGREGATES,
    conjoin,
    conjuncts,
    fresh_alias,
    from_items,
    has_subquery,
    int_literal,
    is_inner,
    is_literal,
    is_simple_select,
    number,
    owner,
    set_where,
    single_table,
    sources,
)


@dataclass(frozen=True)
class Context:
    """What a rule may know besides the query.

    Args:
        catalog: the schema parsed from the observation.
        output_columns: the columns the application reads, when the observation says so.
    """

    catalog: Catalog
    output_columns: tuple[str, ...] | None = None


Rule = Callable[[exp.Expression, Context], "exp.Expression | None"]


# --- shared analysis -----------------------------------------------------------------------


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


def _top_select(tree: exp.Expression) -> exp.Select | None:
    if isinstance(tree, exp.Select) and not tree.args.get("with_"):
        return tree
    return None


def _where_terms(select: exp.Select) -> list[exp.Expression]:
    where = select.args.get("where")
    return conjuncts(where.this) if where is not None else []


def _qualify_inner(sub: exp.Select, table: exp.Table, meta: TableMeta, alias: str) -> None:
    """Alias the subquery's table as ``alias`` and qualify its own columns with it."""
    old = table.alias_or_name.lower()
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    for col in sub.find_all(exp.Column):
        if (col.table and col.table.lower() == old) or (not col.table and meta.column(col.name)):
            col.set("table", exp.to_identifier(alias))


def _plain_aggregate(expr: exp.Expression) -> exp.Expression | None:
    """``expr`` if it is one COUNT/SUM/AVG/MIN/MAX call with plain arguments."""
    if isinstance(expr, AGGREGATES) and not has_subquery(expr) and expr.find(exp.Window) is None:
        return expr
    return None


# --- rules ---------------------------------------------------------------------------------


def select_star_to_columns(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``SELECT *`` when the application reads only some columns: name those columns.

    The environment compares the original projected onto ``output_columns`` with the rewrite.
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None or not ctx.output_columns or len(select.expressions) != 1:
        return None
    if not isinstance(select.expressions[0], exp.Star) or select.args.get("distinct"):
        return None
    found = single_table(select, ctx.catalog)
    if found is None or not all(found[1].column(c) for c in ctx.output_columns):
        return None
    select.set("expressions", [exp.column(found[1].column(c).name) for c in ctx.output_columns])
    return tree


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
            pair = _column_eq_literal(term)
            if pair is not None:
                groups.setdefault(pair[0].sql(), []).append(i)
        merged = {k: v for k, v in groups.items() if len(v) >= 2}
        if not merged:
            continue
        out: list[exp.Expression] = []
        for i, term in enumerate(terms):
            pair = _column_eq_literal(term)
            key = pair[0].sql() if pair else None
            if key in merged:
                if merged[key][0] == i:
                    lits = [_column_eq_literal(terms[j])[1] for j in merged[key]]
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


def _column_eq_literal(term: exp.Expression) -> tuple[exp.Column, exp.Expression] | None:
    if not isinstance(term, exp.EQ):
        return None
    a, b = term.this, term.expression
    if isinstance(a, exp.Column) and is_literal(b):
        return a, b
    if isinstance(b, exp.Column) and is_literal(a):
        return b, a
    return None


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_YEAR = re.compile(r"^\d{4}$")


def date_function_to_range(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``date(c) = 'YYYY-MM-DD'`` / ``strftime('%Y'|'%Y-%m', c) = ...`` -> a range on ``c``.

    Applies to columns of text (or date-named numeric) affinity holding ISO-8601 text, where a
    day, month or year is exactly a half-open range of the text's sort order. Columns declared
    INTEGER or REAL (Julian days, Unix times) are left alone.
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None or select.args.get("where") is None:
        return None
    changed = False
    for term in list(select.args["where"].find_all(exp.EQ)):
        if term.find_ancestor(exp.Select) is not select:
            continue
        found = _date_call(term.this, term.expression) or _date_call(term.expression, term.this)
        if found is None:
            continue
        col, lo, hi = found
        meta = _column(col, select, ctx)
        if meta is None or not (
            meta.affinity == "TEXT"
            or (meta.affinity == "NUMERIC" and ("DATE" in meta.type or "TIME" in meta.type))
        ):
            continue
        rng = exp.And(
            this=exp.GTE(this=col.copy(), expression=exp.Literal.string(lo)),
            expression=exp.LT(this=col.copy(), expression=exp.Literal.string(hi)),
        )
        parent = term.parent
        term.replace(rng if isinstance(parent, (exp.Where, exp.And)) else exp.Paren(this=rng))
        changed = True
    return _finish(tree, changed)


def _finish(tree: exp.Expression, changed: bool) -> exp.Expression | None:
    return tree if changed else None


def _column(col: exp.Column, select: exp.Select, ctx: Context):
    srcs = sources(select, ctx.catalog)
    alias = owner(col, srcs)
    table = srcs.get(alias) if alias else None
    return table.column(col.name) if table is not None else None


def _date_call(call: exp.Expression, value: exp.Expression) -> tuple[exp.Column, str, str] | None:
    if not (isinstance(value, exp.Literal) and value.is_string):
        return None
    text = value.this
    if isinstance(call, exp.Date) and set(k for k, v in call.args.items() if v) == {"this"}:
        if isinstance(call.this, exp.Column) and _DAY.match(text):
            return call.this, text, _next_day(text)
        return None
    if isinstance(call, exp.TimeToStr) and isinstance(call.this, exp.TsOrDsToTimestamp):
        col, fmt = call.this.this, call.args.get("format")
        extra = {k for k, v in call.args.items() if v} - {"this", "format"}
        if extra or not isinstance(col, exp.Column) or not isinstance(fmt, exp.Literal):
            return None
        if fmt.this == "%Y" and _YEAR.match(text):
            return col, f"{text}-01-01", f"{int(text) + 1:04d}-01-01"
        if fmt.this == "%Y-%m" and _MONTH.match(text) and 1 <= int(text[5:]) <= 12:
            y, m = int(text[:4]), int(text[5:])
            return col, f"{text}-01", f"{y + (m == 12):04d}-{m % 12 + 1:02d}-01"
        if fmt.this == "%Y-%m-%d" and _DAY.match(text):
            return col, text, _next_day(text)
    return None


def _next_day(day: str) -> str:
    try:
        return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    except ValueError:
        return "9999-99-99"  # not a real day: date() never returns it, so nothing matches


def arithmetic_to_range(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``id - k BETWEEN a AND b`` -> ``id BETWEEN a + k AND b + k`` on an INTEGER PRIMARY KEY.

    Only the rowid alias is guaranteed to hold integers (never NULL, never text), so the shift
    is exact there. Comparisons (``id + k > a``) are shifted the same way.
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None or select.args.get("where") is None:
        return None
    changed = False
    srcs = sources(select, ctx.catalog)
    for node in list(select.args["where"].find_all(exp.Between, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ)):
        if node.find_ancestor(exp.Select) is not select:
            continue
        side = node.this
        if not isinstance(side, (exp.Sub, exp.Add)) or not isinstance(side.this, exp.Column):
            continue
        k = int_literal(side.expression)
        col = side.this
        alias = owner(col, srcs)
        table = srcs.get(alias) if alias else None
        if k is None or table is None or table.rowid_alias != col.name.lower():
            continue
        shift = k if isinstance(side, exp.Sub) else -k
        bounds = ("low", "high") if isinstance(node, exp.Between) else ("expression",)
        values = [int_literal(node.args[b]) for b in bounds]
        if any(v is None for v in values):
            continue
        new = node.copy()
        new.set("this", col.copy())
        for b, v in zip(bounds, values):
            new.set(b, number(v + shift))
        node.replace(new)
        changed = True
    return _finish(tree, changed)


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
    return _finish(tree, changed)


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
    select = _top_select(tree)
    if select is None:
        return None
    terms = _where_terms(select)
    changed = False
    for i, term in enumerate(terms):
        if not isinstance(term, (exp.GT, exp.GTE, exp.NEQ)):
            continue
        found = _count_test(term)
        if found is None or not found[1]:
            continue
        sub = found[0].this
        corr = correlate(sub, select, ctx)
        if corr is None or len(corr.pairs) != 1:
            continue
        inner_col, outer_col = corr.pairs[0]
        new_sub = sub.copy()
        new_sub.set("expressions", [inner_col.copy()])
        set_where(new_sub, [t.copy() for t in corr.rest])
        terms[i] = exp.In(this=outer_col.copy(), query=exp.Subquery(this=new_sub))
        changed = True
    if changed:
        set_where(select, terms)
    return _finish(tree, changed)


def not_in_to_not_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``k NOT IN (SELECT c FROM t WHERE f)`` -> ``NOT EXISTS (SELECT 1 FROM t x WHERE x.c = k AND f)``.

    Only when both ``k`` and ``c`` are NOT NULL (a NULL on either side makes NOT IN unknown
    where NOT EXISTS is true) and of the same affinity, and the subquery is uncorrelated.
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None:
        return None
    terms = _where_terms(select)
    changed = False
    srcs = sources(select, ctx.catalog)
    for i, term in enumerate(terms):
        if not (isinstance(term, exp.Not) and isinstance(term.this.unnest(), exp.In)):
            continue
        test = term.this.unnest()
        lhs, query = test.this, test.args.get("query")
        if not isinstance(lhs, exp.Column) or query is None or test.expressions:
            continue
        alias = owner(lhs, srcs)
        outer_table = srcs.get(alias) if alias else None
        if outer_table is None or not outer_table.not_null(lhs.name):
            continue
        built = _semi_join_subquery(query.this, lhs, ctx)
        if built is None:
            continue
        terms[i] = exp.Not(this=exp.Exists(this=built))
        changed = True
    if changed:
        set_where(select, terms)
    return _finish(tree, changed)


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
    set_where(new, [match, *_where_terms(new)])
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


def in_to_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``k IN (SELECT c FROM t WHERE f)`` -> ``EXISTS (SELECT 1 FROM t x WHERE x.c = k AND f)``.

    As a top-level WHERE conjunct only (IN may be NULL where EXISTS is false; WHERE drops both).
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None:
        return None
    terms = _where_terms(select)
    changed = False
    for i, term in enumerate(terms):
        if not isinstance(term, exp.In) or term.args.get("query") is None or term.expressions:
            continue
        if not isinstance(term.this, exp.Column):
            continue
        built = _semi_join_subquery(term.args["query"].this, term.this, ctx, require_not_null=False)
        if built is None:
            continue
        terms[i] = exp.Exists(this=built)
        changed = True
    if changed:
        set_where(select, terms)
    return _finish(tree, changed)


def join_to_exists(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """A DISTINCT query joining a table that contributes no output -> ``EXISTS`` on that table.

    ``SELECT DISTINCT p.a FROM p JOIN c ON c.fk = p.id WHERE f(c)`` -> ``SELECT DISTINCT p.a
    FROM p WHERE EXISTS (SELECT 1 FROM c WHERE c.fk = p.id AND f(c))``. Under DISTINCT a join is
    a semi-join; a forgotten join predicate becomes ``EXISTS (SELECT 1 FROM c)``.
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None or not isinstance(select.args.get("distinct"), exp.Distinct):
        return None
    if (
        select.args["distinct"].args.get("on")
        or has_subquery(select)
        or not is_simple_select(_no_distinct(select))
    ):
        return None
    if _star(select) or any(e.find(*AGGREGATES) for e in select.expressions):
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
        where_terms = _where_terms(select)
        moved = [t for t in where_terms if any(owner(c, srcs) == alias for c in t.find_all(exp.Column))]
        kept = [t for t in where_terms if t not in moved]
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


def _no_distinct(select: exp.Select) -> exp.Select:
    copy = select.copy()
    copy.set("distinct", None)
    return copy


def drop_redundant_distinct(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``SELECT DISTINCT`` over one table that projects a NOT NULL unique key: drop DISTINCT."""
    tree = tree.copy()
    select = _top_select(tree)
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
        values.append(_column_eq_literal(eqs[0])[1].copy())
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
    pair = _column_eq_literal(term)
    return pair[0] if pair is not None and pair[0].sql() == column else None


def _terms(select: exp.Select) -> list[exp.Expression]:
    return _where_terms(select)


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
        keys = [_column_eq_literal(t)[0].sql() for t in terms if _column_eq_literal(t)]
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
        lit = next(_column_eq_literal(t)[1] for t in terms if _filter_on(t, column) is not None)
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


def having_to_where(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """HAVING conjuncts on plain GROUP BY columns (no aggregates) move to WHERE."""
    tree = tree.copy()
    select = _top_select(tree)
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
    set_where(select, [*_where_terms(select), *moved])
    cond = conjoin(kept)
    select.set("having", exp.Having(this=cond) if cond is not None else None)
    return tree


def filter_into_group(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """Filter on a group key of an aggregated derived table -> filter first, no derived table.

    ``SELECT k, n FROM (SELECT fk AS k, COUNT(*) AS n FROM t GROUP BY fk) WHERE k = 5`` ->
    ``SELECT fk AS k, COUNT(*) AS n FROM t WHERE fk = 5 GROUP BY fk``: keeping the groups whose
    key passes a row-level test is the same as grouping the rows that pass it.
    """
    outer = _top_select(tree)
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
    for term in _where_terms(outer):
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
    set_where(new, [*_where_terms(new), *filters])
    return new


def scalar_aggregates_to_join(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """Correlated aggregates in the SELECT list -> one LEFT JOIN to a grouped derived table.

    ``(SELECT COUNT(*) FROM c x WHERE x.fk = p.id) AS n`` becomes ``COALESCE(agg.n, 0) AS n``
    with ``LEFT JOIN (SELECT x.fk, COUNT(*) AS n FROM c x GROUP BY x.fk) agg ON agg.fk = p.id``;
    SUM/AVG/MIN/MAX keep NULL for parents without children. Subqueries with the same table,
    correlation and filters share one derived table. The derived table has one row per key, so
    the LEFT JOIN keeps every parent row exactly once.
    """
    tree = tree.copy()
    select = _top_select(tree)
    if select is None or not is_simple_select(_no_distinct(select)):
        return None
    srcs = sources(select, ctx.catalog)
    if any(t is None for t in srcs.values()) or _star(select):
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


def _star(select: exp.Select) -> bool:
    """Whether the projection has a ``*`` (its width depends on the FROM clause)."""
    return any(
        isinstance(e, exp.Star) or (isinstance(e, exp.Column) and e.is_star) for e in select.expressions
    )


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
    select = _top_select(tree)
    if select is None or select.args.get("limit") or select.args.get("offset") or _star(select):
        return None
    srcs = sources(select, ctx.catalog)
    if any(t is None for t in srcs.values()) or not all(is_inner(j) for j in select.args.get("joins") or []):
        return None
    terms = _where_terms(select)
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
    return _finish(tree, changed)


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


RULES: list[Rule] = [
    select_star_to_columns,
    filter_into_group,
    having_to_where,
    union_to_in,
    or_to_in,
    date_function_to_range,
    arithmetic_to_range,
    count_to_exists,
    not_in_to_not_exists,
    join_to_exists,
    drop_redundant_distinct,
]
"""Rules applied in this order, repeatedly, for the preferred rewrite."""

ALTERNATIVES: list[Rule] = [
    scalar_aggregates_to_join,
    where_aggregate_to_join,
    count_to_in,
    in_to_exists,
    union_to_union_all,
]
"""Other equivalent forms, tried one at a time on the original (measured in database mode).

Decorrelating into a grouped join pays off when the outer query keeps many rows; for a few
outer rows the correlated form with an index on the foreign key is faster, so the offline
guess keeps it."""


def rewrite(
    tree: exp.Expression, ctx: Context, rules: list[Rule] = RULES, rounds: int = 4
) -> tuple[exp.Expression, list[str]]:
    """Apply ``rules`` until none fires (at most ``rounds`` passes).

    Returns:
        The rewritten tree and the names of the rules that fired, in order.
    """
    fired: list[str] = []
    for _ in range(rounds):
        progress = False
        for rule in rules:
            new = rule(tree, ctx)
            if new is not None:
                tree, progress = new, True
                fired.append(rule.__name__)
        if not progress:
            break
    return tree, fired
