"""Property and unit tests of quill_env.compare (multisets, ties, value normalization)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quill_env.compare import OrderPolicy, compare_rows, tie_segments, value_key, values_equal

SETTINGS = settings(max_examples=200, deadline=None)

# Floats with few significant digits (multiples of 1/8) keep the permutation properties exact;
# the tolerance properties and the regression tests at the bottom use arbitrary floats.
safe_floats = st.integers(-(10**6), 10**6).map(lambda n: n / 8)
sql_values = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40),
    safe_floats,
    st.text(max_size=4),
    st.binary(max_size=3),
)


@st.composite
def row_lists(draw: st.DrawFn, min_size: int = 0, max_size: int = 12) -> list[tuple]:
    width = draw(st.integers(1, 3))
    row = st.tuples(*[sql_values] * width)
    return draw(st.lists(row, min_size=min_size, max_size=max_size))


# --- multisets (OrderPolicy.IGNORE) ---------------------------------------------------------


@SETTINGS
@given(st.data())
def test_permutation_is_equal_under_ignore(data: st.DataObject) -> None:
    rows = data.draw(row_lists())
    shuffled = data.draw(st.permutations(rows))
    assert compare_rows(rows, shuffled, order=OrderPolicy.IGNORE).equal


@SETTINGS
@given(row_lists(min_size=1), st.data())
def test_dropping_one_duplicate_is_unequal(rows: list[tuple], data: st.DataObject) -> None:
    dup = data.draw(st.sampled_from(rows))
    with_dup = [*rows, dup]
    result = compare_rows(with_dup, rows)
    assert not result.equal
    assert "row count differs" in result.reason
    assert not compare_rows(rows, with_dup).equal


@SETTINGS
@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_multiplicity_matters_at_equal_length(a: int, b: int) -> None:
    if a == b:
        return
    assert not compare_rows([(a,), (a,), (b,)], [(a,), (b,), (b,)]).equal
    assert compare_rows([(a,), (a,), (b,)], [(b,), (a,), (a,)]).equal


@SETTINGS
@given(row_lists(min_size=1), st.data())
def test_changing_one_value_is_unequal(rows: list[tuple], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    j = data.draw(st.integers(0, len(rows[i]) - 1))
    marker = "\x00quill-marker"  # text the strategy cannot produce (max_size=4)
    changed = list(rows)
    changed[i] = (*rows[i][:j], marker, *rows[i][j + 1 :])
    assert not compare_rows(rows, changed).equal


# --- value normalization --------------------------------------------------------------------


@pytest.mark.parametrize("a", [None, 0, ""])
@pytest.mark.parametrize("b", [None, 0, ""])
def test_null_zero_and_empty_string_are_all_different(a: object, b: object) -> None:
    same = a is b or (a == b and type(a) is type(b))
    assert values_equal(a, b) is same
    assert (value_key(a) == value_key(b)) is same
    assert compare_rows([(a,)], [(b,)]).equal is same


def test_empty_like_values_keys() -> None:
    assert values_equal(0, 0.0)
    assert not values_equal(None, 0.0)
    assert not values_equal("", b"")
    assert not values_equal("0", 0)
    assert not values_equal("NULL", None)
    assert value_key(None) < value_key(0) < value_key("") < value_key(b"")


@SETTINGS
@given(st.integers(-(2**53) + 1, 2**53 - 1))
def test_int_equals_same_float(n: int) -> None:
    assert values_equal(n, float(n))
    assert values_equal(float(n), n)
    assert value_key(n) == value_key(float(n))
    assert compare_rows([(n, "x")], [(float(n), "x")]).equal


@SETTINGS
@given(st.integers(-(10**12), 10**12))
def test_int_never_equals_its_text(n: int) -> None:
    assert not values_equal(n, str(n))
    assert value_key(n) != value_key(str(n))


finite_magnitudes = st.floats(min_value=1e-3, max_value=1e15, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(finite_magnitudes, st.booleans())
def test_float_within_relative_1e12_is_equal(x: float, negative: bool) -> None:
    x = -x if negative else x
    y = x * (1 + 1e-12)
    assert values_equal(x, y)
    assert compare_rows([(x,)], [(y,)]).equal


@SETTINGS
@given(finite_magnitudes, st.booleans())
def test_float_differing_by_relative_1e6_is_unequal(x: float, negative: bool) -> None:
    x = -x if negative else x
    y = x * (1 + 1e-6)
    assert not values_equal(x, y)
    assert not compare_rows([(x,)], [(y,)]).equal


@SETTINGS
@given(sql_values, sql_values)
def test_values_equal_is_symmetric_and_reflexive(a: object, b: object) -> None:
    assert values_equal(a, a)
    assert values_equal(a, b) == values_equal(b, a)
    if values_equal(a, b):
        assert value_key(a) == value_key(b)


@SETTINGS
@given(st.lists(sql_values, max_size=20))
def test_value_key_sorts_mixed_types(values: list[object]) -> None:
    keys = sorted(value_key(v) for v in values)  # never raises TypeError
    ranks = [k[0] for k in keys]
    assert ranks == sorted(ranks)


# --- tie segments and OrderPolicy.TIES / STRICT --------------------------------------------


@st.composite
def ordered_with_ties(draw: st.DrawFn) -> tuple[list[tuple], list[tuple[int, int]]]:
    """Rows (key, payload) sorted by a key with many ties; payloads are unique."""
    keys = sorted(draw(st.lists(st.integers(0, 4), min_size=2, max_size=14)))
    rows = [(k, i) for i, k in enumerate(keys)]
    return rows, tie_segments([(k,) for k in keys])


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from([None, "a", 1.0])), max_size=20))
def test_tie_segments_partition_into_runs(keys: list[tuple]) -> None:
    segments = tie_segments(keys)
    if not keys:
        assert segments == []
        return
    assert segments[0][0] == 0 and segments[-1][1] == len(keys)
    for (_, end), (start, _) in zip(segments, segments[1:]):
        assert end == start
    for start, end in segments:
        assert start < end
        assert all(value_key(keys[i]) == value_key(keys[start]) for i in range(start, end))
    for (_, end), (start, _) in zip(segments, segments[1:]):
        assert value_key(keys[end - 1]) != value_key(keys[start])


def test_tie_segments_normalizes_values() -> None:
    assert tie_segments([(1,), (1.0,), (None,), (None,), ("1",)]) == [(0, 2), (2, 4), (4, 5)]
    assert tie_segments([]) == []


@SETTINGS
@given(ordered_with_ties(), st.data())
def test_permutation_within_ties_is_equal(case: tuple, data: st.DataObject) -> None:
    rows, segments = case
    shuffled: list[tuple] = []
    for start, end in segments:
        shuffled += data.draw(st.permutations(rows[start:end]))
    assert compare_rows(rows, shuffled, order=OrderPolicy.TIES, segments=segments).equal


@SETTINGS
@given(ordered_with_ties(), st.data())
def test_swap_across_segments_is_unequal(case: tuple, data: st.DataObject) -> None:
    rows, segments = case
    if len(segments) < 2:
        return
    a, b = data.draw(st.lists(st.sampled_from(segments), min_size=2, max_size=2, unique=True))
    i = data.draw(st.integers(a[0], a[1] - 1))
    j = data.draw(st.integers(b[0], b[1] - 1))
    swapped = list(rows)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert compare_rows(rows, swapped, order=OrderPolicy.IGNORE).equal
    result = compare_rows(rows, swapped, order=OrderPolicy.TIES, segments=segments)
    assert not result.equal
    assert "row order differs" in result.reason


@SETTINGS
@given(row_lists(min_size=2), st.data())
def test_strict_requires_identical_order(rows: list[tuple], data: st.DataObject) -> None:
    assert compare_rows(rows, list(rows), order=OrderPolicy.STRICT).equal
    shuffled = data.draw(st.permutations(rows))
    same_sequence = all(all(values_equal(x, y) for x, y in zip(r, s)) for r, s in zip(rows, shuffled))
    assert compare_rows(rows, shuffled, order=OrderPolicy.STRICT).equal is same_sequence


@SETTINGS
@given(ordered_with_ties())
def test_ties_without_segments_is_strict(case: tuple) -> None:
    rows, _ = case
    reversed_rows = rows[::-1]
    assert not compare_rows(rows, reversed_rows, order=OrderPolicy.TIES, segments=None).equal


# --- plain unit tests -------------------------------------------------------------------------


def test_column_count_checked_even_when_empty() -> None:
    result = compare_rows([], [], n_expected_columns=2, n_actual_columns=3)
    assert not result.equal
    assert "column count differs" in result.reason
    assert compare_rows([], [], n_expected_columns=2, n_actual_columns=2).equal


def test_column_count_from_rows() -> None:
    result = compare_rows([(1, 2)], [(1,)])
    assert not result.equal and "column count differs" in result.reason


def test_reasons_and_bool() -> None:
    assert bool(compare_rows([(1,)], [(1,)])) is True
    result = compare_rows([(1,)], [(2,)])
    assert bool(result) is False
    assert result.reason == "rows differ: expected (1,), got (2,)"
    assert compare_rows([(1,), (2,)], [(2,), (1,)], order=OrderPolicy.STRICT).reason.startswith(
        "row order differs at row 0"
    )


def test_rel_tol_parameter() -> None:
    assert compare_rows([(100.0,)], [(100.5,)], rel_tol=0.01).equal
    assert not compare_rows([(100.0,)], [(100.5,)]).equal


def test_bytes_and_text_differ() -> None:
    assert values_equal(b"ab", bytearray(b"ab"))
    assert values_equal(b"ab", memoryview(b"ab"))
    assert not values_equal(b"ab", "ab")


def test_permutation_of_close_floats_is_equal() -> None:
    a, b = 1.0000000001, 1.000000004
    assert compare_rows([(a,), (b,)], [(b,), (a,)]).equal


def test_float_noise_across_rounding_boundary_is_equal() -> None:
    x = 1.0000000049998
    y = x * (1 + 1e-12)
    assert values_equal(x, y)
    assert compare_rows([(x, "z"), (1.00000001, "a")], [(y, "z"), (1.00000001, "a")]).equal
