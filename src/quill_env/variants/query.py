"""What the original query asks of the data, resolved against the schema.

Variants are built for one query: its filters say which rows it returns, its joins which rows
go together, its aggregates compared with literals where a group's size or sum is decisive.
:class:`QueryModel` reads these off the sqlglot AST:

- a :class:`Node` for every base table read in a SELECT scope (``negative`` when the scope
  only removes rows: under ``NOT``, ``NOT IN``, ``NOT EXISTS`` or on the right of ``EXCEPT``);
- column references resolved to a node's column, through derived tables and CTEs that project
  bare columns, and out of correlated subqueries into the scope they correlate with;
- :class:`Filter` conjuncts that read one node (rewritten to read ``"n<id>"."column"``, so
  they can be evaluated on one candidate row), and :class:`Edge` equalities between two nodes;
- :class:`AggTest` comparisons of an aggregate with a literal (``HAVING COUNT(*) > 3``,
  ``WHERE n > 3`` over a derived ``COUNT(*) AS n``, ``(SELECT SUM(x) ... ) >= 100``), each
  with the :class:`Grouping` that forms its groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from quill_env.dialect import SUITE_DIALECT
from quill_env.variants.schema import Schema

AGGREGATES: dict[type, str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
}
"""sqlglot aggregate classes by SQL name (``total`` is parsed as an anonymous function)."""

COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)

_MAX_DEPTH = 12


@dataclass(eq=False)
class Node:
    """One base table read in one SELECT scope."""

    id: int
    table: str
    """``TableInfo.name``."""
    alias: str
    scope: exp.Select
    negative: bool
    """The scope only removes rows from the answer (``NOT EXISTS``, ``NOT IN``, ``EXCEPT``)."""

    @property
    def label(self) -> str:
        """The alias filters are rewritten to (``n<id>``)."""
        return f"n{self.id}"


@dataclass(frozen=True, eq=False)
class ColumnRef:
    """A column of a node."""

    node: Node
    column: str


@dataclass(frozen=True, eq=False)
class AggRef:
    """A reference that resolves to an aggregate computed in ``scope`` (a derived ``COUNT(*) AS n``)."""

    agg: exp.Expression
    scope: exp.Select


@dataclass(eq=False)
class Filter:
    """A conjunct that reads only ``node``'s columns, rewritten to read ``"n<id>"."col"``."""

    node: Node
    expr: exp.Expression
    columns: frozenset[str]


@dataclass(frozen=True, eq=False)
class Edge:
    """An equality between columns of two nodes (a join, a correlation, an ``IN (subquery)``)."""

    left: ColumnRef
    right: ColumnRef


@dataclass(frozen=True, eq=False)
class AntiEdge:
    """An equality whose match removes an outer row: ``NOT IN (subquery)``, a correlated ``NOT EXISTS``."""

    outer: ColumnRef
    inner: ColumnRef
    null_sensitive: bool
    """A NULL among the inner values removes every outer row (``NOT IN``)."""


@dataclass(eq=False)
class Outlier:
    """``column op (SELECT agg(measure) ... WHERE inner.key = outer.key)``: a row that stands out.

    The row must stand out from the group its subquery aggregates (``total > (SELECT 3 *
    AVG(total) ...)``).
    """

    ref: ColumnRef
    high: bool
    """Whether the column must be above the subquery (``>``, ``>=``)."""
    inner: exp.Select
    measure: ColumnRef | None = None
    correlation: list[tuple[ColumnRef, ColumnRef]] = field(default_factory=list)
    """``(inner column, outer column)`` pairs of the subquery's correlation."""


@dataclass(frozen=True, eq=False)
class Grouping:
    """Rows of ``node`` with equal ``columns`` form one group of an aggregate."""

    node: Node
    columns: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class AggTest:
    """An aggregate compared with a numeric literal."""

    func: str
    """``count``, ``sum``, ``avg``, ``min``, ``max`` or ``total``."""
    distinct: bool
    argument: ColumnRef | None
    """The aggregated column (``None`` for ``COUNT(*)`` or an expression)."""
    counted: Node | None
    """The node whose rows are aggregated."""
    op: type
    literal: int | float
    grouping: Grouping | None


@dataclass(eq=False)
class QueryModel:
    """The filters, joins and aggregates of one query (see the module docstring).

    The model only guides variant building: a query that does not parse, or an AST shape the
    analysis does not know, gives an empty model (the variants are then plain mutated samples).

    Args:
        sql: the query.
        schema: the database's constraints.
        dialect: the sqlglot dialect of ``sql``.
    """

    sql: str
    schema: Schema
    dialect: str = SUITE_DIALECT
    tree: exp.Expression | None = field(default=None, init=False)
    nodes: list[Node] = field(default_factory=list, init=False)
    filters: list[Filter] = field(default_factory=list, init=False)
    edges: list[Edge] = field(default_factory=list, init=False)
    tests: list[AggTest] = field(default_factory=list, init=False)
    groupings: list[Grouping] = field(default_factory=list, init=False)
    measures: list[ColumnRef] = field(default_factory=list, init=False)
    """Columns aggregated by SUM, AVG, MIN, MAX or TOTAL anywhere in the query."""
    keys: list[ColumnRef] = field(default_factory=list, init=False)
    """Columns rows are grouped, partitioned, made distinct or joined by."""
    anti: list[AntiEdge] = field(default_factory=list, init=False)
    outliers: list[Outlier] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        try:
            statements = [s for s in sqlglot.parse(self.sql, read=self.dialect) if s is not None]
        except (sqlglot.errors.SqlglotError, RecursionError, ValueError):
            return
        if len(statements) != 1 or not isinstance(statements[0], exp.Query):
            return
        self.tree = statements[0]
        self._ctes = {c.alias_or_name.lower(): c.this for c in self.tree.find_all(exp.CTE)}
        self._sources: dict[int, dict[str, Node | exp.Expression]] = {}
        self._negative: dict[int, bool] = {}
        try:
            self._analyse()
        except (RecursionError, ValueError, KeyError, AttributeError, TypeError):
            for name in (
                "nodes",
                "filters",
                "edges",
                "tests",
                "groupings",
                "measures",
                "keys",
                "anti",
                "outliers",
            ):
                setattr(self, name, [])

    # --- scopes and sources ----------------------------------------------------------------

    def selects(self) -> Iterator[exp.Select]:
        """Every SELECT scope, outer ones first."""
        if self.tree is not None:
            yield from self.tree.find_all(exp.Select, bfs=True)

    def _analyse(self) -> None:
        for select in self.selects():
            self._negative[id(select)] = self._is_negative(select)
            sources: dict[str, Node | exp.Expression] = {}
            for source in _sources(select):
                alias = source.alias_or_name.lower()
                if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                    name = source.name.lower()
                    if name in self._ctes and not source.args.get("db"):
                        sources[alias] = self._ctes[name]
                    elif name in self.schema.tables:
                        node = Node(len(self.nodes), self.schema.tables[name].name, alias, select,
                                    self._negative[id(select)])  # fmt: skip
                        self.nodes.append(node)
                        sources[alias] = node
                elif isinstance(source, exp.Subquery) and isinstance(source.this, exp.Query):
                    sources[alias] = source.this
            self._sources[id(select)] = sources
        for select in self.selects():
            self._conjuncts_of(select)
        self._finish()
        for select in self.selects():
            self._aggregates_of(select)
            self._keys_of(select)

    def _is_negative(self, select: exp.Select) -> bool:
        child: exp.Expression = select
        parent = select.parent
        while parent is not None:
            if isinstance(parent, exp.Not):
                return True
            if isinstance(parent, exp.Except) and parent.args.get("expression") is child:
                return True
            if isinstance(parent, exp.Select):
                return self._negative.get(id(parent), False)
            child, parent = parent, parent.parent
        return False

    def _scope_of(self, node: exp.Expression) -> exp.Select | None:
        parent = node.parent
        while parent is not None and not isinstance(parent, exp.Select):
            parent = parent.parent
        return parent

    def _outer(self, select: exp.Select) -> Iterator[exp.Select]:
        scope: exp.Select | None = select
        while scope is not None:
            yield scope
            scope = self._scope_of(scope)

    # --- resolution ------------------------------------------------------------------------

    def resolve(
        self, column: exp.Column, scope: exp.Select | None = None, depth: int = 0
    ) -> ColumnRef | AggRef | None:
        """The node column (or derived aggregate) ``column`` reads, ``None`` when unknown."""
        scope = scope or self._scope_of(column)
        if scope is None or depth > _MAX_DEPTH:
            return None
        name, qualifier = column.name, column.table.lower()
        for level, select in enumerate(self._outer(scope)):
            sources = self._sources.get(id(select), {})
            if qualifier:
                if qualifier in sources:
                    return self._through(sources[qualifier], name, depth)
                continue
            exposing = [s for s in sources.values() if self._exposes(s, name, depth)]
            if len(exposing) == 1:
                return self._through(exposing[0], name, depth)
            if len(exposing) > 1:
                return None
            if level == 0:
                aliased = _select_alias(select, name)
                if aliased is not None:
                    return self._expression_ref(aliased, select, depth)
        return None

    def _expression_ref(
        self, expr: exp.Expression, select: exp.Select, depth: int
    ) -> ColumnRef | AggRef | None:
        if isinstance(expr, exp.Column):
            return self.resolve(expr, select, depth + 1)
        if isinstance(expr, (*AGGREGATES, exp.Anonymous)) and _aggregate_name(expr):
            return AggRef(expr, select)
        return None

    def _through(self, source: Node | exp.Expression, name: str, depth: int) -> ColumnRef | AggRef | None:
        if isinstance(source, Node):
            real = self.schema.column(source.table, name)
            return ColumnRef(source, real) if real else None
        select = _first_select(source)
        if select is None:
            return None
        for projection in select.expressions:
            if isinstance(projection, exp.Star):
                inner = exp.Column(this=exp.to_identifier(name))
                return self._resolve_in(select, inner, depth + 1)
            if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                src = self._sources.get(id(select), {}).get(projection.table.lower())
                if src is not None and self._exposes(src, name, depth + 1):
                    return self._through(src, name, depth + 1)
                continue
            if projection.alias_or_name.lower() == name.lower():
                target = projection.this if isinstance(projection, exp.Alias) else projection
                return self._expression_ref(target, select, depth)
        return None

    def _resolve_in(self, select: exp.Select, column: exp.Column, depth: int) -> ColumnRef | AggRef | None:
        sources = self._sources.get(id(select), {})
        exposing = [s for s in sources.values() if self._exposes(s, column.name, depth)]
        return self._through(exposing[0], column.name, depth) if len(exposing) == 1 else None

    def _exposes(self, source: Node | exp.Expression, name: str, depth: int) -> bool:
        if depth > _MAX_DEPTH:
            return False
        if isinstance(source, Node):
            return self.schema.column(source.table, name) is not None
        select = _first_select(source)
        if select is None:
            return False
        for projection in select.expressions:
            if isinstance(projection, exp.Star):
                return any(
                    self._exposes(s, name, depth + 1) for s in self._sources.get(id(select), {}).values()
                )
            if projection.alias_or_name.lower() == name.lower():
                return True
        return False

    # --- conjuncts -------------------------------------------------------------------------

    def _conjuncts_of(self, select: exp.Select) -> None:
        for conjunct in conjuncts(select):
            if _has_subquery(conjunct):
                self._subquery_edge(conjunct, select)
                continue
            refs = self._refs(conjunct, select)
            if refs is None or any(isinstance(r, AggRef) for _, r in refs):
                continue
            nodes = {id(r.node): r.node for _, r in refs if isinstance(r, ColumnRef)}
            if len(nodes) == 1:
                node = next(iter(nodes.values()))
                self.filters.append(
                    Filter(node, _rewrite(conjunct, refs), frozenset(r.column for _, r in refs))
                )
            elif len(nodes) == 2 and isinstance(conjunct, exp.EQ) and len(refs) == 2:
                left, right = (r for _, r in refs)
                sides = (conjunct.left, conjunct.right)
                columns = all(isinstance(s, exp.Column) for s in sides)
                if columns and isinstance(left, ColumnRef) and isinstance(right, ColumnRef):
                    self.edges.append(Edge(left, right))

    def _finish(self) -> None:
        """Anti-edges from correlations into negative scopes; the outliers' measures and keys."""
        for edge in self.edges:
            for outer, inner in ((edge.left, edge.right), (edge.right, edge.left)):
                if inner.node.negative and not outer.node.negative:
                    self.anti.append(AntiEdge(outer, inner, False))
        for outlier in self.outliers:
            for agg in _own(outlier.inner, (*AGGREGATES, exp.Anonymous)):
                column = _argument(agg)
                ref = self.resolve(column, outlier.inner) if column is not None else None
                if isinstance(ref, ColumnRef):
                    outlier.measure = ref
                    break
            for edge in self.edges:
                for inner, outer in ((edge.left, edge.right), (edge.right, edge.left)):
                    if inner.node.scope is outlier.inner and outer.node is outlier.ref.node:
                        outlier.correlation.append((inner, outer))
        self.outliers = [o for o in self.outliers if o.measure is not None and o.correlation]

    def _subquery_edge(self, conjunct: exp.Expression, select: exp.Select) -> None:
        negated = isinstance(conjunct, exp.Not)
        if negated:
            conjunct = conjunct.this
        if isinstance(conjunct, (exp.GT, exp.GTE, exp.LT, exp.LTE)) and not negated:
            self._outlier(conjunct, select)
            return
        if not isinstance(conjunct, exp.In) or not isinstance(conjunct.this, exp.Column):
            return
        query = conjunct.args.get("query")
        inner = _first_select(query.this if isinstance(query, exp.Subquery) else query)
        if inner is None or len(inner.expressions) != 1:
            return
        projected = inner.expressions[0]
        projected = projected.this if isinstance(projected, exp.Alias) else projected
        if not isinstance(projected, exp.Column):
            return
        left, right = self.resolve(conjunct.this, select), self.resolve(projected, inner)
        if not isinstance(left, ColumnRef) or not isinstance(right, ColumnRef):
            return
        if negated and not left.node.negative:
            self.anti.append(AntiEdge(left, right, True))
        elif not right.node.negative:
            self.edges.append(Edge(left, right))

    def _outlier(self, conjunct: exp.Expression, select: exp.Select) -> None:
        for side, other, high in (
            (conjunct.left, conjunct.right, True),
            (conjunct.right, conjunct.left, False),
        ):
            if not isinstance(side, exp.Column):
                continue
            subquery = other if isinstance(other, exp.Subquery) else other.find(exp.Subquery)
            inner = _first_select(subquery.this) if subquery is not None else None
            ref = self.resolve(side, select)
            if inner is not None and isinstance(ref, ColumnRef) and not ref.node.negative:
                up = isinstance(conjunct, (exp.GT, exp.GTE))
                self.outliers.append(Outlier(ref, up if high else not up, inner))

    def _refs(
        self, expr: exp.Expression, select: exp.Select
    ) -> list[tuple[exp.Column, ColumnRef | AggRef]] | None:
        """Every column of ``expr`` resolved, or ``None`` when one is not (double-quoted strings skipped)."""
        out = []
        for column in expr.find_all(exp.Column):
            if isinstance(column.this, exp.Star):
                return None
            ref = self.resolve(column, select)
            if ref is None:
                if is_string_identifier(column):
                    continue
                return None
            out.append((column, ref))
        return out

    # --- aggregates ------------------------------------------------------------------------

    def _aggregates_of(self, select: exp.Select) -> None:
        for agg in _own(select, (*AGGREGATES, exp.Anonymous)):
            name = _aggregate_name(agg)
            if name in ("sum", "avg", "min", "max", "total"):
                column = _argument(agg)
                ref = self.resolve(column, select) if column is not None else None
                if isinstance(ref, ColumnRef):
                    self.measures.append(ref)
        having = select.args.get("having")
        candidates = list(_split(having.this)) if having is not None else []
        candidates += conjuncts(select)
        for conjunct in candidates:
            for agg, op, literal in _literal_comparisons(conjunct):
                self._add_test(agg, op, literal, select)
        grouping = self._grouping(select, None)
        if grouping is not None:
            self.groupings.append(grouping)

    def _add_test(self, side: exp.Expression, op: type, literal: int | float, select: exp.Select) -> None:
        scope = select
        agg: exp.Expression | None = None
        if isinstance(side, (exp.Subquery, exp.Select)):
            inner = _first_select(side.this if isinstance(side, exp.Subquery) else side)
            if inner is None or len(inner.expressions) != 1:
                return
            projected = inner.expressions[0]
            agg, scope = (projected.this if isinstance(projected, exp.Alias) else projected), inner
        elif isinstance(side, exp.Column):
            ref = self.resolve(side, select)
            if isinstance(ref, AggRef):
                agg, scope = ref.agg, ref.scope
        else:
            agg = side
        name = _aggregate_name(agg) if agg is not None else None
        if agg is None or name is None:
            return
        column = _argument(agg)
        ref = self.resolve(column, scope) if column is not None else None
        argument = ref if isinstance(ref, ColumnRef) else None
        counted = argument.node if argument else self._counted(scope)
        self.tests.append(
            AggTest(name, _is_distinct(agg), argument, counted, op, literal, self._grouping(scope, counted))
        )

    def _counted(self, select: exp.Select) -> Node | None:
        """The node whose rows a ``COUNT(*)`` of ``select`` counts: the child of its joins."""
        own = [s for s in self._sources.get(id(select), {}).values() if isinstance(s, Node)]
        if not own:
            return None
        children = {link.child.lower() for link in self.schema.links}
        own.sort(key=lambda n: (n.table.lower() not in children, n.id))
        return own[0]

    def _grouping(self, select: exp.Select, counted: Node | None) -> Grouping | None:
        counted = counted or self._counted(select)
        if counted is None:
            return None
        group = select.args.get("group")
        refs: list[ColumnRef] = []
        if group is not None:
            for expr in group.expressions:
                if isinstance(expr, exp.Column):
                    ref = self.resolve(expr, select)
                    if isinstance(ref, ColumnRef):
                        refs.append(ref)
        else:
            for edge in self.edges:
                for mine, other in ((edge.left, edge.right), (edge.right, edge.left)):
                    if mine.node is counted and other.node.scope is not select:
                        refs.append(mine)
        if not refs:
            return None
        own = [r.column for r in refs if r.node is counted]
        if own:
            return Grouping(counted, tuple(dict.fromkeys(own)))
        for edge in self.edges:
            for mine, other in ((edge.left, edge.right), (edge.right, edge.left)):
                if mine.node is counted and any(other.node is r.node for r in refs):
                    return Grouping(counted, (mine.column,))
        return None

    def _keys_of(self, select: exp.Select) -> None:
        exprs: list[exp.Expression] = []
        group = select.args.get("group")
        if group is not None:
            exprs += group.expressions
        if select.args.get("distinct") is not None:
            exprs += [e.this if isinstance(e, exp.Alias) else e for e in select.expressions]
        for window in _own(select, (exp.Window,)):
            exprs += window.args.get("partition_by") or []
        for expr in exprs:
            if isinstance(expr, exp.Column):
                ref = self.resolve(expr, select)
                if isinstance(ref, ColumnRef):
                    self.keys.append(ref)

    # --- views -----------------------------------------------------------------------------

    def positive_nodes(self) -> list[Node]:
        """Nodes whose rows can be part of the answer."""
        return [n for n in self.nodes if not n.negative]

    def filters_of(self, node: Node) -> list[Filter]:
        """The filters on ``node``."""
        return [f for f in self.filters if f.node is node]

    def edges_of(self, node: Node) -> list[tuple[ColumnRef, ColumnRef]]:
        """``(mine, other)`` for every edge of ``node``."""
        out = []
        for edge in self.edges:
            if edge.left.node is node:
                out.append((edge.left, edge.right))
            if edge.right.node is node:
                out.append((edge.right, edge.left))
        return out

    def join_columns(self) -> list[ColumnRef]:
        """Both sides of every edge."""
        return [ref for edge in self.edges for ref in (edge.left, edge.right)]


def conjuncts(select: exp.Select) -> list[exp.Expression]:
    """The AND-ed terms of ``select``'s WHERE and of its joins' ON conditions."""
    out: list[exp.Expression] = []
    where = select.args.get("where")
    if where is not None:
        out += _split(where.this)
    for join in select.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None:
            out += _split(on)
    return out


def _split(expr: exp.Expression) -> list[exp.Expression]:
    while isinstance(expr, exp.Paren):
        expr = expr.this
    if isinstance(expr, exp.And):
        return _split(expr.left) + _split(expr.right)
    return [expr]


def _sources(select: exp.Select) -> list[exp.Expression]:
    from_ = select.args.get("from_")
    nodes = [from_.this] if from_ is not None else []
    nodes += [j.this for j in select.args.get("joins") or []]
    return nodes


def _first_select(query: exp.Expression | None) -> exp.Select | None:
    while isinstance(query, (exp.Union, exp.Intersect, exp.Except, exp.Subquery)):
        query = query.this
    return query if isinstance(query, exp.Select) else None


def _select_alias(select: exp.Select, name: str) -> exp.Expression | None:
    for projection in select.expressions:
        if isinstance(projection, exp.Alias) and projection.alias.lower() == name.lower():
            return projection.this
    return None


def _own(select: exp.Select, kinds: tuple[type, ...]) -> Iterator[exp.Expression]:
    """Nodes of ``kinds`` in ``select`` itself, not inside its subqueries."""
    for node in select.walk(bfs=True, prune=lambda n: n is not select and isinstance(n, exp.Select)):
        if isinstance(node, kinds) and node is not select:
            yield node


def _has_subquery(expr: exp.Expression) -> bool:
    return any(True for _ in expr.find_all(exp.Select)) or isinstance(expr, exp.Select)


def _aggregate_name(agg: exp.Expression) -> str | None:
    if isinstance(agg, exp.Anonymous):
        return "total" if str(agg.this).lower() == "total" and len(agg.expressions) == 1 else None
    return AGGREGATES.get(type(agg))


def _argument(agg: exp.Expression) -> exp.Column | None:
    inner = agg.expressions[0] if isinstance(agg, exp.Anonymous) and agg.expressions else agg.this
    if isinstance(inner, exp.Distinct):
        inner = inner.expressions[0] if len(inner.expressions) == 1 else None
    return inner if isinstance(inner, exp.Column) and not isinstance(inner.this, exp.Star) else None


def _is_distinct(agg: exp.Expression) -> bool:
    return isinstance(agg.this, exp.Distinct)


_FLIPPED = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
    exp.EQ: exp.EQ,
    exp.NEQ: exp.NEQ,
}


def _literal_comparisons(conjunct: exp.Expression) -> Iterator[tuple[exp.Expression, type, int | float]]:
    """``(side, op, literal)`` for ``side op literal`` comparisons (either way round, BETWEEN too)."""
    if isinstance(conjunct, COMPARISONS):
        for side, other, op in (
            (conjunct.left, conjunct.right, type(conjunct)),
            (conjunct.right, conjunct.left, _FLIPPED[type(conjunct)]),
        ):
            value = number(other)
            if value is not None and number(side) is None:
                yield side, op, value
    elif isinstance(conjunct, exp.Between):
        for bound, op in (("low", exp.GTE), ("high", exp.LTE)):
            value = number(conjunct.args.get(bound))
            if value is not None:
                yield conjunct.this, op, value


def number(node: exp.Expression | None) -> int | float | None:
    """The value of a numeric literal (``-3``, ``2.5``), else ``None``.

    >>> number(sqlglot.parse_one("-3")), number(sqlglot.parse_one("2.50")), number(sqlglot.parse_one("'x'"))
    (-3, 2.5, None)
    """
    negative = isinstance(node, exp.Neg)
    if negative:
        node = node.this
    while isinstance(node, exp.Paren):
        node = node.this
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        value = float(node.this)
    except ValueError:
        return None
    result: int | float = (
        int(value) if value.is_integer() and "." not in node.this and "e" not in node.this.lower() else value
    )
    return -result if negative else result


def is_string_identifier(column: exp.Column) -> bool:
    """Whether ``column`` is a bare double-quoted name (a string literal to SQLite if no column has it)."""
    return (
        not column.table and isinstance(column.this, exp.Identifier) and bool(column.this.args.get("quoted"))
    )


def _rewrite(conjunct: exp.Expression, refs: list[tuple[exp.Column, ColumnRef | AggRef]]) -> exp.Expression:
    """A copy of ``conjunct`` with each resolved column replaced by ``"n<id>"."column"``."""
    mapping = {id(col): ref for col, ref in refs}
    originals = list(conjunct.find_all(exp.Column))
    copy = conjunct.copy()
    for original, clone in zip(originals, list(copy.find_all(exp.Column))):
        ref = mapping.get(id(original))
        if isinstance(ref, ColumnRef):
            replacement = exp.Column(
                this=exp.to_identifier(ref.column, quoted=True),
                table=exp.to_identifier(ref.node.label, quoted=True),
            )
            if clone is copy:
                return replacement
            clone.replace(replacement)
    return copy


__all__ = [
    "AGGREGATES",
    "AggRef",
    "AggTest",
    "AntiEdge",
    "ColumnRef",
    "Edge",
    "Filter",
    "Grouping",
    "Node",
    "Outlier",
    "QueryModel",
    "conjuncts",
    "is_string_identifier",
    "number",
]
