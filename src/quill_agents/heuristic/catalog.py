"""The database as the heuristic agent sees it: parsed from an observation's schema text.

The observation's schema is DDL with a ``-- name: N rows`` comment before each table and the
existing ``CREATE INDEX`` statements after it (see ``Backend.schema_text``). This module turns
that text into :class:`Catalog`: tables, columns with their declared type, NOT NULL and key
facts, existing indexes and row counts. Everything is parsed with sqlglot; only the row-count
comments are read line by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Tokenizer

from quill_env.dialect import SUITE_DIALECT

_ROWS = re.compile(r"^--\s*(\S+):\s*([\d,]+)\s+rows\s*$")


@dataclass
class ColumnMeta:
    """One column of a table."""

    name: str
    type: str
    """The declared type, upper-cased (empty when none)."""
    notnull: bool = False
    primary_key: bool = False
    unique: bool = False

    @property
    def affinity(self) -> str:
        """SQLite's type affinity of the declared type (section 3.1 of its datatype rules).

        >>> ColumnMeta("a", "VARCHAR(20)").affinity, ColumnMeta("b", "DATE").affinity
        ('TEXT', 'NUMERIC')
        """
        t = self.type
        if "INT" in t:
            return "INTEGER"
        if any(k in t for k in ("CHAR", "CLOB", "TEXT")):
            return "TEXT"
        if "BLOB" in t or not t:
            return "BLOB"
        if any(k in t for k in ("REAL", "FLOA", "DOUB")):
            return "REAL"
        return "NUMERIC"


@dataclass
class TableMeta:
    """One table: columns, row count, keys and existing indexes."""

    name: str
    columns: dict[str, ColumnMeta] = field(default_factory=dict)
    """By lower-cased name, in declaration order."""
    rows: int = 0
    indexes: list[tuple[str, ...]] = field(default_factory=list)
    """Existing indexes (lower-cased columns, in index order), including UNIQUE constraints."""
    unique_sets: list[tuple[str, ...]] = field(default_factory=list)
    """Column sets declared unique (primary key, UNIQUE constraints, unique indexes)."""

    def column(self, name: str) -> ColumnMeta | None:
        """The column called ``name`` (case-insensitive), if any."""
        return self.columns.get(name.lower())

    @property
    def rowid_alias(self) -> str | None:
        """The ``INTEGER PRIMARY KEY`` column (an alias of the rowid: always a NOT NULL integer)."""
        for col in self.columns.values():
            if col.primary_key and col.type == "INTEGER":
                return col.name.lower()
        return None

    def is_unique_key(self, name: str) -> bool:
        """Whether ``name`` alone identifies a row and is never NULL."""
        col = self.column(name)
        if col is None:
            return False
        if self.rowid_alias == col.name.lower():
            return True
        return col.notnull and any(s == (col.name.lower(),) for s in self.unique_sets)

    def not_null(self, name: str) -> bool:
        """Whether the column can never hold NULL."""
        col = self.column(name)
        return col is not None and (col.notnull or self.rowid_alias == col.name.lower())

    def has_index_prefix(self, columns: tuple[str, ...]) -> bool:
        """Whether an existing index (or the rowid) starts with exactly ``columns``."""
        cols = tuple(c.lower() for c in columns)
        if len(cols) == 1 and cols[0] == self.rowid_alias:
            return True
        return any(idx[: len(cols)] == cols for idx in self.indexes)


@dataclass
class Catalog:
    """All tables of an observation's schema, by lower-cased name."""

    tables: dict[str, TableMeta] = field(default_factory=dict)

    def table(self, name: str) -> TableMeta | None:
        """The table called ``name`` (case-insensitive), if any."""
        return self.tables.get(name.lower())


def parse_schema(text: str) -> Catalog:
    """Parse the schema text of an observation.

    Statements sqlglot cannot parse are skipped (the agent then knows less, never something
    wrong).

    >>> cat = parse_schema("-- t: 1,200 rows\\nCREATE TABLE t (id INTEGER PRIMARY KEY, "
    ...                    "a TEXT NOT NULL);\\nCREATE INDEX i ON t(a);")
    >>> t = cat.table("T"); (t.rows, t.rowid_alias, t.indexes, t.not_null("a"))
    (1200, 'id', [('id',), ('a',)], True)
    """
    catalog = Catalog()
    rows: dict[str, int] = {}
    for line in text.splitlines():
        m = _ROWS.match(line.strip())
        if m:
            rows[m.group(1).lower()] = int(m.group(2).replace(",", ""))
    try:
        statements = sqlglot.parse(text, read=SUITE_DIALECT)
    except (ParseError, TokenError):
        statements = []
    for stmt in statements:
        if not isinstance(stmt, exp.Create):
            continue
        kind = str(stmt.args.get("kind") or "").upper()
        if kind == "TABLE" and isinstance(stmt.this, exp.Schema):
            table = _table(stmt.this, text)
            table.rows = rows.get(table.name.lower(), 0)
            catalog.tables[table.name.lower()] = table
        elif kind == "INDEX" and isinstance(stmt.this, exp.Index):
            _add_index(catalog, stmt)
    return catalog


_TYPE_STOP = {
    "PRIMARY", "NOT", "NULL", "UNIQUE", "DEFAULT", "CHECK", "REFERENCES", "COLLATE",
    "CONSTRAINT", "GENERATED", "AS", "AUTOINCREMENT",
}  # fmt: skip


def _declared_type(text: str, name: exp.Identifier) -> str:
    """The column's type exactly as declared (sqlglot normalizes ``INT`` to ``INTEGER``).

    SQLite's rules depend on the spelling: only ``INTEGER PRIMARY KEY`` aliases the rowid.
    """
    end = name.meta.get("end")
    if end is None:
        return ""
    words: list[str] = []
    depth = 0
    window = re.split(r"['\"`\[]", text[end + 1 : end + 200])[0]  # a type never holds quotes
    try:
        tokens = Tokenizer().tokenize(window)
    except TokenError:
        return ""
    for token in tokens:
        word = token.text.upper()
        if depth == 0 and (word.split()[0] in _TYPE_STOP or word in (",", ")")):
            break
        depth += (word == "(") - (word == ")")
        words.append(word)
    return " ".join(words).replace(" (", "(").replace("( ", "(").replace(" )", ")")


def _table(schema: exp.Schema, text: str) -> TableMeta:
    table = TableMeta(name=schema.this.name)
    for item in schema.expressions:
        if isinstance(item, exp.ColumnDef):
            kind = item.args.get("kind")
            declared = _declared_type(text, item.this) if kind is not None else ""
            col = ColumnMeta(name=item.name, type=declared)
            for constraint in item.args.get("constraints") or []:
                ckind = constraint.args.get("kind")
                if isinstance(ckind, exp.NotNullColumnConstraint) and not ckind.args.get("allow_null"):
                    col.notnull = True
                elif isinstance(ckind, exp.PrimaryKeyColumnConstraint):
                    col.primary_key = True
                elif isinstance(ckind, exp.UniqueColumnConstraint):
                    col.unique = True
            table.columns[col.name.lower()] = col
            if col.primary_key or col.unique:
                table.unique_sets.append((col.name.lower(),))
                table.indexes.append((col.name.lower(),))
        elif isinstance(item, (exp.PrimaryKey, exp.UniqueColumnConstraint)):
            cols = tuple(c.name.lower() for c in item.find_all(exp.Identifier) if c.name)
            if isinstance(item, exp.PrimaryKey) and len(cols) == 1:
                pk = table.column(cols[0])
                if pk is not None:
                    pk.primary_key = True
            if cols:
                table.unique_sets.append(cols)
                table.indexes.append(cols)
    return table


def _add_index(catalog: Catalog, stmt: exp.Create) -> None:
    index = stmt.this
    target = index.args.get("table")
    params = index.args.get("params")
    table = catalog.table(target.name) if target is not None else None
    if table is None or params is None or params.args.get("where") is not None:
        return
    cols = []
    for item in params.args.get("columns") or []:
        col = item.this if isinstance(item, exp.Ordered) else item
        if not isinstance(col, exp.Column):
            break
        cols.append(col.name.lower())
    if cols:
        table.indexes.append(tuple(cols))
        if stmt.args.get("unique"):
            table.unique_sets.append(tuple(cols))
