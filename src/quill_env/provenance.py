"""Literal provenance: a rewrite may not bring in constants that the original does not contain.

A hard-coded answer needs the answer's values in the action's text: literal rows, a primary-key
``IN`` list, an aggregate written as a number, or an exact statistic of the main database used
as a gate (``(SELECT SUM(total) FROM orders) = 123456.78``). None of these can be written with
the original's own constants, so a rewrite may only use:

- the original's literals, and the values of its constant expressions;
- ``NULL``, booleans, ``0``, ``1``, ``-1``, ``2``, ``''`` and the wildcards ``'%'``/``'*'``;
- one arithmetic step between two of those numbers (``id - 102 BETWEEN 0 AND 14`` becomes
  ``id BETWEEN 102 AND 116``), and the neighbours ``n - 1``/``n + 1`` of each;
- numbers written as strings and numeric strings as numbers;
- for a string: its case variants, the pieces of a ``LIKE``/``GLOB`` pattern with wildcards
  added or removed, and each piece's successor (``LIKE 'ab%'`` becomes ``>= 'ab' AND < 'ac'``);
- date bounds: for a year, month, day or timestamp literal, the first instant of that period and
  of the next one, its last day and last second, the previous and next day or second, and a date
  shifted by a number of days the original uses (with the ``'+N days'`` modifiers that say so).

Every *maximal constant sub-expression* of the rewrite (one that reads no column, table or
aggregate) is evaluated by the engine and its value must be in that set, so ``40 + 2`` is judged
by its value and building a number out of allowed ones takes more than one step. Integer
positions in ``ORDER BY``/``GROUP BY`` are positions, not values.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from sqlglot import exp

from quill_env.action_policy import PolicyViolation
from quill_env.dialect import SUITE_DIALECT
from quill_env.reward import Verdict

Value = object
ConstantEvaluator = Callable[[Sequence[exp.Expression]], Sequence[Value]]
"""Evaluates constant expressions with the engine; an item it cannot evaluate is ``_FAILED``."""


class LiteralPolicy(str, Enum):
    """Which constants a rewrite may contain (see :mod:`quill_env.provenance`)."""

    DERIVED = "derived"
    """The original's literals and their documented derivations (the default)."""
    ANY = "any"
    """No check (for studying the other defences alone; never for training)."""


SMALL_NUMBERS = (0, 1, -1, 2)
BASIC_STRINGS = ("", "%", "*")
MAX_CLOSURE_BASE = 40
"""Above this many numeric literals only steps with the small numbers are derived."""

_NON_CONSTANT = (
    exp.Column,
    exp.Star,
    exp.Table,
    exp.Query,
    exp.Subquery,
    exp.AggFunc,
    exp.Window,
    exp.Placeholder,
    exp.Parameter,
    exp.Exists,
)
_VALUE_NODES = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.HexString,
    exp.Binary,
    exp.Unary,
    exp.Func,
    exp.Cast,
    exp.Case,
    exp.Paren,
)
_LITERALS = (exp.Literal, exp.Null, exp.Boolean)


class _Failed:
    def __repr__(self) -> str:
        return "<failed>"


FAILED = _Failed()
"""What a :data:`ConstantEvaluator` returns for an expression it could not evaluate."""


def value_key(value: Value) -> tuple | None:
    """A comparable key of a constant: numbers by value, strings and blobs as they are.

    >>> value_key(100) == value_key(100.0), value_key("100") == value_key(100)
    (True, False)
    >>> value_key(decimal.Decimal("7.0")) == value_key(7)  # DuckDB evaluates 7.0 as a DECIMAL
    True
    """
    if value is None or value is FAILED:
        return None
    value = _plain_number(value)
    if isinstance(value, bool):
        return ("n", int(value))
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ("n", repr(value))
        return ("n", int(value)) if value.is_integer() and abs(value) < 2**53 else ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ("b", bytes(value))
    return ("o", repr(value))


def literal_value(node: exp.Expression) -> Value:
    """The value of a literal node (a ``Literal``, ``NULL`` or boolean), else :data:`FAILED`.

    >>> import sqlglot
    >>> literal_value(sqlglot.parse_one("SELECT 2.50").selects[0])
    2.5
    """
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return int(bool(node.this))
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        return _number(node.this)
    return FAILED


def _number(text: str) -> Value:
    try:
        if text.lower().startswith("0x"):
            return int(text, 16)
        number = float(text)
    except ValueError:
        return FAILED
    if number.is_integer() and not any(c in text for c in ".eE"):
        return int(number)
    return number


@dataclass(frozen=True)
class Constant:
    """A maximal constant sub-expression of a query."""

    node: exp.Expression
    value: Value


def constants(
    tree: exp.Expression, evaluate: ConstantEvaluator | None = None, *, string_columns: Iterable[str] = ()
) -> list[Constant]:
    """The maximal constant sub-expressions of ``tree`` with their values.

    Args:
        tree: a parsed query.
        evaluate: computes compound constants (plain literals are read directly); without it a
            compound constant yields the values of its literals instead.
        string_columns: lower-cased names that SQLite reads as string literals here (double-quoted
            strings that name no column, where the engine allows them).

    >>> import sqlglot
    >>> q = sqlglot.parse_one("SELECT a FROM t WHERE b = 7 AND c IN ('x', 'y') ORDER BY 1")
    >>> [c.value for c in constants(q)]
    [7, 'x', 'y']
    """
    strings = set(string_columns)
    found: list[Constant] = []
    compound: list[exp.Expression] = []

    def is_string_column(node: exp.Expression) -> bool:
        return (
            isinstance(node, exp.Column)
            and not node.table
            and node.this.args.get("quoted")
            and node.name.lower() in strings
        )

    def constant(node: exp.Expression) -> bool:
        if is_string_column(node):
            return True
        if isinstance(node, _NON_CONSTANT) or not isinstance(node, _VALUE_NODES):
            return False
        children = list(node.iter_expressions())
        if isinstance(node, (*_LITERALS, exp.HexString)):
            return True
        return bool(children) and all(
            constant(c) for c in children if not isinstance(c, (exp.DataType, exp.Var, exp.Identifier))
        )

    def position(node: exp.Expression) -> bool:
        holder = node.parent
        if isinstance(holder, exp.Ordered):
            holder = holder.parent
        if not isinstance(holder, (exp.Order, exp.Group)):
            return False
        value = literal_value(node)
        select = holder.parent
        width = len(select.selects) if isinstance(select, exp.Query) else 0
        return isinstance(value, int) and 1 <= value <= max(width, 1)

    def visit(node: exp.Expression) -> None:
        if constant(node):
            if isinstance(node, exp.Literal) and position(node):
                return
            if is_string_column(node):
                found.append(Constant(node, node.name))
            elif isinstance(node, _LITERALS):
                found.append(Constant(node, literal_value(node)))
            else:
                compound.append(node)
            return
        for child in node.iter_expressions():
            visit(child)

    visit(tree)
    if compound:
        if evaluate is not None:
            values = list(evaluate(compound))
            found += [Constant(n, v) for n, v in zip(compound, values)]
        else:
            for node in compound:
                found += [Constant(lit, literal_value(lit)) for lit in node.find_all(*_LITERALS)]
    return found


# --- derivations ---------------------------------------------------------------------------


def _plain_number(value: Value) -> Value:
    """A ``Decimal`` (how DuckDB and PostgreSQL return decimal constants) as the int or float it is."""
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    return value


def _numbers(values: Iterable[Value]) -> set[int | float]:
    out: set[int | float] = set()
    for v in map(_plain_number, values):
        if isinstance(v, bool):
            out.add(int(v))
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out.add(int(v) if float(v).is_integer() and abs(v) < 2**53 else v)
        elif isinstance(v, str):
            n = _number(v.strip()) if v.strip() else FAILED
            if isinstance(n, (int, float)):
                out.add(n)
    return out


def _arithmetic(numbers: set[int | float]) -> set[int | float]:
    base = set(numbers) | set(SMALL_NUMBERS)
    partners = base if len(numbers) <= MAX_CLOSURE_BASE else set(SMALL_NUMBERS)
    out = set(base)
    for a in base:
        for b in partners:
            for x, y in ((a, b), (b, a)):
                out.update((x + y, x - y, x * y))
                if y:
                    out.add(x / y)
                    if isinstance(x, int) and isinstance(y, int):
                        out.add(x // y)
    out |= {n + d for n in list(out) if isinstance(n, int) for d in (-1, 1)}
    return out


_DATE_FORMATS = (
    ("%Y-%m-%d %H:%M:%S", "second"),
    ("%Y-%m-%dT%H:%M:%S", "second"),
    ("%Y-%m-%d %H:%M", "minute"),
    ("%Y-%m-%d", "day"),
    ("%Y-%m", "month"),
    ("%Y", "year"),
)


def _parse_period(text: str) -> tuple[dt.datetime, str] | None:
    text = text.strip()
    for fmt, unit in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt), unit
        except ValueError:
            continue
    return None


def _next_period(start: dt.datetime, unit: str) -> dt.datetime:
    if unit == "year":
        return start.replace(year=start.year + 1)
    if unit == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    step = {"day": dt.timedelta(days=1), "minute": dt.timedelta(minutes=1)}.get(unit, dt.timedelta(seconds=1))
    return start + step


def _date_texts(moment: dt.datetime) -> set[str]:
    return {
        moment.strftime("%Y-%m-%d"),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        moment.strftime("%Y-%m-%dT%H:%M:%S"),
        moment.strftime("%Y-%m"),
        moment.strftime("%Y"),
    }


def _date_derivations(start: dt.datetime, unit: str, day_shifts: set[int]) -> set[str]:
    """Bounds of the period starting at ``start``: its start, the next one's, its last day and second."""
    end = _next_period(start, unit)
    out = _date_texts(start) | _date_texts(end)
    out |= _date_texts(end - dt.timedelta(days=1)) | _date_texts(end - dt.timedelta(seconds=1))
    out |= _date_texts(start - dt.timedelta(days=1)) | _date_texts(start - dt.timedelta(seconds=1))
    out.add(end.strftime("%Y-%m-%d") + " 00:00:00")
    out.add((end - dt.timedelta(days=1)).strftime("%Y-%m-%d") + " 23:59:59")
    for days in day_shifts:
        for moment in (start, end):
            try:
                out |= _date_texts(moment + dt.timedelta(days=days))
            except OverflowError:
                continue
    return out


def _pattern_pieces(text: str) -> set[str]:
    pieces = {text}
    for sep in "%_*?":
        pieces |= {p for piece in list(pieces) for p in piece.split(sep)}
    return {p for p in pieces if p}


def _successor(text: str) -> str:
    return text[:-1] + chr(min(ord(text[-1]) + 1, 0x10FFFF)) if text else text


def _string_derivations(text: str) -> set[str]:
    out = {text, text.lower(), text.upper(), text.strip(), text.capitalize(), text.title()}
    for piece in _pattern_pieces(text):
        for p in {piece, piece.lower(), piece.upper()}:
            out |= {p, f"{p}%", f"%{p}", f"%{p}%", f"{p}*", f"*{p}", f"*{p}*", _successor(p)}
    return out


def _number_texts(number: int | float) -> set[str]:
    if isinstance(number, int) or float(number).is_integer():
        return {str(int(number))}
    return {repr(number), f"{number:g}"}


def allowed_constants(values: Iterable[Value]) -> frozenset[tuple]:
    """The value keys (see :func:`value_key`) a rewrite of a query with ``values`` may use.

    >>> allowed = allowed_constants([102, 14, "2024"])
    >>> all(value_key(v) in allowed for v in (116, 1, "2024-01-01", "2025-01-01", 2024))
    True
    >>> value_key(4711) in allowed
    False
    """
    values = list(values)
    numbers = _numbers(values)
    derived_numbers = _arithmetic(numbers)
    strings: set[str] = set(BASIC_STRINGS)
    day_shifts = {n for n in numbers if isinstance(n, int) and 0 < abs(n) <= 36_600}
    day_shifts |= {-n for n in day_shifts}
    for v in values:
        if isinstance(v, str):
            strings |= _string_derivations(v)
            period = _parse_period(v)
            if period is not None:
                strings |= _date_derivations(*period, day_shifts)
    for n in numbers:
        if isinstance(n, int) and 1000 <= n <= 9999:
            strings |= _date_derivations(dt.datetime(n, 1, 1), "year", day_shifts)
    for n in day_shifts:
        for unit in ("day", "days"):
            strings |= {f"{n:+d} {unit}", f"{n} {unit}"}
    strings |= {t for n in derived_numbers for t in _number_texts(n)}
    keys = {value_key(n) for n in derived_numbers} | {value_key(s) for s in strings}
    keys |= {value_key(n) for n in _numbers(strings)}
    keys.discard(None)
    return frozenset(keys)


class LiteralGuard:
    """Checks rewrites of one original query (the allowed set is derived once).

    Args:
        original: the parsed original query.
        evaluate: computes compound constant expressions with the engine.
        string_columns: names the engine reads as string literals (see :func:`constants`).

    >>> import sqlglot
    >>> guard = LiteralGuard(sqlglot.parse_one("SELECT * FROM t WHERE id - 102 BETWEEN 0 AND 14"))
    >>> guard.check(sqlglot.parse_one("SELECT * FROM t WHERE id BETWEEN 102 AND 116"))
    >>> guard.check(sqlglot.parse_one("SELECT * FROM t WHERE id IN (4711, 4712)"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    quill_env.action_policy.PolicyViolation: the rewrite introduces the constant 4711 that the original ...
    """

    def __init__(
        self,
        original: exp.Expression,
        evaluate: ConstantEvaluator | None = None,
        *,
        string_columns: Iterable[str] = (),
    ) -> None:
        self.evaluate = evaluate
        self.string_columns = tuple(string_columns)
        base = [c.value for c in constants(original, evaluate, string_columns=self.string_columns)]
        base += [literal_value(n) for n in original.find_all(*_LITERALS)]
        self.allowed = allowed_constants(v for v in base if v is not FAILED)

    def check(self, candidate: exp.Expression, *, string_columns: Iterable[str] = ()) -> None:
        """Refuse ``candidate`` if it uses a constant outside the allowed set.

        Args:
            candidate: the parsed rewrite.
            string_columns: names the engine reads as string literals in the rewrite.

        Raises:
            PolicyViolation: ``rejected``, naming the constant (the rewrite's own text, never data).
        """
        for const in constants(candidate, self.evaluate, string_columns=string_columns):
            shown = const.node.sql(SUITE_DIALECT)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            if const.value is FAILED:
                raise PolicyViolation(
                    Verdict.REJECTED,
                    f"the constant expression {shown} cannot be evaluated, so its value cannot be checked",
                )
            key = value_key(const.value)
            if key is None or key in self.allowed:
                continue
            raise PolicyViolation(
                Verdict.REJECTED,
                f"the rewrite introduces the constant {shown} that the original does not contain; "
                "a rewrite may use only the original's literals and simple derivations of them "
                "(hard-coded values are refused)",
            )


__all__ = [
    "FAILED",
    "Constant",
    "LiteralGuard",
    "LiteralPolicy",
    "allowed_constants",
    "constants",
    "literal_value",
    "value_key",
]
