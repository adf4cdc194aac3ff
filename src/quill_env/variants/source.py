"""Reading rows out of the source database: by rowid, by key values, or all of a small table.

Variants are sampled many times from one source (a suite's tiny ``variant`` tier, or a user's
database of any size). A small table is read once and served from memory; a large one is read on
demand with prepared, parameterized statements (built once per table and key shape with sqlglot,
never with f-strings, in the source backend's dialect), in chunks of :data:`CHUNK` values. Only
the :class:`~quill_env.backends.base.Backend` interface is used (trusted ``query``), so any
engine can be the source; a row's identity is the engine's row id (:attr:`Backend.row_id`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import Backend, TableInfo
from quill_env.lineage import rowid_name

SMALL_TABLE = 5000
"""Tables with at most this many rows are read into memory once."""

CHUNK = 200
"""Values per parameterized lookup."""

MAX_COLUMNS = 2000
"""The most columns read in one row (SQLite's ``SQLITE_MAX_COLUMN``; wider tables take two reads)."""

KEY_PAGE = 1 << 20
"""Row ids read per statement when a large table's identities are listed (keyset pages)."""


Key = tuple
"""A row's identity in the source: ``(rowid,)``, or its primary key in a WITHOUT ROWID table."""


class IntKeys(Sequence):
    """Rowid identities backed by a numpy array; item ``i`` is the key ``(rowid,)``.

    >>> keys = IntKeys(np.array([3, 5, 8]))
    >>> len(keys), keys[1], list(keys)[-1]
    (3, (5,), (8,))
    """

    def __init__(self, rowids: np.ndarray) -> None:
        self._rowids = rowids

    def __len__(self) -> int:
        return len(self._rowids)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [(int(r),) for r in self._rowids[index]]
        return (int(self._rowids[index]),)


class SourceTable:
    """One table of the source database.

    A row's identity is its rowid (or, without one, its primary key). The rowid is read as an
    extra column unless an INTEGER PRIMARY KEY already holds it; a table too wide for the extra
    column (SQLite returns at most :data:`MAX_COLUMNS`) reads identities and rows in two
    statements with the same order.

    Args:
        backend: the source database (read only here).
        info: the table.
    """

    def __init__(self, backend: Backend, info: TableInfo) -> None:
        self.backend = backend
        self.info = info
        self.columns = info.column_names
        rowid = rowid_name(backend, info)
        self.has_rowid = rowid is not None
        alias = _rowid_alias(info)
        if rowid is not None:
            self.identity: tuple[str, ...] = (alias,) if alias else (rowid,)
        else:
            self.identity = info.primary_key or tuple(self.columns)
        self._extra = tuple(c for c in self.identity if c not in self.columns)
        self._wide = len(self._extra) + len(self.columns) > MAX_COLUMNS
        names = [*self._extra, *self.columns]
        self._id_positions = [names.index(c) for c in self.identity]
        self._rows: dict[Key, tuple] | None = None
        self._keys: Sequence[Key] | None = None
        self._indexes: dict[tuple[str, ...], dict[tuple, list[Key]]] = {}
        self._statements: dict[tuple, tuple[str, str | None]] = {}
        if info.row_count <= SMALL_TABLE:
            self._load()

    # --- statements ------------------------------------------------------------------------

    def _ordered(self, projection: Sequence[str], where: exp.Expression | None) -> str:
        stmt = exp.select(*[sqlbuild.column(c) for c in projection]).from_(sqlbuild.table(self.info.name))
        if where is not None:
            stmt = stmt.where(where)
        stmt = stmt.order_by(*[exp.Ordered(this=sqlbuild.column(c)) for c in self.identity])
        return stmt.sql(self.backend.dialect)

    def _compile(self, where: exp.Expression | None) -> tuple[str, str | None]:
        """The statement(s) reading identities and rows under ``where``, in identity order."""
        if self._wide:
            return self._ordered(self._extra, where), self._ordered(self.columns, where)
        return self._ordered([*self._extra, *self.columns], where), None

    def _run(self, statements: tuple[str, str | None], params: Sequence = ()) -> list[tuple[Key, tuple]]:
        first, second = statements
        skip = len(self._extra)
        if second is None:
            out = []
            for r in self.backend.query(first, params):
                out.append((tuple(r[p] for p in self._id_positions), r[skip:]))
            return out
        keys = self.backend.query(first, params)
        rows = self.backend.query(second, params)
        return list(zip(keys, rows))

    # --- whole-table access ----------------------------------------------------------------

    def _load(self) -> None:
        self._rows = dict(self._run(self._compile(None)))
        self._keys = list(self._rows)

    def keys(self) -> Sequence[Key]:
        """Every row's identity, in identity order.

        Integer rowids are held in one numpy array (8 bytes a row, not a tuple per row), so a
        table of millions of rows costs tens of megabytes here, not gigabytes.
        """
        if self._keys is None:
            if self.has_rowid and len(self.identity) == 1:
                self._keys = IntKeys(self._rowids())
            else:
                self._keys = self.backend.query(self._ordered(self.identity, None))
        return self._keys

    def _rowids(self) -> np.ndarray:
        """Every row id in order, read in pages of :data:`KEY_PAGE` (``WHERE id > last``)."""
        (name,) = self.identity
        ref = sqlbuild.column(name)
        first = exp.select(ref).from_(sqlbuild.table(self.info.name)).order_by(exp.Ordered(this=ref.copy()))
        nxt = first.copy().where(exp.GT(this=ref.copy(), expression=exp.Placeholder()))
        first_sql = first.limit(KEY_PAGE).sql(self.backend.dialect)
        next_sql = nxt.limit(KEY_PAGE).sql(self.backend.dialect)
        pages = [np.fromiter((r[0] for r in self.backend.query(first_sql)), dtype=np.int64)]
        while len(pages[-1]) == KEY_PAGE:
            after = int(pages[-1][-1])
            pages.append(np.fromiter((r[0] for r in self.backend.query(next_sql, (after,))), dtype=np.int64))
        return np.concatenate(pages)

    # --- lookups ---------------------------------------------------------------------------

    def rows(self, keys: Iterable[Key]) -> list[tuple[Key, tuple]]:
        """The rows with these identities (missing ones left out), in the order given."""
        keys = list(dict.fromkeys(keys))
        if self._rows is not None:
            return [(k, self._rows[k]) for k in keys if k in self._rows]
        found = dict(self._lookup(self.identity, keys, None))
        return [(k, found[k]) for k in keys if k in found]

    def matching(
        self, columns: Sequence[str], values: Iterable[tuple], limit: int | None = None
    ) -> list[tuple[Key, tuple]]:
        """Rows whose ``columns`` equal one of ``values`` (tuples), identity order, at most ``limit``.

        NULL never matches (as in a foreign key).
        """
        wanted = sorted({v for v in values if None not in v}, key=repr)
        if not wanted:
            return []
        if self._rows is not None:
            index = self._index(tuple(columns))
            hits = sorted({k for v in wanted for k in index.get(v, ())}, key=repr)
            return [(k, self._rows[k]) for k in hits[:limit]]
        return self._lookup(tuple(columns), wanted, limit)

    def _index(self, columns: tuple[str, ...]) -> dict[tuple, list[Key]]:
        if columns not in self._indexes:
            positions = [self.columns.index(c) for c in columns]
            index: dict[tuple, list[Key]] = {}
            for key, row in (self._rows or {}).items():
                index.setdefault(tuple(row[p] for p in positions), []).append(key)
            self._indexes[columns] = index
        return self._indexes[columns]

    def _lookup(
        self, columns: tuple[str, ...], values: Sequence[tuple], limit: int | None
    ) -> list[tuple[Key, tuple]]:
        out: list[tuple[Key, tuple]] = []
        for start in range(0, len(values), CHUNK):
            chunk = list(values[start : start + CHUNK])
            chunk += [chunk[-1]] * (CHUNK - len(chunk))  # pad: one statement per key shape
            out += self._run(self._statement(columns), [v for value in chunk for v in value])
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    def _statement(self, columns: tuple[str, ...]) -> tuple[str, str | None]:
        if columns not in self._statements:
            refs = [sqlbuild.column(c) for c in columns]
            if len(refs) == 1:
                where = refs[0].isin(*[exp.Placeholder() for _ in range(CHUNK)])
            else:
                rows = [exp.Tuple(expressions=[exp.Placeholder() for _ in refs]) for _ in range(CHUNK)]
                where = exp.In(
                    this=exp.Tuple(expressions=refs), query=exp.Subquery(this=exp.Values(expressions=rows))
                )
            self._statements[columns] = self._compile(where)
        return self._statements[columns]


def _rowid_alias(info: TableInfo) -> str | None:
    key = info.primary_key
    if len(key) == 1 and any(c.name == key[0] and c.type == "INTEGER" for c in info.columns):
        return key[0]
    return None


class Source:
    """The source database's tables, opened lazily.

    Args:
        backend: the source database (read only here).
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._infos = {k: v for k, v in backend.tables().items() if not v.is_view}
        self._tables: dict[str, SourceTable] = {}

    def table(self, name: str) -> SourceTable:
        """The source table called ``name`` (any case)."""
        key = name.lower()
        if key not in self._tables:
            self._tables[key] = SourceTable(self.backend, self._infos[key])
        return self._tables[key]


__all__ = ["CHUNK", "SMALL_TABLE", "Key", "Source", "SourceTable"]
