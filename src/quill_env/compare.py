"""Comparing result sets: multisets, order up to ties, and value normalization (DESIGN §3).

Values are compared with type normalization (``1 == 1.0``; ``NULL`` equals only ``NULL``; text
never equals a number) and a relative float tolerance. Order is checked by *tie segments*: the
original result is cut into runs of rows with equal ORDER BY keys, and the candidate must hold
the same multiset of rows in every run, so rows may permute only within ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

Row = tuple
Segments = Sequence[tuple[int, int]]

_BIG = 2**53


class OrderPolicy(str, Enum):
    """How strictly row order is compared."""

    IGNORE = "ignore"
    """Compare multisets only."""
    TIES = "ties"
    """Require the original's order; rows may permute within ties of the ORDER BY keys."""
    STRICT = "strict"
    """Require exactly the original's row sequence."""


class Mismatch(str, Enum):
    """What kind of difference a comparison found (data-free: safe to show an agent)."""

    COLUMNS = "columns"
    """The column counts differ."""
    ROW_COUNT = "row_count"
    """The row counts differ."""
    VALUES = "values"
    """Same number of rows, different rows."""
    ORDER = "order"
    """The same rows in an order the original's ORDER BY does not allow."""

    @property
    def description(self) -> str:
        """A short phrase for messages."""
        return {
            "columns": "the column count differs",
            "row_count": "the row count differs",
            "values": "the rows' values differ",
            "order": "the row order differs",
        }[self.value]


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing a candidate's rows with the original's.

    ``kind`` says what differs without any value; ``reason`` shows an example with the values,
    for people comparing their own results (never for an agent: it carries data).
    """

    equal: bool
    reason: str = ""
    kind: Mismatch | None = None

    def __bool__(self) -> bool:
        return self.equal


def value_key(value: object) -> tuple:
    """A sortable, hashable key for one SQL value with type normalization.

    >>> value_key(1) == value_key(1.0)
    True
    >>> value_key(None) < value_key(0) < value_key("") < value_key(b"")
    True
    """
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int):
        return (1, value)
    if isinstance(value, float):
        if math.isnan(value):
            return (0, 0)
        if value.is_integer() and abs(value) < _BIG:
            return (1, int(value))
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return (3, bytes(value))
    return (4, repr(value))


def row_key(row: Sequence[object]) -> tuple:
    """The key of a whole row (a tuple of :func:`value_key`)."""
    return tuple(value_key(v) for v in row)


def values_equal(a: object, b: object, rel_tol: float = 1e-9, abs_tol: float = 1e-12) -> bool:
    """Whether two SQL values are equal under Quill's normalization.

    >>> values_equal(1, 1.0), values_equal(None, 0), values_equal("", None), values_equal(0.1 + 0.2, 0.3)
    (True, False, False, True)
    >>> values_equal("1", 1)
    False
    """
    if a is None or b is None:
        return a is None and b is None
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)
    if isinstance(a, num) or isinstance(b, num):
        return False
    if isinstance(a, (bytes, bytearray, memoryview)) or isinstance(b, (bytes, bytearray, memoryview)):
        return (
            isinstance(a, (bytes, bytearray, memoryview))
            and isinstance(b, (bytes, bytearray, memoryview))
            and bytes(a) == bytes(b)
        )
    return a == b


def _rows_equal(a: Sequence[object], b: Sequence[object], rel_tol: float) -> bool:
    return all(values_equal(x, y, rel_tol) for x, y in zip(a, b))


def _multiset_diff(
    expected: Sequence[Row], actual: Sequence[Row], rel_tol: float, window: int = 32
) -> tuple[Row, Row] | None:
    """None when equal as multisets (floats within tolerance), else a differing pair.

    Both sides are sorted by exact value; rows that are equal within the float tolerance end up
    near each other, so each expected row is matched with an unmatched actual row within a small
    window of its sorted position.
    """
    exp_sorted = sorted(expected, key=row_key)
    act_sorted = sorted(actual, key=row_key)
    if all(_rows_equal(e, a, rel_tol) for e, a in zip(exp_sorted, act_sorted)):
        return None
    used = [False] * len(act_sorted)
    for i, e in enumerate(exp_sorted):
        lo, hi = max(0, i - window), min(len(act_sorted), i + window + 1)
        match = next(
            (j for j in range(lo, hi) if not used[j] and _rows_equal(e, act_sorted[j], rel_tol)), None
        )
        if match is None:
            return e, act_sorted[min(i, len(act_sorted) - 1)]
        used[match] = True
    return None


def _fmt(row: Row, limit: int = 120) -> str:
    text = repr(tuple(row))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def compare_rows(
    expected: Sequence[Row],
    actual: Sequence[Row],
    *,
    n_expected_columns: int | None = None,
    n_actual_columns: int | None = None,
    order: OrderPolicy = OrderPolicy.IGNORE,
    segments: Segments | None = None,
    rel_tol: float = 1e-9,
) -> Comparison:
    """Compare a candidate's rows with the original's.

    Args:
        expected: the original query's rows, in the order the engine returned them.
        actual: the candidate's rows.
        n_expected_columns: column count of the original (checked even for empty results).
        n_actual_columns: column count of the candidate.
        order: how strictly to compare row order.
        segments: for ``OrderPolicy.TIES``, the ``[start, end)`` tie runs of ``expected``;
            ``None`` means every row is its own run (no ties).
        rel_tol: relative tolerance for floating-point values.

    Returns:
        A :class:`Comparison` whose ``reason`` says what differs.

    >>> compare_rows([(1, "a"), (2, "b")], [(2, "b"), (1.0, "a")]).equal
    True
    >>> compare_rows([(1,), (1,)], [(1,)]).reason
    'row count differs: expected 2, got 1'
    >>> compare_rows([(1,), (2,)], [(2,), (1,)], order=OrderPolicy.TIES).equal
    False
    >>> compare_rows([(1, "x"), (1, "y")], [(1, "y"), (1, "x")], order=OrderPolicy.TIES,
    ...              segments=[(0, 2)]).equal
    True
    """
    if (
        n_expected_columns is not None
        and n_actual_columns is not None
        and n_expected_columns != n_actual_columns
    ):
        return Comparison(
            False,
            f"column count differs: expected {n_expected_columns}, got {n_actual_columns}",
            Mismatch.COLUMNS,
        )
    if len(expected) != len(actual):
        return Comparison(
            False, f"row count differs: expected {len(expected)}, got {len(actual)}", Mismatch.ROW_COUNT
        )
    if expected and len(expected[0]) != len(actual[0]):
        return Comparison(
            False,
            f"column count differs: expected {len(expected[0])}, got {len(actual[0])}",
            Mismatch.COLUMNS,
        )
    diff = _multiset_diff(expected, actual, rel_tol)
    if diff is not None:
        return Comparison(
            False, f"rows differ: expected {_fmt(diff[0])}, got {_fmt(diff[1])}", Mismatch.VALUES
        )
    if order is OrderPolicy.IGNORE or len(expected) < 2:
        return Comparison(True)
    if order is OrderPolicy.STRICT or segments is None:
        for i, (e, a) in enumerate(zip(expected, actual)):
            if not _rows_equal(e, a, rel_tol):
                return Comparison(
                    False, f"row order differs at row {i}: expected {_fmt(e)}, got {_fmt(a)}", Mismatch.ORDER
                )
        return Comparison(True)
    for start, end in segments:
        if end - start == 1:
            if not _rows_equal(expected[start], actual[start], rel_tol):
                return Comparison(
                    False,
                    f"row order differs at row {start}: expected {_fmt(expected[start])}, "
                    f"got {_fmt(actual[start])}",
                    Mismatch.ORDER,
                )
        elif _multiset_diff(expected[start:end], actual[start:end], rel_tol) is not None:
            return Comparison(False, f"row order differs within rows {start}..{end - 1}", Mismatch.ORDER)
    return Comparison(True)


def tie_segments(keys: Sequence[Sequence[object]]) -> list[tuple[int, int]]:
    """Cut a sequence of ORDER BY key tuples into ``[start, end)`` runs of equal keys.

    >>> tie_segments([(1,), (1,), (2,), (3,), (3,)])
    [(0, 2), (2, 3), (3, 5)]
    """
    segments: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or row_key(keys[i]) != row_key(keys[start]):
            segments.append((start, i))
            start = i
    return segments if keys else []
