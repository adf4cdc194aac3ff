"""Fingerprints that de-duplicate the data loop's slow queries and rewrites."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import sqlglot
from sqlglot import exp

from quill_env.action_policy import PolicyViolation, SchemaView, parse_action
from quill_env.backends.base import SandboxRules
from quill_env.canonical import fingerprint
from quill_env.dialect import SUITE_DIALECT


def shape_fingerprint(sql: str, schema: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The fingerprint of a query with every literal replaced by a placeholder (near-duplicates).

    >>> shape_fingerprint("SELECT a FROM t WHERE b = 1") == shape_fingerprint("select a from t where b = 7")
    True
    """
    try:
        tree = sqlglot.parse_one(sql, read=SUITE_DIALECT)
    except sqlglot.errors.SqlglotError:
        return fingerprint(sql, schema)
    tree = tree.transform(lambda n: exp.Placeholder() if isinstance(n, exp.Literal) else n)
    return fingerprint(tree, schema)


def action_fingerprint(action: str, view: SchemaView, schema: Mapping[str, Mapping[str, str]]) -> str:
    """A fingerprint of an action: its indexes (by table and columns) and its canonical query."""
    try:
        act = parse_action(action, view, rules=SandboxRules(), dialect=SUITE_DIALECT, max_indexes=64)
    except PolicyViolation:
        return hashlib.sha1(" ".join(action.split()).lower().encode()).hexdigest()[:16]
    indexes = sorted(
        f"{i.table.lower()}({','.join(c.lower() + (' desc' if d else '') for c, d in i.columns)})"
        for i in act.indexes
    )
    text = ";".join([*indexes, fingerprint(act.query, schema)])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


__all__ = ["action_fingerprint", "shape_fingerprint"]
