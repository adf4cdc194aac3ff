"""Sargable filters: a function or arithmetic on a column becomes a range on the column itself."""

from __future__ import annotations

import datetime as dt
import re

from sqlglot import exp

from quill_agents.heuristic.rules.rule_context import Context, finish, top_select
from quill_agents.heuristic.sqlutil import int_literal, number, owner, sources

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


_MONTH = re.compile(r"^\d{4}-\d{2}$")


_YEAR = re.compile(r"^\d{4}$")


def date_function_to_range(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``date(c) = 'YYYY-MM-DD'`` / ``strftime('%Y'|'%Y-%m', c) = ...`` -> a range on ``c``.

    Applies to columns of text (or date-named numeric) affinity holding ISO-8601 text, where a
    day, month or year is exactly a half-open range of the text's sort order. Columns declared
    INTEGER or REAL (Julian days, Unix times) are left alone.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None or select.args.get("where") is None:
        return None
    changed = False
    for term in list(select.args["where"].find_all(exp.EQ)):
        if term.find_ancestor(exp.Select) is not select:
            continue
        found = _date_call(term.this, term.expression) or _date_call(term.expression, term.this)
        if found is None:
            continue
        col, lo, hi = found
        meta = _column(col, select, ctx)
        if meta is None or not (
            meta.affinity == "TEXT"
            or (meta.affinity == "NUMERIC" and ("DATE" in meta.type or "TIME" in meta.type))
        ):
            continue
        rng = exp.And(
            this=exp.GTE(this=col.copy(), expression=exp.Literal.string(lo)),
            expression=exp.LT(this=col.copy(), expression=exp.Literal.string(hi)),
        )
        parent = term.parent
        term.replace(rng if isinstance(parent, (exp.Where, exp.And)) else exp.Paren(this=rng))
        changed = True
    return finish(tree, changed)


def _column(col: exp.Column, select: exp.Select, ctx: Context):
    srcs = sources(select, ctx.catalog)
    alias = owner(col, srcs)
    table = srcs.get(alias) if alias else None
    return table.column(col.name) if table is not None else None


def _date_call(call: exp.Expression, value: exp.Expression) -> tuple[exp.Column, str, str] | None:
    if not (isinstance(value, exp.Literal) and value.is_string):
        return None
    text = value.this
    if isinstance(call, exp.Date) and set(k for k, v in call.args.items() if v) == {"this"}:
        if isinstance(call.this, exp.Column) and _DAY.match(text):
            return call.this, text, _next_day(text)
        return None
    if isinstance(call, exp.TimeToStr) and isinstance(call.this, exp.TsOrDsToTimestamp):
        col, fmt = call.this.this, call.args.get("format")
        extra = {k for k, v in call.args.items() if v} - {"this", "format"}
        if extra or not isinstance(col, exp.Column) or not isinstance(fmt, exp.Literal):
            return None
        if fmt.this == "%Y" and _YEAR.match(text):
            return col, f"{text}-01-01", f"{int(text) + 1:04d}-01-01"
        if fmt.this == "%Y-%m" and _MONTH.match(text) and 1 <= int(text[5:]) <= 12:
            y, m = int(text[:4]), int(text[5:])
            return col, f"{text}-01", f"{y + (m == 12):04d}-{m % 12 + 1:02d}-01"
        if fmt.this == "%Y-%m-%d" and _DAY.match(text):
            return col, text, _next_day(text)
    return None


def _next_day(day: str) -> str:
    try:
        return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    except ValueError:
        return "9999-99-99"  # not a real day: date() never returns it, so nothing matches


def arithmetic_to_range(tree: exp.Expression, ctx: Context) -> exp.Expression | None:
    """``id - k BETWEEN a AND b`` -> ``id BETWEEN a + k AND b + k`` on an INTEGER PRIMARY KEY.

    Only the rowid alias is guaranteed to hold integers (never NULL, never text), so the shift
    is exact there. Comparisons (``id + k > a``) are shifted the same way.
    """
    tree = tree.copy()
    select = top_select(tree)
    if select is None or select.args.get("where") is None:
        return None
    changed = False
    srcs = sources(select, ctx.catalog)
    for node in list(select.args["where"].find_all(exp.Between, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ)):
        if node.find_ancestor(exp.Select) is not select:
            continue
        side = node.this
        if not isinstance(side, (exp.Sub, exp.Add)) or not isinstance(side.this, exp.Column):
            continue
        k = int_literal(side.expression)
        col = side.this
        alias = owner(col, srcs)
        table = srcs.get(alias) if alias else None
        if k is None or table is None or table.rowid_alias != col.name.lower():
            continue
        shift = k if isinstance(side, exp.Sub) else -k
        bounds = ("low", "high") if isinstance(node, exp.Between) else ("expression",)
        values = [int_literal(node.args[b]) for b in bounds]
        if any(v is None for v in values):
            continue
        new = node.copy()
        new.set("this", col.copy())
        for b, v in zip(bounds, values):
            new.set(b, number(v + shift))
        node.replace(new)
        changed = True
    return finish(tree, changed)
