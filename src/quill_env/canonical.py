"""Canonical forms of queries: the ``unchanged`` verdict and dataset de-duplication.

Two differently written forms of one query (aliases, case, qualification, redundant parentheses)
map to the same canonical SQL: ``qualify`` with canonical table aliases, then ``normalize`` and
``simplify`` (sqlglot's optimizer rules). Queries the optimizer cannot qualify fall back to
sqlglot's normalized rendering.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.normalize import normalize
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.simplify import simplify

from quill_env.dialect import SUITE_DIALECT

SchemaMap = Mapping[str, Mapping[str, str]]
"""Table -> column -> type, as sqlglot's optimizer takes it."""


def canonical_sql(
    sql: str | exp.Expression, schema: SchemaMap | None = None, dialect: str = SUITE_DIALECT
) -> str:
    """The canonical text of a query.

    >>> s = {"users": {"id": "INT", "name": "TEXT"}}
    >>> canonical_sql("select name from users u where u.id = 1", s) == canonical_sql(
    ...     "SELECT x.name FROM users AS x WHERE (x.id = 1)", s)
    True
    """
    try:
        tree = sqlglot.parse_one(sql, read=dialect) if isinstance(sql, str) else sql.copy()
    except (ParseError, TokenError):
        return " ".join(str(sql).split()).lower()
    try:
        tree = qualify(
            tree,
            schema=dict(schema) if schema else None,
            dialect=dialect,
            canonicalize_table_aliases=True,
            quote_identifiers=False,
            validate_qualify_columns=False,
        )
        tree = simplify(normalize(tree))
    except (OptimizeError, SqlglotError, RecursionError, KeyError, ValueError):
        pass
    return tree.sql(dialect=dialect, normalize=True)


def fingerprint(
    sql: str | exp.Expression, schema: SchemaMap | None = None, dialect: str = SUITE_DIALECT
) -> str:
    """A short hash of :func:`canonical_sql` (dataset de-duplication key)."""
    return hashlib.sha1(canonical_sql(sql, schema, dialect).encode()).hexdigest()[:16]
