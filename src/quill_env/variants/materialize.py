"""Writing variant rows into a database of the source's schema, with every foreign key holding.

The schema (tables, their indexes, then views, in creation order) is created once per builder
and kept as an image; each variant is that image plus its rows. Rows a constraint refuses
(``INSERT OR IGNORE``: a duplicate key, a CHECK) can leave children without their parent, so a
last pass deletes such children, one foreign key at a time with a ``NOT EXISTS`` over the
parent (``PRAGMA foreign_key_check`` refuses foreign keys to non-unique columns).
"""

from __future__ import annotations

import apsw
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.variants.schema import Data, Link, Schema

_DANGLING_ROUNDS = 16


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

    Args:
        schema: the source's tables (views come from ``schema.all_tables``).
    """

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        target = SQLiteBackend.empty()
        conn = target.connection
        with conn:
            for info in schema.all_tables.values():
                if info.is_view:
                    continue
                conn.execute(info.sql)
                for index in info.indexes:
                    if index.sql:
                        conn.execute(index.sql)
        for info in schema.all_tables.values():
            if info.is_view:
                try:
                    conn.execute(info.sql)
                except apsw.Error:
                    continue  # a view the variant cannot define; queries on it fail as on a broken source
        self.image = target.serialize()
        target.close()
        self._inserts = {
            info.name: sqlbuild.insert(info.name, info.column_names, ignore=True) for info in schema.order
        }
        self._deletes = [(link, _dangling_delete(link)) for link in schema.links]

    def write(self, data: Data) -> SQLiteBackend:
        """A new in-memory database holding ``data`` (what a constraint refuses is left out)."""
        target = SQLiteBackend.from_bytes(self.image)
        conn = target.connection
        conn.trace_v2(0, None)  # no per-statement profiling while rows go in
        with conn:
            for info in self.schema.order:
                rows = data.get(info.name)
                if rows:
                    names = info.column_names
                    _insert(conn, self._inserts[info.name], [tuple(map(r.get, names)) for r in rows])
            for _ in range(_DANGLING_ROUNDS):
                changed = 0
                for _link, sql in self._deletes:
                    conn.execute(sql)
                    changed += conn.changes()
                if not changed:
                    break
        return target


def _insert(conn: apsw.Connection, sql: str, rows: list[tuple]) -> None:
    """Insert ``rows``; when one is refused outright (a type mismatch), insert the others one by one."""
    conn.execute("SAVEPOINT quill_rows")
    try:
        conn.executemany(sql, rows)
    except apsw.Error:
        conn.execute("ROLLBACK TO quill_rows")
        for row in rows:
            try:
                conn.execute(sql, row)
            except apsw.Error:
                continue  # a row this schema refuses (STRICT types, a non-integer rowid): left out
    finally:
        conn.execute("RELEASE quill_rows")


def _dangling_delete(link: Link) -> str:
    """``DELETE`` the rows of ``link.child`` whose complete key matches no parent row."""
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
    return exp.delete(child, where=exp.and_(complete, exp.Not(this=exists))).sql("sqlite")


__all__ = ["SchemaImage", "enforce_foreign_keys"]
