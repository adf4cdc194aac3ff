"""The query's literals, and values derived from them that sit on a comparison's edge.

:func:`query_literals` finds the constants each column is compared with. A double-quoted name
that is no column in scope is a string to SQLite (``WHERE name = "Ada"``) though sqlglot reads
it as an identifier, so it counts as a string literal here. The helpers derive the values a
variant plants: a literal's neighbours in its own domain (dates stay dates), strings that
contain a literal or differ from it only in case or a trailing space, and strings that match
a LIKE pattern without being the pattern itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

import numpy as np
from sqlglot import exp

from quill_env.backends.base import TableInfo
from quill_env.dialect import SUITE_DIALECT
from quill_env.variants.query import ColumnRef, QueryModel, is_string_identifier, number
from quill_env.variants.schema import Schema

_COMPARED = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.Glob)

DATE_FORMATS = (("%Y-%m-%d", dt.timedelta(days=1)), ("%Y-%m-%d %H:%M:%S", dt.timedelta(seconds=1)))
"""Text formats of dates and timestamps, with the step of a neighbour."""


def query_literals(
    sql: str, tables: Mapping[str, TableInfo], dialect: str = SUITE_DIALECT
) -> dict[tuple[str, str], list[object]]:
    """Literals the query compares columns with, by ``(table, column)``.

    Columns resolve through aliases, derived tables and CTEs; a double-quoted name that is no
    column in scope is the string SQLite takes it for.

    Args:
        sql: the query (one that does not parse gives ``{}``).
        tables: the database's tables by lower-cased name.
        dialect: the sqlglot dialect of ``sql``.

    Returns:
        The literals of each compared column, in the order they appear, without repeats.

    >>> from quill_env.backends.base import ColumnInfo
    >>> cols = (ColumnInfo("total", "REAL", False, 0), ColumnInfo("note", "TEXT", False, 0))
    >>> t = TableInfo("orders", cols, (), (), 0, "")
    >>> query_literals('SELECT * FROM orders o WHERE o.total >= 100 AND note = "rush"', {"orders": t})
    {('orders', 'total'): [100], ('orders', 'note'): ['rush']}
    """
    model = QueryModel(sql, Schema(tables), dialect)
    if model.tree is None:
        return {}
    found: dict[tuple[str, str], list[object]] = {}
    aliases = {t.alias_or_name.lower(): t.name.lower() for t in model.tree.find_all(exp.Table)}

    def owners(col: exp.Column) -> list[tuple[str, str]]:
        ref = model.resolve(col)
        if isinstance(ref, ColumnRef):
            return [(ref.node.table, ref.column)]
        if ref is not None:
            return []
        if col.table:
            name = aliases.get(col.table.lower(), col.table.lower())
            candidates = [name] if name in tables else []
        else:
            candidates = [
                k for k, t in tables.items() if any(c.lower() == col.name.lower() for c in t.column_names)
            ]
        out = []
        for key in candidates:
            real = next((c for c in tables[key].column_names if c.lower() == col.name.lower()), None)
            if real is not None:
                out.append((tables[key].name, real))
        return out

    def add(col: exp.Expression, lit: exp.Expression | None) -> None:
        if (
            not isinstance(col, exp.Column)
            or lit is None
            or (is_string_identifier(col) and model.resolve(col) is None)
        ):
            return
        value = literal_value(lit, model)
        if value is None:
            return
        for key in owners(col):
            bucket = found.setdefault(key, [])
            if value not in bucket:
                bucket.append(value)

    for node in model.tree.find_all(*_COMPARED):
        add(node.left, node.right)
        add(node.right, node.left)
    for node in model.tree.find_all(exp.Between):
        add(node.this, node.args.get("low"))
        add(node.this, node.args.get("high"))
    for node in model.tree.find_all(exp.In):
        for item in node.expressions:
            add(node.this, item)
    return found


def literal_value(node: exp.Expression, model: QueryModel | None = None) -> object:
    """The value of a literal: a number, a string, or a double-quoted name that is no column.

    >>> import sqlglot
    >>> [literal_value(sqlglot.parse_one(text)) for text in ("'x'", '"x"', "-2")]
    ['x', 'x', -2]
    """
    if isinstance(node, exp.Column) and is_string_identifier(node):
        if model is None or model.resolve(node) is None:
            return node.name
        return None
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    return number(node)


def expression_literals(expr: exp.Expression) -> list[object]:
    """Every literal inside ``expr`` (double-quoted names that are no column included), in order.

    >>> import sqlglot
    >>> expression_literals(sqlglot.parse_one("x - 741 BETWEEN 0 AND 56"))
    [741, 0, 56]
    """
    out: list[object] = []
    for node in expr.walk(bfs=False):
        if isinstance(node, exp.Neg) or (
            isinstance(node, exp.Literal) and not isinstance(node.parent, exp.Neg)
        ):
            value = literal_value(node)
        elif isinstance(node, exp.Column) and is_string_identifier(node):
            value = node.name
        else:
            continue
        if value is not None and value not in out:
            out.append(value)
    return out


def parse_date(value: str) -> tuple[dt.datetime, str, dt.timedelta] | None:
    """``value`` as a date or timestamp with its format and step, or ``None``."""
    for fmt, step in DATE_FORMATS:
        try:
            return dt.datetime.strptime(value, fmt), fmt, step
        except ValueError:
            continue
    return None


def neighbours(value: object) -> list[object]:
    """The value itself and its immediate neighbours in its own domain (dates stay dates).

    >>> neighbours(10), neighbours("2024-01-31")
    ([10, 9, 11], ['2024-01-31', '2024-01-30', '2024-02-01'])
    """
    if isinstance(value, bool):
        return [value]
    if isinstance(value, int):
        return [value, value - 1, value + 1]
    if isinstance(value, float):
        return [value, round(value - 0.01, 10), round(value + 0.01, 10)]
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is not None:
            when, fmt, step = parsed
            return [value, (when - step).strftime(fmt), (when + step).strftime(fmt)]
    return [value]


def overlays(literal: str, observed: str) -> Iterator[str]:
    """``observed`` with ``literal`` written over it at every position where it fits.

    A literal compared with a function of a column (``strftime('%m', d) = '02'``,
    ``substr(sku, 1, 3) = 'ABC'``) is met by one of these while the value keeps its shape.

    >>> list(overlays("02", "2019-07-15"))[:3]
    ['0219-07-15', '2029-07-15', '2002-07-15']
    """
    if len(literal) > len(observed):
        return
    for i in range(len(observed) - len(literal) + 1):
        candidate = observed[:i] + literal + observed[i + len(literal) :]
        if candidate != observed:
            yield candidate


def containing(literal: str, observed: list[str], rng: np.random.Generator) -> list[str]:
    """Strings near ``literal``: containing it, in other cases, with a trailing or leading space.

    Each tells an equality from a pattern match, a case-sensitive comparison from a
    case-insensitive one, or a trimmed value from an untrimmed one.

    >>> containing("ab", [], np.random.default_rng(0))
    ['ab', 'AB', 'Ab', 'ab ', ' ab', 'xab', 'abx', 'x ab y']
    """
    out = [literal, literal.upper(), literal.lower(), literal.title(), literal.swapcase()]
    out += [literal + " ", " " + literal, "x" + literal, literal + "x", "x " + literal + " y"]
    if observed:
        host = observed[int(rng.integers(len(observed)))]
        cut = int(rng.integers(len(host) + 1))
        out += [host[:cut] + literal + host[cut:], literal + " " + host]
    return list(dict.fromkeys(s for s in out if s != "" or literal == ""))


def like_matches(pattern: str, observed: list[str], rng: np.random.Generator) -> list[str]:
    """Strings that match the LIKE ``pattern`` non-trivially, and near misses.

    ``%`` becomes nothing, one letter, or a piece of an observed value; ``_`` a letter. The
    near misses drop the pattern's last literal character, so a rewrite that widens or narrows
    the pattern is told apart.

    >>> like_matches("%ab%", [], np.random.default_rng(0))[:4]
    ['ab', 'zabz', 'ZABZ', 'qabq']
    """
    fill = observed[int(rng.integers(len(observed)))][:6] if observed else "q"

    def instantiate(wild: str) -> str:
        return "".join(wild if ch == "%" else "k" if ch == "_" else ch for ch in pattern)

    matches = [instantiate(""), instantiate("z"), instantiate("z").upper(), instantiate(fill)]
    plain = pattern.replace("%", "").replace("_", "")
    misses = [plain[:-1]] if plain else []
    misses += [pattern.replace("%", "").replace("_", "")] if "_" in pattern else []
    return list(dict.fromkeys(s for s in matches + misses))


__all__ = [
    "containing",
    "expression_literals",
    "like_matches",
    "literal_value",
    "neighbours",
    "overlays",
    "parse_date",
    "query_literals",
]
