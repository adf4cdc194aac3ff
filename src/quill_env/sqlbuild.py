"""Harness SQL built with sqlglot expressions (never f-strings): quoted names, inserts, counts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from quill_env.dialect import SUITE_DIALECT


def table(name: str) -> exp.Table:
    """A quoted table reference.

    >>> table('order items').sql('sqlite')
    '"order items"'
    """
    return exp.Table(this=exp.to_identifier(name, quoted=True))


def column(name: str) -> exp.Column:
    """A quoted column reference."""
    return exp.Column(this=exp.to_identifier(name, quoted=True))


IGNORE_AS_CONFLICT = frozenset({"postgres"})
"""Dialects that skip a refused row with ``ON CONFLICT DO NOTHING`` instead of ``INSERT OR IGNORE``."""


def insert(name: str, columns: Sequence[str], *, dialect: str = SUITE_DIALECT, ignore: bool = False) -> str:
    """A parameterized INSERT for ``columns`` of table ``name``.

    >>> insert("t", ["a", "b"], ignore=True)
    'INSERT OR IGNORE INTO "t" ("a", "b") VALUES (?, ?)'
    >>> insert("t", ["a"], dialect="postgres", ignore=True)
    'INSERT INTO "t" ("a") VALUES (%s) ON CONFLICT DO NOTHING'
    """
    conflict = dialect in IGNORE_AS_CONFLICT and ignore
    stmt = exp.Insert(
        this=exp.Schema(this=table(name), expressions=[exp.to_identifier(c, quoted=True) for c in columns]),
        expression=exp.Values(expressions=[exp.Tuple(expressions=[exp.Placeholder() for _ in columns])]),
        alternative="IGNORE" if ignore and not conflict else None,
        conflict=exp.OnConflict(action=exp.var("DO NOTHING")) if conflict else None,
    )
    return stmt.sql(dialect)


def insert_row(name: str, width: int, *, dialect: str = SUITE_DIALECT) -> str:
    """A parameterized INSERT of whole rows (``width`` values in column order) into ``name``.

    >>> insert_row("t", 2)
    'INSERT INTO "t" VALUES (?, ?)'
    """
    stmt = exp.Insert(
        this=table(name),
        expression=exp.Values(expressions=[exp.Tuple(expressions=[exp.Placeholder() for _ in range(width)])]),
    )
    return stmt.sql(dialect)


def count_rows(name: str, dialect: str = SUITE_DIALECT) -> str:
    """``SELECT COUNT(*) FROM name``.

    >>> count_rows("users")
    'SELECT COUNT(*) FROM "users"'
    """
    return exp.select(exp.Count(this=exp.Star())).from_(table(name)).sql(dialect)
