"""The "junior developer" slow-query generator: one family per optimization pattern.

Each family writes a slow query the way people write them (varied projections, filters, joins,
literal values drawn from the data) together with its reference optimization (a rewritten query
and/or indexes), from a suite's metadata: the generator spec says what each column holds
(serial key, foreign key, categorical, date, money, free text ...) and the built database says
which constraints and indexes exist and which values occur. Nothing here decides whether a task
is kept: :mod:`quill_env.authoring.taskgen` validates every candidate with the environment itself.

Task text is data written like a person would write it; every literal goes through sqlglot's
``exp.convert`` so values are always correctly quoted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends import open_backend
from quill_env.dialect import SUITE_DIALECT
from quill_env.errors import EngineError
from quill_env.tasks import Suite

NUMERIC = ("int", "float")
TEMPORAL = ("date", "timestamp")


@dataclass
class Col:
    """What the generator knows about one column."""

    table: str
    name: str
    kind: str
    nullable: bool
    unique: bool
    indexed: bool
    ref: tuple[str, str] | None = None


@dataclass
class Tbl:
    """What the generator knows about one table."""

    name: str
    pk: str | None
    """The primary key column, else the engine's row identity (``None`` if it has none)."""
    cols: dict[str, Col]
    rows: dict[str, int]
    children: list[tuple[str, str]] = field(default_factory=list)
    """``(child table, fk column)`` pairs referencing this table's key."""

    def of_kind(self, *kinds: str, indexed: bool | None = None, nullable: bool | None = None) -> list[Col]:
        """Columns of the given kinds, optionally filtered on being indexed / nullable."""
        return [
            c
            for c in self.cols.values()
            if c.kind in kinds
            and (indexed is None or c.indexed == indexed)
            and (nullable is None or c.nullable == nullable)
            and c.name != self.pk
        ]


def lit(value: object) -> str:
    """A SQL literal for ``value``.

    >>> lit("O'Hara"), lit(3), lit(2.5)
    ("'O''Hara'", '3', '2.5')
    """
    return exp.convert(value).sql(SUITE_DIALECT)


class SchemaInfo:
    """A suite's schema for the generator: tables, columns, relations and data samples."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.small = open_backend(suite.database("small"))
        self.medium = open_backend(suite.database("medium"))
        with open_backend(suite.database("variant")) as variant:
            infos = variant.tables()
            row_id = variant.row_id
        self.tables: dict[str, Tbl] = {}
        for tname, tspec in suite.generator["tables"].items():
            info = infos[tname.lower()]
            indexed_first = {i.columns[0] for i in info.indexes if i.columns}
            uniques = {c for s in info.unique_sets if len(s) == 1 for c in s}
            pk = info.primary_key[0] if info.primary_key else row_id
            cols = {}
            for c in info.columns:
                spec = tspec["columns"].get(c.name, {})
                ref = None
                if spec.get("kind") == "fk":
                    rt, _, rc = str(spec["ref"]).partition(".")
                    ref = (rt, rc or "id")
                cols[c.name] = Col(
                    table=tname,
                    name=c.name,
                    kind=str(spec.get("kind", "text")),
                    nullable=not c.notnull and c.name != pk,
                    unique=c.name in uniques or c.name == pk,
                    indexed=c.name in indexed_first or c.name == pk,
                    ref=ref,
                )
            self.tables[tname] = Tbl(tname, pk, cols, dict(tspec["rows"]))
        for t in self.tables.values():
            for c in t.cols.values():
                if c.ref and c.ref[0] in self.tables and c.ref[1] == self.tables[c.ref[0]].pk:
                    self.tables[c.ref[0]].children.append((t.name, c.name))
        self._values: dict[tuple[str, str], tuple[list, np.ndarray]] = {}

    def values(self, col: Col) -> tuple[list, np.ndarray]:
        """Distinct non-NULL values of a column in the small database, with their counts."""
        key = (col.table, col.name)
        if key not in self._values:
            c = sqlbuild.column(col.name)
            q = (
                exp.select(c, exp.Count(this=exp.Star()))
                .from_(sqlbuild.table(col.table))
                .where(exp.Not(this=exp.Is(this=c.copy(), expression=exp.Null())))
                .group_by(c.copy())
            )
            rows = self.small.query(q.sql(self.small.dialect))
            self._values[key] = ([r[0] for r in rows], np.array([r[1] for r in rows], dtype=float))
        return self._values[key]

    def pick_value(self, rng: np.random.Generator, col: Col, rare: float | None = None) -> object | None:
        """A value that occurs in the column; ``rare`` in [0, 1] biases toward rare (0) or common (1)."""
        vals, counts = self.values(col)
        if not vals:
            return None
        if rare is None:
            return vals[int(rng.integers(len(vals)))]
        order = np.argsort(counts, kind="stable")
        pos = int(np.clip(rare + rng.normal(0, 0.1), 0, 1) * (len(vals) - 1))
        return vals[int(order[pos])]

    def count_medium(self, sql: str) -> int:
        """Run a COUNT query on the medium database (selectivity estimates)."""
        rows = self.medium.query(sql)
        return int(rows[0][0] or 0) if rows else 0

    def close(self) -> None:
        """Close the sample connections."""
        self.small.close()
        self.medium.close()


@dataclass(frozen=True)
class Candidate:
    """A generated slow query with its reference optimization."""

    family: str
    schema: str
    query: str
    reference: str
    patterns: tuple[str, ...]
    output_columns: tuple[str, ...] | None = None


Family = Callable[[SchemaInfo, np.random.Generator], "Candidate | None"]


# --- helpers -------------------------------------------------------------------------------


def _choice(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))] if items else None


def _alias(name: str, taken: set[str] = frozenset()) -> str:
    base = "".join(w[0] for w in name.split("_"))[:2] or name[0]
    alias, n = base, 2
    while alias in taken:
        alias, n = f"{base}{n}", n + 1
    return alias


def _projection(
    rng: np.random.Generator, t: Tbl, alias: str | None = None, k: tuple[int, int] = (2, 4)
) -> list[str]:
    cols = [c for c in t.cols if c != t.pk]
    n = int(rng.integers(k[0], k[1] + 1))
    picked = [cols[i] for i in sorted(rng.choice(len(cols), size=min(n, len(cols)), replace=False))]
    if rng.random() < 0.6:
        picked.insert(0, t.pk)
    return [f"{alias}.{c}" if alias else c for c in picked]


def _index(t: str, cols: Sequence[str]) -> str:
    return f"CREATE INDEX idx_{t}_{'_'.join(cols)} ON {t}({', '.join(cols)});"


def _filterable(t: Tbl) -> list[Col]:
    return t.of_kind("choice", "fk", "int", "text", "date", "bool", indexed=False)


def _day_after(value: str) -> str:
    day = dt.date.fromisoformat(value[:10])
    return (day + dt.timedelta(days=1)).isoformat()


def _relations(s: SchemaInfo) -> list[tuple[Tbl, Tbl, str]]:
    """``(parent, child, fk column)`` for every foreign key to a primary key."""
    return [(p, s.tables[c], fk) for p in s.tables.values() for c, fk in p.children]


def _outer_filter(
    s: SchemaInfo, rng: np.random.Generator, parent: Tbl, budget_rows: int
) -> tuple[str, int] | None:
    """A filter on the parent that keeps at most ``budget_rows`` rows at the medium scale."""
    for _ in range(6):
        col = _choice(rng, parent.of_kind("choice", "date", "bool", "int", "text") or [])
        if col is None:
            return None
        if col.kind == "date":
            lo = s.pick_value(rng, col)
            cond = f"{{a}}.{col.name} >= {lit(lo)}"
        else:
            value = s.pick_value(rng, col, rare=float(rng.random()))
            cond = f"{{a}}.{col.name} = {lit(value)}"
        q = f"SELECT COUNT(*) FROM {parent.name} x WHERE {cond.format(a='x')}"
        n = s.count_medium(q)
        if 0 < n <= budget_rows:
            return cond, n
    return None


def _cost_budget(s: SchemaInfo, child: Tbl, pair_budget: float = 8e6) -> int:
    return max(1, int(pair_budget / max(child.rows.get("medium", 1), 1)))


# --- families ------------------------------------------------------------------------------


def index_eq(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Equality filter on a column without an index (single-column or foreign-key index)."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000])
    col = _choice(rng, _filterable(t) if t else [])
    if col is None:
        return None
    value = s.pick_value(rng, col, rare=float(rng.random()))
    if value is None:
        return None
    shape = rng.random()
    if shape < 0.5:
        select = ", ".join(_projection(rng, t))
    elif shape < 0.7:
        select = "*"
    else:
        money = _choice(rng, [c.name for c in t.of_kind("float")])
        select = f"COUNT(*), SUM({money})" if money else "COUNT(*)"
    where = f"{col.name} = {lit(value)}"
    order = f" ORDER BY {t.pk}" if shape < 0.5 and rng.random() < 0.4 else ""
    query = f"SELECT {select} FROM {t.name} WHERE {where}{order}"
    patterns = ("index_fk",) if col.kind == "fk" else ("index_single",)
    return Candidate("index_eq", s.suite.name, query, f"{_index(t.name, [col.name])}\n{query}", patterns)


def index_range(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """A range filter on a date, timestamp or number without an index."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000])
    col = _choice(rng, t.of_kind("date", "timestamp", "float", "int", indexed=False) if t else [])
    if col is None:
        return None
    vals, _ = s.values(col)
    if len(vals) < 10:
        return None
    svals = sorted(vals)
    width = float(rng.choice([0.002, 0.01, 0.03, 0.1, 0.25]))
    start = float(rng.random()) * (1 - width)
    lo, hi = svals[int(start * (len(svals) - 1))], svals[int((start + width) * (len(svals) - 1))]
    if lo == hi:
        return None
    if col.kind == "timestamp":
        lo, hi = str(lo)[:10], str(hi)[:10]
        if lo == hi:
            return None
    form = rng.random()
    where = (
        f"{col.name} BETWEEN {lit(lo)} AND {lit(hi)}"
        if form < 0.4
        else f"{col.name} >= {lit(lo)} AND {col.name} < {lit(hi)}"
    )
    select = ", ".join(_projection(rng, t)) if rng.random() < 0.7 else "COUNT(*)"
    query = f"SELECT {select} FROM {t.name} WHERE {where}"
    return Candidate(
        "index_range", s.suite.name, query, f"{_index(t.name, [col.name])}\n{query}", ("index_single",)
    )


def index_composite(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Equality on one column plus a range on another: a composite index."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000])
    if t is None:
        return None
    a = _choice(rng, t.of_kind("choice", "fk", "bool", indexed=False))
    b = _choice(
        rng, [c for c in t.of_kind("date", "timestamp", "float", "int") if a is None or c.name != a.name]
    )
    if a is None or b is None:
        return None
    va = s.pick_value(rng, a, rare=float(rng.random()))
    vals, _ = s.values(b)
    if va is None or len(vals) < 10:
        return None
    svals = sorted(vals)
    width = float(rng.choice([0.05, 0.2, 0.5]))
    start = float(rng.random()) * (1 - width)
    lo, hi = svals[int(start * (len(svals) - 1))], svals[int((start + width) * (len(svals) - 1))]
    if b.kind == "timestamp":
        lo, hi = str(lo)[:10], str(hi)[:10]
    if lo == hi:
        return None
    sort = rng.random() < 0.5
    proj = _projection(rng, t)
    order = f" ORDER BY {b.name}, {t.pk}" if sort else ""
    query = f"SELECT {', '.join(proj)} FROM {t.name} WHERE {a.name} = {lit(va)} AND {b.name} >= {lit(lo)} AND {b.name} < {lit(hi)}{order}"
    return Candidate(
        "index_composite",
        s.suite.name,
        query,
        f"{_index(t.name, [a.name, b.name])}\n{query}",
        ("index_composite",),
    )


def fk_join(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Parent looked up by a selective column, children joined through an unindexed foreign key."""
    rels = [(p, c, fk) for p, c, fk in _relations(s) if not c.cols[fk].indexed and c.rows["medium"] >= 2000]
    rel = _choice(rng, rels)
    if rel is None:
        return None
    p, c, fk = rel
    key = (
        _choice(rng, [col for col in p.cols.values() if col.unique and col.name != p.pk and col.indexed])
        or p.cols[p.pk]
    )
    value = s.pick_value(rng, key)
    if value is None:
        return None
    pa, ca = _alias(p.name), _alias(c.name, {_alias(p.name)})
    proj = _projection(rng, p, pa, (1, 2)) + _projection(rng, c, ca, (1, 3))
    query = f"SELECT {', '.join(dict.fromkeys(proj))} FROM {c.name} {ca} JOIN {p.name} {pa} ON {pa}.{p.pk} = {ca}.{fk} WHERE {pa}.{key.name} = {lit(value)}"
    return Candidate("fk_join", s.suite.name, query, f"{_index(c.name, [fk])}\n{query}", ("index_fk",))


def _correlated_parts(s: SchemaInfo, rng: np.random.Generator):
    rel = _choice(
        rng, [r for r in _relations(s) if not r[1].cols[r[2]].indexed and r[1].rows["medium"] >= 2000]
    )
    if rel is None:
        return None
    p, c, fk = rel
    flt = _outer_filter(s, rng, p, _cost_budget(s, c))
    if flt is None:
        return None
    return p, c, fk, flt[0]


def correlated_count(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """A correlated COUNT per parent row, rewritten as LEFT JOIN + GROUP BY with COALESCE."""
    parts = _correlated_parts(s, rng)
    if parts is None:
        return None
    p, c, fk, cond = parts
    pa = _alias(p.name)
    extra_col = _choice(rng, c.of_kind("choice"))
    extra, extra_plain = "", ""
    if extra_col is not None and rng.random() < 0.5:
        v = s.pick_value(rng, extra_col, rare=0.8)
        extra, extra_plain = f" AND x.{extra_col.name} = {lit(v)}", f" WHERE {extra_col.name} = {lit(v)}"
    proj = _projection(rng, p, pa, (1, 2))
    name = f"n_{c.name}"
    where = cond.format(a=pa)
    query = f"SELECT {', '.join(proj)}, (SELECT COUNT(*) FROM {c.name} x WHERE x.{fk} = {pa}.{p.pk}{extra}) AS {name} FROM {p.name} {pa} WHERE {where}"
    ref = (
        f"SELECT {', '.join(proj)}, COALESCE(agg.n, 0) AS {name} FROM {p.name} {pa} "
        f"LEFT JOIN (SELECT {fk}, COUNT(*) AS n FROM {c.name}{extra_plain} GROUP BY {fk}) agg ON agg.{fk} = {pa}.{p.pk} WHERE {where}"
    )
    return Candidate(
        "correlated_count", s.suite.name, query, ref, ("correlated_subquery", "subquery_to_join")
    )


def correlated_agg_index(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """A correlated SUM/MAX/AVG per parent row, fixed by an index on the foreign key."""
    parts = _correlated_parts(s, rng)
    if parts is None:
        return None
    p, c, fk, cond = parts
    target = _choice(rng, c.of_kind("float", "int", "date", "timestamp"))
    if target is None:
        return None
    fn = _choice(rng, ["MAX", "MIN"] if target.kind in TEMPORAL else ["SUM", "MAX", "AVG", "MIN"])
    pa = _alias(p.name)
    proj = _projection(rng, p, pa, (1, 3))
    query = f"SELECT {', '.join(proj)}, (SELECT {fn}(x.{target.name}) FROM {c.name} x WHERE x.{fk} = {pa}.{p.pk}) AS {fn.lower()}_{target.name} FROM {p.name} {pa} WHERE {cond.format(a=pa)}"
    cols = [fk, target.name] if rng.random() < 0.5 else [fk]
    return Candidate(
        "correlated_agg_index",
        s.suite.name,
        query,
        f"{_index(c.name, cols)}\n{query}",
        ("index_fk", "correlated_subquery"),
    )


def repeated_subquery(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Two or three correlated aggregates over the same child rows, rewritten as one join."""
    parts = _correlated_parts(s, rng)
    if parts is None:
        return None
    p, c, fk, cond = parts
    nums = c.of_kind("float", "int", "date", "timestamp")
    if not nums:
        return None
    pa = _alias(p.name)
    aggs = [("COUNT", "*")] + [
        (_choice(rng, ["MAX", "MIN"] if n.kind in TEMPORAL else ["SUM", "MAX", "AVG"]), n.name)
        for n in nums[:2]
    ]
    aggs = aggs[: int(rng.integers(2, len(aggs) + 1))]
    subs, outs, inner = [], [], []
    for i, (fn, col) in enumerate(aggs):
        arg = "*" if col == "*" else f"x.{col}"
        alias = f"{fn.lower()}_{'rows' if col == '*' else col}"
        subs.append(f"(SELECT {fn}({arg}) FROM {c.name} x WHERE x.{fk} = {pa}.{p.pk}) AS {alias}")
        inner.append(f"{fn}({'*' if col == '*' else col}) AS a{i}")
        outs.append(f"COALESCE(agg.a{i}, 0) AS {alias}" if fn == "COUNT" else f"agg.a{i} AS {alias}")
    proj = _projection(rng, p, pa, (1, 2))
    where = cond.format(a=pa)
    query = f"SELECT {', '.join(proj)}, {', '.join(subs)} FROM {p.name} {pa} WHERE {where}"
    ref = f"SELECT {', '.join(proj)}, {', '.join(outs)} FROM {p.name} {pa} LEFT JOIN (SELECT {fk}, {', '.join(inner)} FROM {c.name} GROUP BY {fk}) agg ON agg.{fk} = {pa}.{p.pk} WHERE {where}"
    return Candidate(
        "repeated_subquery", s.suite.name, query, ref, ("repeated_subquery", "correlated_subquery")
    )


def count_exists(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """``(SELECT COUNT(*) ...) > 0`` instead of a semi-join."""
    parts = _correlated_parts(s, rng)
    if parts is None:
        return None
    p, c, fk, cond = parts
    pa = _alias(p.name)
    proj = _projection(rng, p, pa, (1, 3))
    where = cond.format(a=pa)
    query = f"SELECT {', '.join(proj)} FROM {p.name} {pa} WHERE {where} AND (SELECT COUNT(*) FROM {c.name} x WHERE x.{fk} = {pa}.{p.pk}) > 0"
    ref = f"SELECT {', '.join(proj)} FROM {p.name} {pa} WHERE {where} AND {pa}.{p.pk} IN (SELECT {fk} FROM {c.name})"
    return Candidate(
        "count_exists", s.suite.name, query, ref, ("count_exists", "correlated_subquery", "subquery_to_join")
    )


def or_chain(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """An OR chain of equalities on one column: IN plus an index."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000])
    col = _choice(rng, t.of_kind("fk", "choice", "int", "text", indexed=False) if t else [])
    if col is None:
        return None
    vals, _ = s.values(col)
    if len(vals) < 4:
        return None
    k = int(rng.integers(3, min(7, len(vals)) + 1))
    picked = [vals[i] for i in rng.choice(len(vals), size=k, replace=False)]
    proj = ", ".join(_projection(rng, t))
    query = f"SELECT {proj} FROM {t.name} WHERE " + " OR ".join(f"{col.name} = {lit(v)}" for v in picked)
    ref = f"{_index(t.name, [col.name])}\nSELECT {proj} FROM {t.name} WHERE {col.name} IN ({', '.join(lit(v) for v in picked)})"
    return Candidate("or_chain", s.suite.name, query, ref, ("or_to_in", "index_single"))


def select_star(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """``SELECT *`` when the application reads two columns: named columns and a covering index."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000 and len(t.cols) >= 5])
    if t is None:
        return None
    col = _choice(rng, t.of_kind("date", "timestamp", "choice", "fk", indexed=False))
    if col is None:
        return None
    if col.kind in TEMPORAL:
        vals = sorted(s.values(col)[0])
        if not vals:
            return None
        cut = vals[int((1 - float(rng.choice([0.01, 0.05, 0.2]))) * (len(vals) - 1))]
        where = f"{col.name} >= {lit(str(cut)[:10])}"
    else:
        where = f"{col.name} = {lit(s.pick_value(rng, col, rare=float(rng.random())))}"
    others = [c for c in t.cols if c not in (col.name, t.pk)]
    wanted = [t.pk, others[int(rng.integers(len(others)))]]
    query = f"SELECT * FROM {t.name} WHERE {where}"
    ref = f"{_index(t.name, [col.name, wanted[1]])}\nSELECT {', '.join(wanted)} FROM {t.name} WHERE {where}"
    return Candidate(
        "select_star", s.suite.name, query, ref, ("select_star", "index_composite"), tuple(wanted)
    )


def nonsargable_date(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """A date function on an indexed-to-be column instead of a range."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000])
    col = _choice(rng, t.of_kind("date", "timestamp", indexed=False) if t else [])
    if col is None:
        return None
    value = s.pick_value(rng, col)
    if value is None:
        return None
    day = str(value)[:10]
    form = rng.random()
    if form < 0.4:
        cond, lo, hi = f"date({col.name}) = {lit(day)}", day, _day_after(day)
    elif form < 0.7:
        month = day[:7]
        y, m = int(month[:4]), int(month[5:7])
        nxt = f"{y + (m == 12):04d}-{m % 12 + 1:02d}"
        cond, lo, hi = f"strftime('%Y-%m', {col.name}) = {lit(month)}", f"{month}-01", f"{nxt}-01"
    else:
        year = day[:4]
        cond, lo, hi = f"strftime('%Y', {col.name}) = {lit(year)}", f"{year}-01-01", f"{int(year) + 1}-01-01"
    select = ", ".join(_projection(rng, t)) if rng.random() < 0.6 else "COUNT(*)"
    query = f"SELECT {select} FROM {t.name} WHERE {cond}"
    ref = f"{_index(t.name, [col.name])}\nSELECT {select} FROM {t.name} WHERE {col.name} >= {lit(lo)} AND {col.name} < {lit(hi)}"
    return Candidate("nonsargable_date", s.suite.name, query, ref, ("nonsargable", "index_single"))


def nonsargable_arith(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Arithmetic on the primary key hides the key range from the planner."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["small"] >= 500 and t.pk != "rowid"])
    if t is None:
        return None
    k = int(rng.integers(1, t.rows["small"] - 100))
    w = int(rng.integers(5, 100))
    proj = ", ".join(_projection(rng, t))
    query = f"SELECT {proj} FROM {t.name} WHERE {t.pk} - {k} BETWEEN 0 AND {w}"
    ref = f"SELECT {proj} FROM {t.name} WHERE {t.pk} BETWEEN {k} AND {k + w}"
    return Candidate("nonsargable_arith", s.suite.name, query, ref, ("nonsargable",))


def distinct_join(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """DISTINCT undoing the duplication of a join: a semi-join with an index."""
    parts = _correlated_parts(s, rng)
    if parts is None:
        return None
    p, c, fk, cond = parts
    cat = _choice(rng, c.of_kind("choice", "bool"))
    if cat is None:
        return None
    v = s.pick_value(rng, cat, rare=float(rng.random()))
    pa, ca = _alias(p.name), _alias(c.name, {_alias(p.name)})
    proj = [f"{pa}.{p.pk}", *_projection(rng, p, pa, (1, 2))]
    proj = list(dict.fromkeys(proj))
    where = cond.format(a=pa)
    query = f"SELECT DISTINCT {', '.join(proj)} FROM {p.name} {pa} JOIN {c.name} {ca} ON {ca}.{fk} = {pa}.{p.pk} WHERE {where} AND {ca}.{cat.name} = {lit(v)}"
    ref = f"{_index(c.name, [fk, cat.name])}\nSELECT {', '.join(proj)} FROM {p.name} {pa} WHERE {where} AND EXISTS (SELECT 1 FROM {c.name} {ca} WHERE {ca}.{fk} = {pa}.{p.pk} AND {ca}.{cat.name} = {lit(v)})"
    return Candidate("distinct_join", s.suite.name, query, ref, ("distinct_join", "index_composite"))


def union_all(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """UNION of disjoint branches (the key is projected) where one scan with IN does."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000 and t.pk != "rowid"])
    col = _choice(rng, t.of_kind("choice") if t else [])
    if col is None:
        return None
    vals, _ = s.values(col)
    if len(vals) < 3:
        return None
    k = int(rng.integers(2, min(4, len(vals)) + 1))
    picked = [vals[i] for i in rng.choice(len(vals), size=k, replace=False)]
    proj = list(dict.fromkeys([t.pk, *_projection(rng, t, None, (1, 3))]))
    branches = [f"SELECT {', '.join(proj)} FROM {t.name} WHERE {col.name} = {lit(v)}" for v in picked]
    query = " UNION ".join(branches)
    ref = f"SELECT {', '.join(proj)} FROM {t.name} WHERE {col.name} IN ({', '.join(lit(v) for v in picked)})"
    return Candidate("union_all", s.suite.name, query, ref, ("union_all",))


def latest_per_group(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Latest row per group through a correlated MAX: an index on (group, time)."""
    rel = _choice(
        rng, [r for r in _relations(s) if r[1].of_kind("date", "timestamp") and r[1].rows["medium"] >= 2000]
    )
    if rel is None:
        return None
    _, c, fk = rel
    ts = _choice(rng, c.of_kind("date", "timestamp", nullable=False)) or _choice(
        rng, c.of_kind("date", "timestamp")
    )
    cat = _choice(rng, c.of_kind("choice"))
    if ts is None or cat is None:
        return None
    v = s.pick_value(rng, cat, rare=0.15)
    n = s.count_medium(f"SELECT COUNT(*) FROM {c.name} WHERE {cat.name} = {lit(v)}")
    if n == 0 or n * c.rows["medium"] > 3e7:
        return None
    ca = _alias(c.name)
    proj = list(dict.fromkeys([f"{ca}.{c.pk}", f"{ca}.{fk}", *_projection(rng, c, ca, (1, 2))]))
    query = f"SELECT {', '.join(proj)} FROM {c.name} {ca} WHERE {ca}.{cat.name} = {lit(v)} AND {ca}.{ts.name} = (SELECT MAX(x.{ts.name}) FROM {c.name} x WHERE x.{fk} = {ca}.{fk})"
    return Candidate(
        "latest_per_group",
        s.suite.name,
        query,
        f"{_index(c.name, [fk, ts.name])}\n{query}",
        ("latest_per_group", "index_composite"),
    )


def order_limit(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """ORDER BY ... LIMIT without a supporting index (a full sort for a few rows)."""
    t = _choice(rng, [t for t in s.tables.values() if t.rows["medium"] >= 2000 and t.pk != "rowid"])
    col = _choice(rng, t.of_kind("date", "timestamp", "float", nullable=False, indexed=False) if t else [])
    if col is None:
        return None
    desc = " DESC" if rng.random() < 0.7 else ""
    k = int(rng.choice([5, 10, 20, 50]))
    proj = ", ".join(_projection(rng, t))
    query = f"SELECT {proj} FROM {t.name} ORDER BY {col.name}{desc}, {t.pk}{desc} LIMIT {k}"
    return Candidate(
        "order_limit",
        s.suite.name,
        query,
        f"{_index(t.name, [col.name])}\n{query}",
        ("order_limit", "index_single"),
    )


def not_in(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """NOT IN over a NOT NULL foreign key: NOT EXISTS with a composite index."""
    rels = [r for r in _relations(s) if not r[1].cols[r[2]].nullable]
    rel = _choice(rng, rels)
    if rel is None:
        return None
    p, c, fk = rel
    cat = _choice(rng, c.of_kind("choice"))
    flt = _outer_filter(s, rng, p, 5000)
    if cat is None or flt is None:
        return None
    v = s.pick_value(rng, cat, rare=float(rng.random()))
    pa = _alias(p.name)
    proj = list(dict.fromkeys([f"{pa}.{p.pk}", *_projection(rng, p, pa, (1, 2))]))
    where = flt[0].format(a=pa)
    query = f"SELECT {', '.join(proj)} FROM {p.name} {pa} WHERE {where} AND {pa}.{p.pk} NOT IN (SELECT {fk} FROM {c.name} WHERE {cat.name} = {lit(v)})"
    ref = f"{_index(c.name, [fk, cat.name])}\nSELECT {', '.join(proj)} FROM {p.name} {pa} WHERE {where} AND NOT EXISTS (SELECT 1 FROM {c.name} x WHERE x.{fk} = {pa}.{p.pk} AND x.{cat.name} = {lit(v)})"
    return Candidate("not_in", s.suite.name, query, ref, ("not_in", "index_composite"))


def cartesian(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """A forgotten join predicate hidden by DISTINCT."""
    rel = _choice(rng, _relations(s))
    if rel is None:
        return None
    p, c, _ = rel
    flt = _outer_filter(s, rng, p, max(1, int(4e6 / max(c.rows["medium"], 1))))
    if flt is None:
        return None
    pa, ca = _alias(p.name), _alias(c.name, {_alias(p.name)})
    proj = _projection(rng, p, pa, (1, 2))
    where = flt[0].format(a=pa)
    query = f"SELECT DISTINCT {', '.join(proj)} FROM {p.name} {pa}, {c.name} {ca} WHERE {where}"
    ref = f"SELECT DISTINCT {', '.join(proj)} FROM {p.name} {pa} WHERE {where} AND EXISTS (SELECT 1 FROM {c.name})"
    return Candidate("cartesian", s.suite.name, query, ref, ("cartesian_product", "missing_where"))


def missing_where(s: SchemaInfo, rng: np.random.Generator) -> Candidate | None:
    """Aggregate every group, then keep one: filter first, with an index."""
    rel = _choice(
        rng, [r for r in _relations(s) if not r[1].cols[r[2]].indexed and r[1].rows["medium"] >= 2000]
    )
    if rel is None:
        return None
    _, c, fk = rel
    v = s.pick_value(rng, c.cols[fk], rare=float(rng.random()))
    num = _choice(rng, c.of_kind("float", "int"))
    if v is None or num is None:
        return None
    query = f"SELECT k, n, total FROM (SELECT {fk} AS k, COUNT(*) AS n, SUM({num.name}) AS total FROM {c.name} GROUP BY {fk}) WHERE k = {lit(v)}"
    ref = f"{_index(c.name, [fk, num.name])}\nSELECT {fk} AS k, COUNT(*) AS n, SUM({num.name}) AS total FROM {c.name} WHERE {fk} = {lit(v)} GROUP BY {fk}"
    return Candidate("missing_where", s.suite.name, query, ref, ("missing_where", "index_fk"))


FAMILIES: dict[str, Family] = {
    f.__name__: f
    for f in (
        index_eq, index_range, index_composite, fk_join, correlated_count, correlated_agg_index,
        repeated_subquery, count_exists, or_chain, select_star, nonsargable_date, nonsargable_arith,
        distinct_join, union_all, latest_per_group, order_limit, not_in, cartesian, missing_where,
    )
}  # fmt: skip
"""Every family by name."""


def generate(s: SchemaInfo, rng: np.random.Generator, family: str | None = None) -> Candidate | None:
    """One candidate from ``family`` (or a random family); ``None`` when the draw does not fit."""
    fn = FAMILIES[family] if family else FAMILIES[_choice(rng, list(FAMILIES))]
    try:
        return fn(s, rng)
    except (EngineError, ValueError, IndexError, KeyError):
        return None
