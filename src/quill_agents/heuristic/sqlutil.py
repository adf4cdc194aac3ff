"""AST helpers shared by the rewrite rules and the index advisor.

Parsing and rendering keep the engine's reading of the query: sqlglot turns a comma join
(``FROM a, b``) into ``CROSS JOIN``, which SQLite never reorders, so :func:`parse` marks comma
joins and :func:`render` writes them back as commas. Scopes resolve a column to the table it
belongs to, using the observation's schema.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from quill_agents.heuristic.catalog import Catalog, TableMeta
from quill_env.dialect import SUITE_DIALECT

AGGREGATES = (exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max)
"""Aggregate calls the rules understand (empty input: COUNT gives 0, the others NULL)."""


def parse(sql: str) -> exp.Expression | None:
    """Parse one SQLite query, marking comma joins as kind-less joins (``None`` if unparsable).

    >>> render(parse("SELECT a FROM t, u WHERE t.x = u.y"))
    'SELECT a FROM t, u WHERE t.x = u.y'
    """
    try:
        tree = sqlglot.parse_one(sql, read=SUITE_DIALECT)
    except (ParseError, TokenError, RecursionError):
        return None
    if not isinstance(tree, exp.Query):
        return None
    for join in tree.find_all(exp.Join):
        if join.kind == "CROSS" and "pivots" not in join.args:
            join.set("kind", None)
    return tree


def render(tree: exp.Expression) -> str:
    """The SQLite text of a (possibly rewritten) query."""
    return tree.sql(SUITE_DIALECT)


def conjuncts(expr: exp.Expression | None) -> list[exp.Expression]:
    """The AND-ed terms of a predicate, without redundant parentheses.

    >>> [c.sql() for c in conjuncts(sqlglot.parse_one("a = 1 AND (b = 2 AND c = 3)"))]
    ['a = 1', 'b = 2', 'c = 3']
    """
    if expr is None:
        return []
    expr = expr.unnest()
    if isinstance(expr, exp.And):
        return [c for part in (expr.this, expr.expression) for c in conjuncts(part)]
    return [expr]


def conjoin(terms: list[exp.Expression]) -> exp.Expression | None:
    """AND the terms together (``None`` for no terms), parenthesizing ORs."""
    out = None
    for term in terms:
        term = exp.Paren(this=term) if isinstance(term, exp.Or) else term
        out = term if out is None else exp.And(this=out, expression=term)
    return out


def set_where(select: exp.Select, terms: list[exp.Expression]) -> None:
    """Replace the WHERE clause of ``select`` with the conjunction of ``terms``."""
    cond = conjoin(terms)
    select.set("where", exp.Where(this=cond) if cond is not None else None)


def from_items(select: exp.Select) -> list[exp.Expression]:
    """The FROM item and every joined item of ``select``, in order."""
    head = select.args.get("from_") or select.args.get("from")
    items = [head.this] if head is not None else []
    return items + [j.this for j in select.args.get("joins") or []]


def is_inner(join: exp.Join) -> bool:
    """Whether a join is an inner (or comma / cross) join without USING or NATURAL."""
    return (
        not join.side
        and (join.kind or "").upper() in ("", "INNER", "CROSS")
        and not join.args.get("using")
        and not join.args.get("method")
    )


def sources(select: exp.Select, catalog: Catalog) -> dict[str, TableMeta | None]:
    """Alias -> table of each FROM item (``None`` for derived tables and unknown tables)."""
    out: dict[str, TableMeta | None] = {}
    for item in from_items(select):
        name = item.alias_or_name.lower()
        out[name] = catalog.table(item.name) if isinstance(item, exp.Table) else None
    return out


def owner(col: exp.Column, srcs: dict[str, TableMeta | None]) -> str | None:
    """The alias of the FROM item ``col`` belongs to, or ``None`` when unsure or outside."""
    if col.table:
        name = col.table.lower()
        return name if name in srcs else None
    if any(t is None for t in srcs.values()):
        return None
    hits = [alias for alias, table in srcs.items() if table is not None and table.column(col.name)]
    return hits[0] if len(hits) == 1 else None


def own_columns(expr: exp.Expression, select: exp.Select) -> Iterator[exp.Column]:
    """Columns inside ``expr`` whose nearest enclosing SELECT is ``select``."""
    for col in expr.find_all(exp.Column):
        if col.find_ancestor(exp.Select) is select:
            yield col


def has_subquery(expr: exp.Expression) -> bool:
    """Whether ``expr`` contains any nested query."""
    return any(True for _ in expr.find_all(exp.Subquery, exp.Exists, exp.Select) if _ is not expr)


def is_simple_select(select: exp.Expression) -> bool:
    """A SELECT without GROUP BY, HAVING, DISTINCT, ORDER BY, LIMIT, OFFSET, windows or CTEs."""
    return (
        isinstance(select, exp.Select)
        and not any(
            select.args.get(k) for k in ("group", "having", "distinct", "order", "limit", "offset", "with_")
        )
        and select.find(exp.Window) is None
    )


def taken_names(tree: exp.Expression) -> set[str]:
    """Every table name and alias used anywhere in ``tree`` (lower-cased)."""
    names = set()
    for table in tree.find_all(exp.Table):
        names.add(table.name.lower())
        names.add(table.alias_or_name.lower())
    for sub in tree.find_all(exp.Subquery):
        if sub.alias:
            names.add(sub.alias.lower())
    return names


def fresh_alias(tree: exp.Expression, base: str, also: set[str] = frozenset()) -> str:
    """An alias starting with ``base`` that ``tree`` does not use yet."""
    taken = taken_names(tree) | set(also)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return name


def int_literal(expr: exp.Expression) -> int | None:
    """The value of an integer literal (with an optional minus sign), else ``None``.

    >>> int_literal(sqlglot.parse_one("-12")), int_literal(sqlglot.parse_one("1.5"))
    (-12, None)
    """
    sign = 1
    if isinstance(expr, exp.Neg):
        sign, expr = -1, expr.this
    if isinstance(expr, exp.Literal) and not expr.is_string and expr.this.isdigit():
        return sign * int(expr.this)
    return None


def number(value: int) -> exp.Expression:
    """An integer literal node (negative values as a unary minus)."""
    lit = exp.Literal.number(abs(value))
    return exp.Neg(this=lit) if value < 0 else lit


def is_literal(expr: exp.Expression) -> bool:
    """A string or number literal (numbers may carry a minus sign)."""
    if isinstance(expr, exp.Neg):
        expr = expr.this
        return isinstance(expr, exp.Literal) and not expr.is_string
    return isinstance(expr, exp.Literal)


def single_table(select: exp.Select, catalog: Catalog) -> tuple[exp.Table, TableMeta] | None:
    """The one base table a SELECT reads (no joins), with its metadata."""
    items = from_items(select)
    if len(items) != 1 or not isinstance(items[0], exp.Table):
        return None
    table = catalog.table(items[0].name)
    return (items[0], table) if table is not None else None


def column_meta(col: exp.Column, select: exp.Select, catalog: Catalog):
    """The schema column that ``col`` (in ``select``'s scope) refers to, or ``None``."""
    srcs = sources(select, catalog)
    alias = owner(col, srcs)
    table = srcs.get(alias) if alias else None
    return (table, table.column(col.name)) if table is not None and table.column(col.name) else None
