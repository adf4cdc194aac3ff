"""Porting suite and user DDL between engines, and foreign keys kept as table comments.

Engine-neutral (sqlglot only): DuckDB and PostgreSQL both load Quill's databases from DDL
written in another dialect, and both keep foreign keys as metadata rather than constraints (a
twin deletes and re-inserts referenced rows, which an enforced key refuses; see
:mod:`quill_env.twins`). Quill never writes rows that break them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlglot
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import ForeignKey
from quill_env.errors import DatabaseError

FOREIGN_KEYS_COMMENT = "quill:foreign_keys="
"""Prefix of the table comment in which :func:`port_ddl` keeps a table's foreign keys."""

_NARROW_INTEGERS = {exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT,
                    exp.DataType.Type.MEDIUMINT}  # fmt: skip

_SQLITE_REAL = {exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE}


def port_ddl(
    schema_sql: Sequence[str], dialect: str | None, target: str, *, keep_foreign_keys: bool = False
) -> list[str]:
    """DDL as engine ``target`` runs it for Quill, translated from ``dialect`` (default: ``target``).

    Two changes keep data and reward the same as in the source engine: SQLite's ``INTEGER`` is
    64 bits and its ``REAL`` 8 bytes, so from SQLite every narrower integer type becomes
    ``BIGINT`` and every float ``DOUBLE PRECISION``; and foreign keys are kept as metadata (a
    table comment that the backend's ``tables()`` reads back) instead of constraints, unless
    ``keep_foreign_keys`` (how a test writes a user's database with real keys).

    >>> for stmt in port_ddl(["CREATE TABLE o (id INTEGER PRIMARY KEY, u INT REFERENCES u(id))"],
    ...                      "sqlite", "postgres"):
    ...     print(stmt)
    CREATE TABLE o (id BIGINT PRIMARY KEY, u BIGINT)
    COMMENT ON TABLE o IS 'quill:foreign_keys=[[["u"], "u", ["id"]]]'

    Raises:
        DatabaseError: a statement does not parse.
    """
    read = dialect or target
    out: list[str] = []
    for text in schema_sql:
        try:
            trees = sqlglot.parse(text, read=read)
        except sqlglot.errors.SqlglotError as err:
            raise DatabaseError(f"cannot read the schema statement: {str(err).splitlines()[0]}") from None
        for tree in trees:
            if tree is None:
                continue
            if not (isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema)):
                out.append(text if read == target else tree.sql(target))
                continue
            keys = [] if keep_foreign_keys else take_foreign_keys(tree.this)
            if read == "sqlite":
                for dtype in tree.find_all(exp.DataType):
                    if dtype.this in _NARROW_INTEGERS:
                        dtype.set("this", exp.DataType.Type.BIGINT)
                    elif dtype.this in _SQLITE_REAL:
                        dtype.set("this", exp.DataType.Type.DOUBLE)
            out.append(tree.sql(target))
            if keys:
                out.append(comment_statement(tree.this.this, keys, target))
    return out


def comment_statement(table: exp.Expression, keys: Sequence[ForeignKey], dialect: str) -> str:
    """``COMMENT ON TABLE`` that records ``keys`` for :func:`comment_keys`."""
    raw = [[list(k.columns), k.ref_table, list(k.ref_columns)] for k in keys]
    text = FOREIGN_KEYS_COMMENT + json.dumps(raw)
    return f"COMMENT ON TABLE {table.sql(dialect)} IS {exp.Literal.string(text).sql(dialect)}"


def _names(node: exp.Expression | None) -> tuple[str, ...]:
    if node is None:
        return ()
    return tuple(e.name for e in node.expressions)


def take_foreign_keys(schema: exp.Schema) -> list[ForeignKey]:
    """Remove the foreign-key constraints (inline and table-level) of a CREATE TABLE; return them."""
    keys: list[ForeignKey] = []
    for item in list(schema.expressions):
        if isinstance(item, exp.ForeignKey):
            ref = item.args.get("reference")
            target = ref.this if ref is not None else None
            if isinstance(target, exp.Schema):
                keys.append(ForeignKey(_names(item), target.this.name, _names(target)))
            elif target is not None:
                keys.append(ForeignKey(_names(item), target.name, ()))
            item.pop()
        elif isinstance(item, exp.ColumnDef):
            for constraint in list(item.args.get("constraints") or []):
                kind = constraint.args.get("kind")
                if isinstance(kind, exp.Reference):
                    target = kind.this
                    if isinstance(target, exp.Schema):
                        keys.append(ForeignKey((item.name,), target.this.name, _names(target)))
                    else:
                        keys.append(ForeignKey((item.name,), target.name, ()))
                    constraint.pop()
    return keys


def comment_keys(comment: str | None) -> list[ForeignKey]:
    """The foreign keys a table comment written by :func:`port_ddl` records (none for another comment)."""
    if not comment or not comment.startswith(FOREIGN_KEYS_COMMENT):
        return []
    try:
        raw = json.loads(comment[len(FOREIGN_KEYS_COMMENT) :])
        return [ForeignKey(tuple(c), str(t), tuple(r)) for c, t, r in raw]
    except (ValueError, TypeError):
        return []


def with_foreign_keys(sql: str, keys: Sequence[ForeignKey], dialect: str) -> str:
    """``CREATE TABLE`` text with ``keys`` written back as table-level constraints (for display)."""
    if not keys:
        return sql
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.SqlglotError:
        return sql
    if not isinstance(tree.this, exp.Schema):
        return sql
    for key in keys:
        target: exp.Expression = sqlbuild.table(key.ref_table)
        if key.ref_columns:
            target = exp.Schema(
                this=target, expressions=[exp.to_identifier(c, quoted=True) for c in key.ref_columns]
            )
        tree.this.append(
            "expressions",
            exp.ForeignKey(
                expressions=[exp.to_identifier(c, quoted=True) for c in key.columns],
                reference=exp.Reference(this=target),
            ),
        )
    return tree.sql(dialect)


__all__ = ["FOREIGN_KEYS_COMMENT", "comment_keys", "port_ddl", "take_foreign_keys", "with_foreign_keys"]
