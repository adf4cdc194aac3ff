"""Twins: full-scale perturbed copies of the main database that a rewrite cannot tell apart from it.

Small variant databases catch rewrites that agree with the original by coincidence, but a
rewrite can see how small they are (``(SELECT COUNT(*) FROM orders) > 1000``, ``MAX(id)``) and
answer honestly there while returning a hard-coded answer on the main database. A twin has the
main database's size, keys and value distributions and differs only in how values pair up:

- every table keeps its row count, its row ids and primary keys (so key ranges and counts match;
  on an engine whose inserts cannot set the row id, DuckDB, a replaced row gets a new one);
- in a set of rows per table (the rows that produce the original's answer, found by
  :func:`quill_env.lineage.lineage_rowids`, plus as many random others), every row takes the
  whole content (all but its primary key) of another row of the set, so the answer's rows
  reappear under other keys and unique columns stay unique; then half of the rows now holding
  the answer's content, and half of the others, take each non-unique column (a multi-column
  foreign key moves as a unit) from a row of the set whose value differs, so the answer's
  values, pairings and aggregates change too; every value comes from the same column, so
  constraints and foreign keys hold and no value lies outside the column's range;
- so a rewrite that restricts the original to the main database's answer keys, or returns the
  main database's answer, is wrong on the twin, while no size, key range or column statistic
  tells the two apart.

A twin is stored as a recipe (the replacement rows) and applied to the runner's own copy of the
main database inside a transient state that is rolled back (:func:`applied`; on SQLite a
savepoint, after the rewrite's indexes are built): it costs no memory beyond the recipe, and the
rewrite runs on it exactly as on the main database. An engine without nested transient states
(DuckDB: :attr:`~quill_env.backends.base.Backend.nested_transient` is false) cannot build the
rewrite's scratch indexes around it, so there the runner keeps one copy per twin with the twin
applied for good (:func:`materialized`).

Everything runs through the :class:`~quill_env.backends.base.Backend` interface (its trusted
``query`` and ``execute_many``, ``transient`` and ``clone``), rows addressed by the engine's row
id (``Backend.row_id``, see :func:`quill_env.lineage.rowid_name`), on SQLite and DuckDB alike.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import Backend, TableInfo
from quill_env.errors import DatabaseError, EngineError
from quill_env.lineage import rowid_name
from quill_env.variants.schema import Schema

MAX_CHANGED_ROWS = 600
"""The most rows a twin replaces in one table."""

RANDOM_FRACTION = 0.002
"""The share of a table's rows a twin perturbs besides the answer's own rows."""

MAX_COLUMNS = 2000
"""SQLite's most columns in a result row (``SQLITE_LIMIT_COLUMN``)."""


@dataclass(frozen=True)
class TableChange:
    """The rows a twin replaces in one table: the same row ids, other values."""

    table: str
    rowids: tuple[int, ...]
    """The replaced rows (their row ids on the database the twin was built from)."""
    columns: tuple[str, ...]
    """The inserted columns; the first is the row id (:attr:`row_id`) unless the table has an
    INTEGER PRIMARY KEY or the engine's inserts cannot set it (DuckDB): then only declared ones."""
    rows: tuple[tuple, ...]
    row_id: str = "rowid"
    """The name under which the table's row id is read (see :func:`quill_env.lineage.rowid_name`)."""

    def statements(self, dialect: str) -> tuple[str, str]:
        """The parameterized DELETE of the replaced rows and INSERT of their new values in ``dialect``."""
        placeholders = [exp.Placeholder() for _ in self.rowids]
        delete = exp.delete(sqlbuild.table(self.table), where=exp.column(self.row_id).isin(*placeholders))
        return delete.sql(dialect), sqlbuild.insert(self.table, self.columns, dialect=dialect)


@dataclass(frozen=True)
class Twin:
    """A full-scale perturbed copy of the main database, as a recipe."""

    name: str
    changes: tuple[TableChange, ...]

    @property
    def changed_rows(self) -> int:
        """How many rows the twin replaces in all."""
        return sum(len(c.rows) for c in self.changes)

    @functools.cached_property
    def digest(self) -> str:
        """A hash of the recipe (part of the key of cached baselines)."""
        text = repr([(c.table, c.rowids, c.columns, c.rows) for c in self.changes])
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _groups(info: TableInfo, fixed: set[str]) -> list[tuple[tuple[str, ...], bool]]:
    """Column groups that move together, each with whether it must stay unique."""
    parent = {c: c for c in info.column_names if c not in fixed}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    unique_cols: set[str] = set()
    linked = [s for s in info.unique_sets if s != info.primary_key]
    linked += [fk.columns for fk in info.foreign_keys if len(fk.columns) > 1]
    for cols in linked:
        cols = [c for c in cols if c in parent]
        for c in cols[1:]:
            parent[find(c)] = find(cols[0])
    for s in info.unique_sets:
        if s != info.primary_key:
            unique_cols |= {c for c in s if c in parent}
    groups: dict[str, list[str]] = {}
    for c in parent:
        groups.setdefault(find(c), []).append(c)
    return [(tuple(cols), bool(unique_cols & set(cols))) for cols in groups.values()]


def _integer_pk(info: TableInfo) -> str | None:
    pk = info.primary_key
    if len(pk) == 1:
        col = next(c for c in info.columns if c.name == pk[0])
        if col.type == "INTEGER":
            return col.name
    return None


@functools.cache
def _row_id_insertable(kind: type[Backend]) -> bool:
    """Whether an INSERT on engine ``kind`` can set the row id (SQLite yes, DuckDB no)."""
    if kind.row_id is None:
        return False
    try:
        probe = kind.from_rows(["CREATE TABLE quill_probe (v INTEGER)"], {})
    except DatabaseError:  # an engine that cannot even build the probe sets nothing
        return False
    try:
        probe.execute_many(sqlbuild.insert("quill_probe", [kind.row_id, "v"], dialect=kind.dialect), [(7, 1)])
        read = exp.select(exp.column(kind.row_id)).from_("quill_probe")
        return probe.query(read.sql(kind.dialect)) == [(7,)]
    except EngineError:
        return False
    finally:
        probe.close()


def _choose_rowids(
    backend: Backend, info: TableInfo, row_id: str, seeds: Sequence[int], rng: np.random.Generator
) -> list[int]:
    table = sqlbuild.table(info.name)
    dialect = backend.dialect
    low, high = backend.query(
        exp.select(exp.func("min", exp.column(row_id)), exp.func("max", exp.column(row_id)))
        .from_(table)
        .sql(dialect)
    )[0]
    if low is None:
        return []
    seeds = sorted(set(seeds))
    if len(seeds) > MAX_CHANGED_ROWS // 2:
        seeds = sorted(rng.choice(seeds, size=MAX_CHANGED_ROWS // 2, replace=False).tolist())
    want = min(MAX_CHANGED_ROWS - len(seeds), max(len(seeds), 16, int(info.row_count * RANDOM_FRACTION)))
    want = min(want, info.row_count)
    draws = sorted({int(x) for x in rng.integers(low, high + 1, size=2 * want + 8)})
    found: list[int] = []
    for start in range(0, len(draws), 500):
        chunk = draws[start : start + 500]
        query = exp.select(exp.column(row_id)).from_(table).where(exp.column(row_id).isin(*chunk))
        found += [r[0] for r in backend.query(query.sql(dialect))]
    extra = [r for r in found if r not in set(seeds)][:want]
    return sorted(set(seeds) | set(extra))


def _perturb_table(
    backend: Backend,
    info: TableInfo,
    seeds: Sequence[int],
    rng: np.random.Generator,
    negative: bool = False,
) -> list[TableChange]:
    """Candidate changes of one table, the preferred first (see :func:`build_twin`)."""
    if info.is_view or info.row_count < 2:
        return []
    row_id = rowid_name(backend, info)
    if row_id is None:
        return []  # a WITHOUT ROWID table, or no row id to address rows by
    rowids = _choose_rowids(backend, info, row_id, seeds, rng)
    if len(rowids) < 2:
        return []
    pk = set(info.primary_key)
    int_pk = _integer_pk(info)
    names = info.column_names
    if int_pk is None and len(names) >= MAX_COLUMNS:
        return []  # the rowid would be one column too many for a result row
    table = sqlbuild.table(info.name)
    select = exp.select(exp.column(row_id), *[sqlbuild.column(c) for c in names]).from_(table)
    if int_pk is not None:
        select = exp.select(*[sqlbuild.column(c) for c in names]).from_(table)
    rows: list[list] = []
    for start in range(0, len(rowids), 500):
        chunk = rowids[start : start + 500]
        query = select.where(exp.column(row_id).isin(*chunk)).order_by(exp.column(row_id))
        for r in backend.query(query.sql(backend.dialect)):
            rows.append([r[names.index(int_pk)], *r] if int_pk is not None else list(r))
    n = len(rows)
    seeded = set(seeds)
    index = {c: i + 1 for i, c in enumerate(names)}
    groups = _groups(info, pk)
    # 1. Every chosen row takes the whole content (all but the primary key) of another chosen
    #    row: the answer's rows reappear under other keys, and unique columns stay unique.
    #    (A negative twin keeps every row's content in place.)
    moved = list(range(n)) if negative else _derangement(n, rng)
    carrying = [i for i in range(n) if rows[moved[i]][0] in seeded]
    others = [i for i in range(n) if rows[moved[i]][0] not in seeded]
    rng.shuffle(carrying)
    rng.shuffle(others)
    # 2. Half the rows that now carry the answer's content (rounded up; all of them in a
    #    negative twin), and half the others, then take each non-unique column from a row whose
    #    value differs: the answer's values change too, and so do pairings and aggregates.
    share = len(carrying) if negative else (len(carrying) + 1) // 2
    mixed = sorted(carrying[:share] + others[: len(others) // 2])
    merged = tuple(c for cols, unique in groups if not unique for c in cols)
    plans = [groups, [(merged, False)] if merged else []]
    out = []
    for plan in plans:
        if not plan:
            continue
        new = [[r[0], *(rows[moved[i]][1:])] for i, r in enumerate(rows)]
        for i, r in enumerate(rows):
            for c in pk:  # the primary key stays with the rowid
                new[i][index[c]] = r[index[c]]
        for cols, unique in plan:
            if unique:
                if negative:  # the answer's rows lose their unique values: they are gone
                    for i in carrying:
                        _renew_unique(backend, info, cols, new[i], index)
                continue  # otherwise unique columns move only with whole rows, so they stay unique
            for i in mixed:
                current = [new[i][index[c]] for c in cols]
                for _ in range(8):
                    j = int(rng.integers(n))
                    if [rows[j][index[c]] for c in cols] != current:
                        break
                for c in cols:
                    new[i][index[c]] = rows[j][index[c]]
        ids = tuple(r[0] for r in rows)
        if int_pk is not None or not _row_id_insertable(type(backend)):
            change = TableChange(info.name, ids, tuple(names), tuple(tuple(r[1:]) for r in new), row_id)
        else:
            change = TableChange(info.name, ids, (row_id, *names), tuple(tuple(r) for r in new), row_id)
        out.append(change)
    return out


def _renew_unique(
    backend: Backend, info: TableInfo, cols: tuple[str, ...], row: list, index: dict[str, int]
) -> None:
    """Give ``row`` a value in unique group ``cols`` that no row of the table holds, near its own.

    Text gets a suffix (it sorts right after the old value); an integer takes the nearest free
    value between its neighbours. Other types keep their value.
    """
    if {c for fk in info.foreign_keys for c in fk.columns} & set(cols):
        return  # a foreign key keeps pointing at an existing parent
    for col in cols:
        value = row[index[col]]
        if isinstance(value, str):
            row[index[col]] = value + "~"
            return
        if isinstance(value, int) and not isinstance(value, bool):
            probe = (
                exp.select("1")
                .from_(sqlbuild.table(info.name))
                .where(sqlbuild.column(col).eq(exp.Placeholder()))
            )
            for step in range(1, 21):
                for candidate in (value + step, value - step):
                    if not backend.query(probe.sql(backend.dialect), (candidate,)):
                        row[index[col]] = candidate
                        return
            return


def _derangement(n: int, rng: np.random.Generator) -> list[int]:
    """A permutation of ``range(n)`` that moves every position (``n >= 2``).

    >>> perm = _derangement(5, np.random.default_rng(0))
    >>> sorted(perm) == list(range(5)) and all(p != i for i, p in enumerate(perm))
    True
    """
    order = [int(i) for i in rng.permutation(n)]
    position = {v: p for p, v in enumerate(order)}
    return [order[(position[i] + 1) % n] for i in range(n)]


def _apply_change(backend: Backend, change: TableChange) -> None:
    delete, insert = change.statements(backend.dialect)
    backend.execute_many(delete, [change.rowids])
    backend.execute_many(insert, change.rows)


def build_twin(
    backend: Backend,
    lineage: Mapping[str, Sequence[int]],
    *,
    seed: int = 0,
    index: int = 0,
) -> Twin:
    """Derive a twin of ``backend``'s database (see the module docstring).

    Each table's change is tried once in a rolled-back :meth:`~quill_env.backends.base.Backend.transient`
    state; when the engine refuses it (a CHECK across columns, say), the table's other columns
    move together as whole rows instead, and when that is refused too the table stays as it is.
    Tables without a row id (:func:`quill_env.lineage.rowid_name`) stay as they are.

    Args:
        backend: the main database (unchanged when this returns); no transient state may be
            open on it where the engine cannot nest them (``backend.nested_transient``).
        lineage: row ids of the rows behind the original's answer, by table name.
        seed: the evaluation seed.
        index: which twin (each has its own random choices); odd ones are *negative* twins,
            in which the rows behind the answer keep their keys but lose their unique values and
            take others' values in every other column, so the original's answer is mostly gone
            (a hard-coded copy of the answer, even one written with the original's own literals,
            is wrong there).
    """
    changes = []
    negative = index % 2 == 1
    for position, info in enumerate(backend.tables().values()):
        rng = np.random.default_rng([seed, 7919, index, position])
        for change in _perturb_table(backend, info, lineage.get(info.name, ()), rng, negative):
            with backend.transient():
                try:
                    _apply_change(backend, change)
                except EngineError:
                    continue  # refused (a constraint): try the next candidate
            changes.append(change)
            break
    return Twin(f"twin-{index}", tuple(changes))


@contextlib.contextmanager
def applied(backend: Backend, twin: Twin) -> Iterator[None]:
    """Apply ``twin`` to ``backend`` in a ``backend.transient()`` state that is rolled back on exit.

    Only where ``backend.nested_transient`` is true (SQLite: a savepoint, so it may be entered
    inside :meth:`~quill_env.backends.base.Backend.scratch_indexes`) or where no other transient
    or scratch state is open on ``backend``; elsewhere use :func:`materialized`.

    Raises:
        EngineError: the engine refused the twin's rows (the database is left unchanged).
    """
    with backend.transient():
        for change in twin.changes:
            _apply_change(backend, change)
        yield


def materialized(backend: Backend, twin: Twin) -> Backend:
    """A new private copy of ``backend`` (``backend.clone()``) with ``twin`` applied for good.

    For engines without nested transient states (DuckDB: ``backend.nested_transient`` is
    false), where a twin cannot be applied around a rewrite's scratch indexes: the runner keeps
    one such copy per twin and runs the rewrite (indexes and all) on it as on the main database.
    ``twin`` must have been built from ``backend`` (its row ids are ``backend``'s);
    ``backend`` itself is left unchanged. The caller owns the copy and closes it.

    Raises:
        EngineError: the engine refused the twin's rows (the copy is closed).
        DatabaseError: ``backend`` cannot be cloned.
    """
    copy = backend.clone()
    try:
        for change in twin.changes:
            _apply_change(copy, change)
    except BaseException:
        copy.close()
        raise
    return copy


def _orphans(child: str, columns: Sequence[str], parent: str, ref_columns: Sequence[str]) -> exp.Condition:
    """The rows of ``child`` whose foreign key (all parts set) has no row in ``parent``."""
    match = exp.and_(
        *(
            exp.column(r, table="quill_parent", quoted=True).eq(exp.column(c, table=child, quoted=True))
            for c, r in zip(columns, ref_columns)
        )
    )
    parent_rows = exp.select("1").from_(exp.alias_(sqlbuild.table(parent), "quill_parent")).where(match)
    return exp.and_(
        *(exp.column(c, table=child, quoted=True).is_(exp.null()).not_() for c in columns),
        exp.Exists(this=parent_rows).not_(),
    )


def empty_table(backend: Backend, table: str) -> bool:
    """Empty ``table`` of ``backend``'s database, and the rows that referenced it.

    The rows of other tables whose foreign key pointed into the emptied rows go too (to a fixed
    point, so chains and self-references are followed), so the database still satisfies its
    declared keys (:attr:`quill_env.variants.schema.Schema.links`): a rewrite that drops a join
    the schema makes redundant stays correct there, while one that drops a table whose rows
    only had to exist (a cross join, an uncorrelated ``EXISTS``) is wrong. It changes the
    database for good, through the backend's trusted statements and outside any transient state:
    call it on a private copy the caller owns. Returns ``False`` when the engine refuses a
    statement (the copy is then not to be used).

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.from_rows(
    ...     ["CREATE TABLE p(id INTEGER PRIMARY KEY)",
    ...      "CREATE TABLE c(id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id))"],
    ...     {"p": [(1,), (2,)], "c": [(10, 1), (11, None)]})
    >>> empty_table(db, "p"), db.query("SELECT id FROM c")
    (True, [(11,)])
    """
    schema = Schema(backend.tables())
    dialect = backend.dialect
    try:
        backend.query(exp.delete(sqlbuild.table(table)).sql(dialect))
        for _ in range(len(schema.tables) + 1):
            changed = 0
            for link in schema.links:
                orphans = _orphans(link.child, link.columns, link.parent, link.ref_columns)
                count = exp.select(exp.Count(this=exp.Star())).from_(sqlbuild.table(link.child))
                found = int(backend.query(count.where(orphans.copy()).sql(dialect))[0][0])
                if found:
                    backend.query(exp.delete(sqlbuild.table(link.child)).where(orphans.copy()).sql(dialect))
                    changed += found
            if not changed:
                break
    except EngineError:
        return False
    return True


__all__ = ["TableChange", "Twin", "applied", "build_twin", "empty_table", "materialized"]
