"""A slow query and candidate rewrites derived from the schema of any SQLite database.

Used by ``score_my_query.py`` and ``optimize_my_query.py`` when you give them a database but no
query. The derived query is the most common slow query of real applications: an equality lookup
on a column that no index leads with, the one with the most distinct values in any table (an
index there pays off most; ties go to the larger table). A column that only follows the first
one in a composite primary key or index counts as unindexed. SQL is built with sqlglot expressions, never pasted from strings.

Usage: python examples/schema_queries.py path/to/db.sqlite   (prints the derived queries)
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.request import pathname2url

from sqlglot import exp

INDEX_NAME = "quill_example_idx"


@dataclass(frozen=True)
class Lookup:
    """An unindexed equality lookup: ``SELECT * FROM table WHERE column = value``."""

    table: str
    column: str
    value: object
    rows: int

    def _where(self, op: type[exp.Binary]) -> exp.Select:
        column = exp.column(self.column, quoted=True)
        condition = op(this=column, expression=exp.convert(self.value))
        return exp.select(exp.Star()).from_(exp.table_(self.table, quoted=True)).where(condition)

    @property
    def slow(self) -> str:
        """The slow query."""
        return self._where(exp.EQ).sql("sqlite")

    @property
    def index(self) -> str:
        """The rewrite that adds the missing index and keeps the query."""
        create = exp.Create(
            kind="INDEX",
            this=exp.Index(
                this=exp.to_identifier(INDEX_NAME),
                table=exp.table_(self.table, quoted=True),
                params=exp.IndexParameters(columns=[exp.column(self.column, quoted=True)]),
            ),
        )
        return f"{create.sql('sqlite')};\n{self.slow}"

    @property
    def wrong(self) -> str:
        """A rewrite that returns other rows (Quill must call it ``wrong_result``)."""
        return self._where(exp.NEQ).sql("sqlite")

    @property
    def hostile(self) -> str:
        """A statement that would destroy data (Quill must refuse it)."""
        return exp.delete(exp.table_(self.table, quoted=True)).sql("sqlite")


def _connect(path: str) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise SystemExit(f"error: no such database file: {path}")
    return sqlite3.connect(f"file:{pathname2url(str(Path(path).resolve()))}?mode=ro", uri=True)


def _scalar(conn: sqlite3.Connection, query: exp.Expression) -> object:
    return conn.execute(query.sql("sqlite")).fetchone()[0]


def derive_lookup(path: str) -> Lookup:
    """The unindexed lookup of the database at ``path`` (see the module docstring).

    Raises:
        SystemExit: the file is missing, not SQLite, or has no table with an unindexed column.
    """
    conn = _connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        best: tuple[int, int, str, str] | None = None
        for table in tables:
            indexed = {
                r[0]
                for r in conn.execute(
                    "SELECT ii.name FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii "
                    "WHERE ii.seqno = 0",
                    (table,),
                )
            }
            info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (table,)).fetchall()
            pk = [name for name, position in info if position > 0]
            if len(pk) == 1:  # a one-column key is the rowid or has its own index
                indexed.add(pk[0])
            columns = [name for name, _ in info]
            source = exp.table_(table, quoted=True)
            rows = int(_scalar(conn, exp.select(exp.Count(this=exp.Star())).from_(source)))
            for column in (c for c in columns if c not in indexed):
                col = exp.column(column, quoted=True)
                distinct = int(
                    _scalar(conn, exp.select(exp.Count(this=exp.Distinct(expressions=[col]))).from_(source))
                )
                key = (distinct, rows, table, column)
                if distinct > 1 and (best is None or key > best):
                    best = key
        if best is None:
            raise SystemExit(f"error: {path} has no table with an unindexed column to look up")
        distinct, rows, table, column = best
        col = exp.column(column, quoted=True)
        middle = (
            exp.select(col)
            .from_(exp.table_(table, quoted=True))
            .where(col.is_(exp.null()).not_())
            .order_by(col)
            .limit(1)
            .offset(rows // 2)
        )
        value = conn.execute(middle.sql("sqlite")).fetchone()
        if value is None:  # fewer non-NULL values than half the rows: take the first one
            value = conn.execute(middle.offset(0).sql("sqlite")).fetchone()
        return Lookup(table, column, value[0], rows)
    except sqlite3.DatabaseError as err:
        raise SystemExit(f"error: cannot read {path} as a SQLite database: {err}") from None
    finally:
        conn.close()


def read_sql(text: str) -> str:
    """SQL given inline, or ``@path`` to read it from a file."""
    if not text.startswith("@"):
        return text
    try:
        return Path(text[1:]).read_text()
    except OSError as err:
        raise SystemExit(f"error: cannot read {text[1:]}: {err.strerror}") from None


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    lookup = derive_lookup(sys.argv[1])
    print(f"-- {lookup.table}: {lookup.rows} rows; slow query:\n{lookup.slow}\n")
    print(f"-- with an index:\n{lookup.index}")
