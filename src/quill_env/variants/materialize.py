"""Writing variant rows into a database of the source's schema, with every foreign key holding.

The schema (tables, their indexes, then views, in creation order) is created once per builder,
on the source's own engine, through the :class:`~quill_env.backends.base.Backend` interface;
each variant is written into a clone of it and its rows are read back out. Rows a constraint refuses
(``INSERT OR IGNORE``: a duplicate key, a CHECK) can leave children without their parent, so a
last pass deletes such children, one foreign key at a time with a ``NOT EXISTS`` over the
parent (``PRAGMA foreign_key_check`` refuses foreign keys to non-unique columns).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import Backend, TableInfo
from quill_env.errors import EngineError
from quill_env.lineage import rowid_name
from quill_env.variants.schema import Data, Link, Schema

_DANGLING_ROUNDS = 16

BATCH_ROWS = 64
"""The most rows one multi-row ``INSERT`` statement carries."""

BATCH_VALUES = 30_000
"""The most parameters one ``INSERT`` statement binds (SQLite allows 32766)."""


class RowInserter:
    """Parameterized multi-row ``INSERT`` statements for some columns of one table.

    Rows go in, in order, through statements of ``2**k`` rows (at most :data:`BATCH_ROWS`, and
    :data:`BATCH_VALUES` parameters), each built once (the one-row statement with sqlglot, the
    others by repeating its placeholder row). One statement of many rows
    is much cheaper than one execution per row on an engine with a costly statement (DuckDB),
    and means the same: rows are inserted in order, ``OR IGNORE`` skips a refused row alone.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.from_rows(["CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)"], {})
    >>> RowInserter("t", ["a", "b"], "sqlite", ignore=True).insert(db, [(1, "x"), (1, "y"), (2, "z")])
    >>> db.query("SELECT a, b FROM t ORDER BY a")
    [(1, 'x'), (2, 'z')]
    """

    def __init__(self, table: str, columns: Sequence[str], dialect: str, *, ignore: bool = False) -> None:
        self.table = table
        self.columns = list(columns)
        self.dialect = dialect
        self.ignore = ignore
        self.batch = max(1, min(BATCH_ROWS, BATCH_VALUES // max(1, len(self.columns))))
        self._statements: dict[int, str] = {}

    def statement(self, n: int) -> str:
        """The ``INSERT`` of ``n`` rows."""
        if n not in self._statements:
            self._statements[n] = _multi_row(self.statement(1), n) if n > 1 else self._single()
        return self._statements[n]

    def _single(self) -> str:
        return sqlbuild.insert(self.table, self.columns, dialect=self.dialect, ignore=self.ignore)

    def insert(self, backend: Backend, rows: Sequence[tuple]) -> None:
        """Insert ``rows`` (values in :attr:`columns` order).

        Raises:
            EngineError: the engine refused a statement (rows of earlier statements stay in).
            OverflowError: a value cannot be bound (an integer past 64 bits).
        """
        start = 0
        while start < len(rows):
            n = min(self.batch, 1 << ((len(rows) - start).bit_length() - 1))
            backend.query(self.statement(n), [v for row in rows[start : start + n] for v in row])
            start += n


def _multi_row(single: str, n: int) -> str:
    """The one-row ``INSERT ... VALUES (?, ...)`` ``single`` with its placeholder row ``n`` times.

    >>> _multi_row('INSERT INTO "t" ("a", "b") VALUES (?, ?)', 3)
    'INSERT INTO "t" ("a", "b") VALUES (?, ?), (?, ?), (?, ?)'
    >>> _multi_row('INSERT INTO "t" ("a") VALUES (%s) ON CONFLICT DO NOTHING', 2)
    'INSERT INTO "t" ("a") VALUES (%s), (%s) ON CONFLICT DO NOTHING'
    """
    head, values, rest = single.rpartition(" VALUES ")
    row = rest[: rest.find(")") + 1]
    if not values or not row or row.replace("%s", "?").strip("(?, )"):
        raise ValueError(f"not a one-row parameterized INSERT: {single}")
    return head + values + ", ".join([row] * n) + rest[len(row) :]


def enforce_foreign_keys(schema: Schema, data: Data) -> None:
    """Make every foreign key of ``data`` hold: a dangling value becomes NULL, or the row goes.

    Multi-column keys are checked as tuples; a key with a NULL column holds (SQL's rule).
    """
    for info in schema.order:
        rows = data.get(info.name)
        if rows is None:
            continue
        notnull = schema.notnull(info.name)
        for link in schema.links_from(info.name):
            keys = {tuple(r.get(c) for c in link.ref_columns) for r in data.get(link.parent, [])}
            kept = []
            for row in rows:
                value = tuple(row.get(c) for c in link.columns)
                if None in value or value in keys:
                    kept.append(row)
                elif not notnull & set(link.columns):
                    for c in link.columns:
                        row[c] = None
                    kept.append(row)
            rows[:] = kept


class SchemaImage:
    """An empty database of the source's schema, and variants written from it.

    The schema database is built once on ``engine`` (the source's own engine) from the source's
    DDL; each variant is written into a clone of it, and its rows are read back out
    (:meth:`rows`), so what a variant holds is what that engine's constraints let in.

    Args:
        schema: the source's tables (views come from ``schema.all_tables``).
        engine: the backend class of the scratch databases.
        dialect: the dialect of the DDL in ``schema`` (the source's).
        types: DDL of the source's own types that its tables use (:meth:`Backend.type_sql`).
    """

    def __init__(
        self, schema: Schema, engine: type[Backend], dialect: str, types: Sequence[str] = ()
    ) -> None:
        self.schema = schema
        self.dialect = dialect
        statements: list[str] = list(types)
        for info in schema.all_tables.values():
            if not info.is_view:
                statements.append(info.sql)
                statements += [index.sql for index in info.indexes if index.sql]
        self._base = engine.from_rows(statements, {}, label="variant schema", dialect=dialect)
        for info in schema.all_tables.values():
            if info.is_view:
                try:
                    self._base.query(info.sql)
                except EngineError:
                    continue  # a view the variant cannot define; queries on it fail as on a broken source
                statements.append(info.sql)
        self.schema_sql: tuple[str, ...] = tuple(statements)
        """The DDL of every variant (tables, their indexes, the views that could be defined)."""
        self._dialect = self._base.dialect
        self._inserts = {
            info.name: RowInserter(info.name, info.column_names, self._dialect, ignore=True)
            for info in schema.order
        }
        self._clears = {
            info.name: exp.delete(sqlbuild.table(info.name)).sql(self._dialect) for info in schema.order
        }
        self._deletes = [(link, _dangling_delete(link, self._dialect)) for link in schema.links]
        self._reads: dict[str, str] = {}

    def empty(self) -> Backend:
        """A new empty database of the schema (the caller closes it)."""
        return self._base.clone()

    def close(self) -> None:
        """Release the schema database."""
        self._base.close()

    def write(self, data: Data) -> Backend:
        """A new in-memory database holding ``data`` (what a constraint refuses is left out)."""
        target = self._base.clone()
        for info in self.schema.order:
            rows = data.get(info.name)
            if rows:
                names = info.column_names
                self._insert(target, info.name, [tuple(map(r.get, names)) for r in rows])
        for _ in range(_DANGLING_ROUNDS):
            changed = 0
            for _link, sql in self._deletes:
                changed += len(target.query(sql))
            if not changed:
                break
        return target

    def _insert(self, target: Backend, table: str, rows: list[tuple]) -> None:
        """Insert ``rows`` into the empty ``table``, or one by one when one is refused outright.

        A row refused outright (a type mismatch; on DuckDB also a NULL in a NOT NULL column)
        fails its whole statement: the table is emptied again and the rows are inserted one at a
        time, the refused ones left out.
        """
        inserter = self._inserts[table]
        try:
            inserter.insert(target, rows)
        except (EngineError, OverflowError):
            target.query(self._clears[table])
            for row in rows:
                try:
                    inserter.insert(target, [row])
                except (EngineError, OverflowError):
                    continue  # a row this schema refuses (STRICT types, a non-integer rowid): left out

    def rows(self, backend: Backend) -> dict[str, tuple[tuple, ...]]:
        """Every table's rows of ``backend`` (written by :meth:`write`), in column and row-id order."""
        out = {}
        for info in self.schema.all_tables.values():
            if info.is_view:
                continue
            if info.name not in self._reads:
                self._reads[info.name] = self._read(backend, info)
            out[info.name] = tuple(backend.query(self._reads[info.name]))
        return out

    def _read(self, backend: Backend, info: TableInfo) -> str:
        order = rowid_name(backend, info)
        keys = [order] if order else list(info.primary_key)
        stmt = exp.select(*[sqlbuild.column(c) for c in info.column_names]).from_(sqlbuild.table(info.name))
        if keys:
            stmt = stmt.order_by(*[exp.Ordered(this=sqlbuild.column(c)) for c in keys])
        return stmt.sql(self._dialect)


def _dangling_delete(link: Link, dialect: str) -> str:
    """``DELETE`` the rows of ``link.child`` whose complete key matches no parent row.

    It returns a row per deleted row (``RETURNING 1``: how many went, on any engine).
    """
    child = sqlbuild.table(link.child)
    parent = exp.Table(
        this=exp.to_identifier(link.parent, quoted=True),
        alias=exp.TableAlias(this=exp.to_identifier("quill_parent", quoted=True)),
    )

    def own(column: str) -> exp.Column:
        return exp.Column(
            this=exp.to_identifier(column, quoted=True), table=exp.to_identifier(link.child, quoted=True)
        )

    match = exp.and_(
        *[
            exp.EQ(
                this=exp.Column(
                    this=exp.to_identifier(r, quoted=True),
                    table=exp.to_identifier("quill_parent", quoted=True),
                ),
                expression=own(c),
            )
            for c, r in zip(link.columns, link.ref_columns)
        ]
    )
    exists = exp.Exists(this=exp.select(exp.Literal.number(1)).from_(parent).where(match))
    complete = exp.and_(*[exp.Not(this=exp.Is(this=own(c), expression=exp.Null())) for c in link.columns])
    stmt = exp.delete(child, where=exp.and_(complete, exp.Not(this=exists)), returning="1")
    return stmt.sql(dialect)


__all__ = ["RowInserter", "SchemaImage", "enforce_foreign_keys"]
