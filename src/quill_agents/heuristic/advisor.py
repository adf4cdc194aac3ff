"""An index advisor in the spirit of SQLite's ``.expert``: candidate indexes from a query.

For every SELECT scope of the query (subqueries and derived tables included) and every base
table it reads, the advisor collects equality columns (``col = literal``, ``col IN (...)``,
join and correlation equalities), range columns (comparisons, BETWEEN, the argument of MIN /
MAX), ORDER BY and GROUP BY columns, and proposes indexes with the equality columns first, then
one range or the order columns, and a covering variant when the table contributes few columns.
Indexes an existing index already provides are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

from quill_agents.heuristic.catalog import Catalog, TableMeta
from quill_agents.heuristic.sqlutil import conjuncts, is_literal, owner, sources
from quill_env.dialect import SUITE_DIALECT

MAX_COVERING = 4
"""The most columns a covering candidate may have."""


@dataclass(frozen=True)
class IndexCandidate:
    """A proposed index, with why it was proposed."""

    table: str
    columns: tuple[str, ...]
    score: float
    """Higher is more promising (correlated scopes, big tables, scanned tables)."""
    reason: str = ""

    def sql(self) -> str:
        """The ``CREATE INDEX`` statement (name ``idx_<table>_<columns>``)."""
        name = exp.to_identifier("_".join(["idx", self.table, *self.columns]))
        stmt = exp.Create(
            kind="INDEX",
            this=exp.Index(
                this=name,
                table=exp.to_table(self.table),
                params=exp.IndexParameters(columns=[exp.column(c) for c in self.columns]),
            ),
        )
        return stmt.sql(SUITE_DIALECT) + ";"


@dataclass
class _Usage:
    table: TableMeta
    alias: str
    eq: list[str] = field(default_factory=list)
    rng: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    used: list[str] = field(default_factory=list)
    correlated: bool = False


def advise(tree: exp.Expression, catalog: Catalog, plan: str = "") -> list[IndexCandidate]:
    """Candidate indexes for a query, best first, without duplicates.

    Args:
        tree: the parsed query.
        catalog: the schema.
        plan: the engine's plan of the query as given in the observation (tables it scans
            fully get a higher score).
    """
    scanned = _scanned(plan)
    out: dict[tuple[str, tuple[str, ...]], IndexCandidate] = {}
    for select in tree.find_all(exp.Select):
        for usage in _usages(select, catalog):
            for cols, reason in _shapes(usage):
                if not cols or usage.table.has_index_prefix(cols):
                    continue
                score = usage.table.rows * (10 if usage.correlated else 1)
                score *= 2 if usage.alias in scanned or usage.table.name.lower() in scanned else 1
                score *= 1 + 0.1 * len(cols) if reason != "covering" else 1
                key = (usage.table.name.lower(), cols)
                if key not in out or out[key].score < score:
                    out[key] = IndexCandidate(usage.table.name, cols, score, reason)
    return sorted(out.values(), key=lambda c: (-c.score, len(c.columns)))


def _scanned(plan: str) -> set[str]:
    names = set()
    for line in plan.splitlines():
        words = line.strip().split()
        if len(words) >= 2 and words[0] == "SCAN":
            names.add(words[1].lower())
    return names


def _usages(select: exp.Select, catalog: Catalog) -> list[_Usage]:
    srcs = sources(select, catalog)
    usages = {a: _Usage(t, a) for a, t in srcs.items() if t is not None}
    if not usages:
        return []
    parent = select.parent
    derived = isinstance(parent, exp.Subquery) and isinstance(parent.parent, (exp.From, exp.Join))
    correlated = select.find_ancestor(exp.Select) is not None and not derived
    terms = conjuncts(select.args["where"].this) if select.args.get("where") else []
    for join in select.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None and not isinstance(on, exp.Boolean):
            terms += conjuncts(on)

    def mine(col: exp.Expression) -> _Usage | None:
        if not isinstance(col, exp.Column):
            return None
        alias = owner(col, srcs)
        usage = usages.get(alias) if alias else None
        return usage if usage is not None and usage.table.column(col.name) else None

    def add(lst: list[str], col: exp.Column) -> None:
        name = col.name.lower()
        if name not in lst:
            lst.append(name)

    for term in terms:
        if isinstance(term, exp.EQ):
            a, b = term.this, term.expression
            for x, y in ((a, b), (b, a)):
                u = mine(x)
                if u is not None and (is_literal(y) or (isinstance(y, exp.Column) and mine(y) is not u)):
                    add(u.eq, x)
        elif isinstance(term, exp.In) and not term.args.get("query"):
            u = mine(term.this)
            if u is not None and all(is_literal(e) for e in term.expressions):
                add(u.eq, term.this)
        elif isinstance(term, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)):
            u = mine(term.this)
            if u is not None:
                add(u.rng, term.this)
    for agg in select.find_all(exp.Min, exp.Max):
        u = mine(agg.this) if agg.find_ancestor(exp.Select) is select else None
        if u is not None:
            add(u.rng, agg.this)
    for key in ("order", "group"):
        clause = select.args.get(key)
        for e in clause.expressions if clause is not None else []:
            u = mine(e.this if isinstance(e, exp.Ordered) else e)
            if u is not None:
                add(u.group if key == "group" else u.order, e.this if isinstance(e, exp.Ordered) else e)
    for col in select.find_all(exp.Column):
        if col.find_ancestor(exp.Select) is select:
            u = mine(col)
            if u is not None:
                add(u.used, col)
    for u in usages.values():
        u.correlated = correlated
    return list(usages.values())


def _shapes(u: _Usage) -> list[tuple[tuple[str, ...], str]]:
    rowid = u.table.rowid_alias
    eq = [c for c in u.eq if c != rowid]
    order = [c for c in u.order if c not in eq]
    while order and order[-1] == rowid:
        order.pop()
    rng = [c for c in u.rng if c not in eq and c != rowid]
    shapes = []
    if eq:
        shapes.append((tuple(eq + rng[:1]), "equality+range"))
        if order and rowid not in order:
            shapes.append((tuple(eq + order), "equality+order"))
        if len(eq) > 1:
            shapes += [((c,), "equality") for c in eq]
    elif u.group and rowid not in u.group:
        shapes.append((tuple(u.group + [c for c in rng if c not in u.group][:1]), "group"))
    elif rng:
        shapes.append(((rng[0],), "range"))
    if order and rowid not in order and not eq:
        shapes.append((tuple(order), "order"))
    if shapes:
        lead = list(shapes[0][0])
        extra = [c for c in u.used if c not in lead and c != rowid]
        if extra and len(lead) + len(extra) <= MAX_COVERING:
            shapes.append((tuple(lead + extra), "covering"))
    return [(tuple(dict.fromkeys(cols)), why) for cols, why in shapes]


def index_specs(candidates: list[IndexCandidate], limit: int = 3) -> list[IndexCandidate]:
    """The best candidate per table, at most ``limit`` of them (one index per table)."""
    picked: dict[str, IndexCandidate] = {}
    for cand in candidates:
        if cand.table.lower() not in picked and cand.reason != "covering":
            picked[cand.table.lower()] = cand
    return list(picked.values())[:limit]
