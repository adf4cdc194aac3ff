"""Adversarial variant databases for test-suite verification (DESIGN §3).

A rewrite is correct only if it matches the original on the main database *and* on K small
variants of the same schema. Variants start from a sample of a source database (the user's own
database, or a suite generator's tiny tier) and are then mutated adversarially while respecting
the declared constraints (NOT NULL, PRIMARY KEY, UNIQUE, foreign keys) and each column's observed
value domain: NULLs where NULL is allowed, duplicated child rows, parents without children,
empty tables, values equal to the query's literals and their neighbours, and many ties.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import apsw
import numpy as np
import sqlglot
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import TableInfo
from quill_env.backends.sqlite import SQLiteBackend

Data = dict[str, list[dict[str, object]]]
"""Table name -> rows as column dicts."""


@dataclass(frozen=True)
class Variant:
    """One variant database: its mutation recipe and serialized image."""

    name: str
    image: bytes


def _topological(tables: dict[str, TableInfo]) -> list[TableInfo]:
    done: list[TableInfo] = []
    seen: set[str] = set()

    def visit(key: str, stack: tuple[str, ...] = ()) -> None:
        if key in seen or key in stack or key not in tables:
            return
        for fk in tables[key].foreign_keys:
            visit(fk.ref_table.lower(), (*stack, key))
        seen.add(key)
        done.append(tables[key])

    for key in tables:
        visit(key)
    return [t for t in done if not t.is_view]


def query_literals(
    sql: str, tables: dict[str, TableInfo], dialect: str = "sqlite"
) -> dict[tuple[str, str], list[object]]:
    """Literals the query compares columns with, by ``(table, column)``.

    >>> from quill_env import sqlbuild
    from quill_env.backends.base import TableInfo, ColumnInfo
    >>> t = TableInfo("orders", (ColumnInfo("total", "REAL", False, 0),), (), (), 0, "")
    >>> query_literals("SELECT * FROM orders o WHERE o.total >= 100", {"orders": t})
    {('orders', 'total'): [100]}
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return {}
    aliases = {t.alias_or_name.lower(): t.name.lower() for t in tree.find_all(exp.Table)}
    found: dict[tuple[str, str], list[object]] = {}

    def owners(col: exp.Column) -> list[str]:
        if col.table:
            name = aliases.get(col.table.lower(), col.table.lower())
            return [name] if name in tables else []
        return [k for k, t in tables.items() if col.name.lower() in (c.lower() for c in t.column_names)]

    def literal_value(node: exp.Expression) -> object:
        neg = isinstance(node, exp.Neg)
        node = node.this if neg else node
        if not isinstance(node, exp.Literal):
            return None
        if node.is_string:
            return node.this
        try:
            num = float(node.this)
        except ValueError:
            return None
        num = int(num) if num.is_integer() and "." not in node.this else num
        return -num if neg else num

    def add(col: exp.Expression, lit: exp.Expression) -> None:
        if not isinstance(col, exp.Column):
            return
        value = literal_value(lit)
        if value is None:
            return
        for table in owners(col):
            real = next((c for c in tables[table].column_names if c.lower() == col.name.lower()), None)
            if real is not None:
                bucket = found.setdefault((tables[table].name, real), [])
                if value not in bucket:
                    bucket.append(value)

    for node in tree.find_all(exp.Binary):
        if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like)):
            add(node.left, node.right)
            add(node.right, node.left)
    for node in tree.find_all(exp.Between):
        add(node.this, node.args["low"])
        add(node.this, node.args["high"])
    for node in tree.find_all(exp.In):
        for item in node.expressions:
            add(node.this, item)
    return found


def _drop_dangling(conn: apsw.Connection) -> None:
    """Delete rows whose foreign key lost its parent (a parent row refused by a CHECK, say)."""
    for _ in range(16):
        bad = list(conn.execute("PRAGMA foreign_key_check"))
        if not bad:
            return
        for table, rowid, *_ in bad:
            stmt = exp.delete(sqlbuild.table(table), where=exp.column("rowid").eq(exp.Placeholder()))
            conn.execute(stmt.sql("sqlite"), (rowid,))


def _neighbours(value: object) -> list[object]:
    """The value itself and its immediate neighbours in its own domain (dates stay dates)."""
    if isinstance(value, bool):
        return [value]
    if isinstance(value, int):
        return [value, value - 1, value + 1]
    if isinstance(value, float):
        return [value, value - 0.01, value + 0.01]
    if isinstance(value, str):
        for fmt, step in (("%Y-%m-%d", dt.timedelta(days=1)), ("%Y-%m-%d %H:%M:%S", dt.timedelta(seconds=1))):
            try:
                parsed = dt.datetime.strptime(value, fmt)
            except ValueError:
                continue
            return [value, (parsed - step).strftime(fmt), (parsed + step).strftime(fmt)]
        return [value]
    return [value]


class VariantBuilder:
    """Derive adversarial variants from a source database.

    Args:
        source: the database to sample from (never modified).
        rows_per_table: the most rows sampled per table.
        seed: makes the variants deterministic.
    """

    MUTATIONS: tuple[str, ...] = (
        "sample", "nulls", "duplicates", "childless", "boundary", "ties", "empty", "combined",
    )  # fmt: skip

    def __init__(self, source: SQLiteBackend, *, rows_per_table: int = 40, seed: int = 0) -> None:
        self.source = source
        self.rows_per_table = rows_per_table
        self.seed = seed
        self.tables = {k: v for k, v in source.tables().items() if not v.is_view}
        self.order = _topological(self.tables)

    # --- sampling --------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Data:
        """Sample rows children first, then every parent they reference plus random others.

        Foreign keys hold by construction and joins stay populated (a uniform sample of parents
        would leave most children of a skewed fan-out without their parent).
        """
        conn = self.source.connection
        data: Data = {}
        required: dict[str, dict[str, set]] = {}
        for info in reversed(self.order):
            table = sqlbuild.table(info.name)
            names = info.column_names
            select = exp.select(*[sqlbuild.column(c) for c in names]).from_(table)
            rows: dict[tuple, dict[str, object]] = {}

            def fetch(where: exp.Expression, rows=rows, select=select, names=names) -> None:
                for r in conn.execute(select.where(where).sql("sqlite")):
                    rows.setdefault(r, dict(zip(names, r)))

            for col, keys in required.get(info.name.lower(), {}).items():
                ordered = sorted(keys, key=repr)
                for start in range(0, len(ordered), 500):
                    fetch(sqlbuild.column(col).isin(*[exp.convert(k) for k in ordered[start : start + 500]]))
            rowids = [r[0] for r in conn.execute(exp.select("rowid").from_(table).sql("sqlite"))]
            n = min(self.rows_per_table, len(rowids))
            if n:
                chosen = sorted(rowids[i] for i in rng.choice(len(rowids), size=n, replace=False))
                for start in range(0, len(chosen), 500):
                    fetch(exp.column("rowid").isin(*chosen[start : start + 500]))
            data[info.name] = list(rows.values())
            for fk in info.foreign_keys:
                parent = self.tables.get(fk.ref_table.lower())
                if parent is None or len(fk.columns) != 1:
                    continue
                ref = (fk.ref_columns or parent.primary_key or ("rowid",))[0]
                bucket = required.setdefault(parent.name.lower(), {}).setdefault(ref, set())
                bucket.update(r[fk.columns[0]] for r in data[info.name] if r[fk.columns[0]] is not None)
        return {info.name: data[info.name] for info in self.order}

    # --- mutations -------------------------------------------------------------------------

    def _nullable(self, info: TableInfo) -> list[str]:
        return [c.name for c in info.columns if not c.notnull and not c.pk]

    def _unique_columns(self, info: TableInfo) -> set[str]:
        return {c for s in info.unique_sets for c in s}

    def _fk_columns(self, info: TableInfo) -> set[str]:
        return {c for f in info.foreign_keys for c in f.columns}

    def _fresh_key(self, info: TableInfo, rows: list[dict[str, object]]) -> Callable[[dict], dict]:
        """A function that gives a copy of a row fresh values in its unique columns."""
        counter = {"n": 0}
        maxima: dict[str, int] = {}
        for col in self._unique_columns(info):
            ints = [r[col] for r in rows if isinstance(r.get(col), int)]
            maxima[col] = max(ints, default=0)

        def fresh(row: dict) -> dict:
            counter["n"] += 1
            new = dict(row)
            for col in self._unique_columns(info):
                value = row.get(col)
                if isinstance(value, int) or value is None:
                    maxima[col] += 1
                    new[col] = maxima[col]
                elif isinstance(value, str):
                    new[col] = f"{value}~{counter['n']}"
                elif isinstance(value, float):
                    new[col] = value + counter["n"] * 1e-3
            return new

        return fresh

    def nulls(self, data: Data, rng: np.random.Generator) -> None:
        """NULLs in 30% of every nullable column (join keys and filters included), at least one each."""
        for info in self.order:
            cols = self._nullable(info)
            rows = data[info.name]
            for row in rows:
                for col in cols:
                    if rng.random() < 0.3:
                        row[col] = None
            if rows:
                for col in cols:
                    rows[int(rng.integers(len(rows)))][col] = None

    def duplicates(self, data: Data, rng: np.random.Generator) -> None:
        """Duplicate rows (with fresh keys): duplicated children, repeated non-unique values."""
        for info in self.order:
            rows = data[info.name]
            fresh = self._fresh_key(info, rows)
            picks = [r for r in rows if rng.random() < 0.35]
            rows += [fresh(r) for r in picks for _ in range(int(rng.integers(1, 3)))]

    def childless(self, data: Data, rng: np.random.Generator) -> None:
        """Parents without children: new parent rows nothing references, and emptied leaf tables."""
        referenced = {f.ref_table.lower() for t in self.order for f in t.foreign_keys}
        for info in self.order:
            rows = data[info.name]
            if info.name.lower() in referenced and rows:
                fresh = self._fresh_key(info, rows)
                rows += [fresh(rows[int(rng.integers(len(rows)))]) for _ in range(max(2, len(rows) // 4))]
        leaves = [t for t in self.order if t.name.lower() not in referenced and t.foreign_keys]
        if leaves:
            data[leaves[int(rng.integers(len(leaves)))].name].clear()

    def boundary(
        self, data: Data, rng: np.random.Generator, literals: dict[tuple[str, str], list[object]]
    ) -> None:
        """Values equal to the query's literals, and their neighbours, in the compared columns."""
        for (table, col), values in literals.items():
            info = self.tables[table.lower()]
            if col in self._unique_columns(info) or col in self._fk_columns(info):
                continue
            pool = [v for value in values for v in _neighbours(value)]
            for row in data[info.name]:
                if rng.random() < 0.5:
                    row[col] = pool[int(rng.integers(len(pool)))]

    def ties(self, data: Data, rng: np.random.Generator) -> None:
        """Few distinct values in every non-unique, non-key column: ties and group collisions."""
        for info in self.order:
            rows = data[info.name]
            skip = self._unique_columns(info) | self._fk_columns(info)
            for col in info.column_names:
                if col in skip or not rows:
                    continue
                observed = [r[col] for r in rows if r[col] is not None]
                if not observed:
                    continue
                few = [
                    observed[int(i)]
                    for i in rng.choice(len(observed), size=min(2, len(observed)), replace=False)
                ]
                for row in rows:
                    if row[col] is not None and rng.random() < 0.7:
                        row[col] = few[int(rng.integers(len(few)))]

    def enforce_foreign_keys(self, data: Data) -> None:
        """Make every foreign key hold: dangling values become NULL, or the row goes when NOT NULL."""
        for info in self.order:
            for fk in info.foreign_keys:
                parent = self.tables.get(fk.ref_table.lower())
                if parent is None or parent.name not in data:
                    continue
                ref_cols = fk.ref_columns or parent.primary_key
                if len(ref_cols) != len(fk.columns):
                    continue
                keys = {tuple(r.get(c) for c in ref_cols) for r in data[parent.name]}
                notnull = {c.name for c in info.columns if c.notnull}
                kept = []
                for row in data[info.name]:
                    value = tuple(row.get(c) for c in fk.columns)
                    if None in value or value in keys:
                        kept.append(row)
                    elif not notnull & set(fk.columns):
                        for c in fk.columns:
                            row[c] = None
                        kept.append(row)
                data[info.name][:] = kept

    # --- assembly --------------------------------------------------------------------------

    def build(self, sql: str | None = None, k: int | None = None) -> list[Variant]:
        """Build ``k`` variants (default: one per mutation), aware of the query's literals."""
        literals = query_literals(sql, self.tables) if sql else {}
        names = self.MUTATIONS[: k or len(self.MUTATIONS)]
        out = []
        for i, name in enumerate(names):
            rng = np.random.default_rng([self.seed, i])
            data = self.sample(rng)
            steps: Sequence[str] = {"combined": ("duplicates", "nulls", "boundary", "ties")}.get(
                name, (name,)
            )
            for step in steps:
                if step == "boundary":
                    self.boundary(data, rng, literals)
                elif step == "empty":
                    for rows in data.values():
                        rows.clear()
                elif step != "sample":
                    getattr(self, step)(data, rng)
            self.enforce_foreign_keys(data)
            out.append(Variant(name, self._materialize(data)))
        return out

    def _materialize(self, data: Data) -> bytes:
        target = SQLiteBackend.empty()
        conn = target.connection
        with conn:
            for info in self.order:
                conn.execute(info.sql)
                for index in info.indexes:
                    if index.sql:
                        conn.execute(index.sql)
                names = info.column_names
                rows = data[info.name]
                if not rows:
                    continue
                text = sqlbuild.insert(info.name, names, ignore=True)
                conn.executemany(text, [tuple(r[c] for c in names) for r in rows])
            _drop_dangling(conn)
        image = target.serialize()
        target.close()
        return image
