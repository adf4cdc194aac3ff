"""The literal-provenance rule and the unmetered-function rule (quill_env.provenance, .unmetered)."""

from __future__ import annotations

import apsw
import pytest
import sqlglot

from quill_env import Verdict, evaluate
from quill_env.action_policy import PolicyViolation
from quill_env.provenance import LiteralGuard
from quill_env.unmetered import check_unmetered


def q(sql: str):
    return sqlglot.parse_one(sql, read="sqlite")


ALLOWED = [
    # (original, rewrite): documented derivations
    ("SELECT * FROM t WHERE id - 102 BETWEEN 0 AND 14", "SELECT * FROM t WHERE id BETWEEN 102 AND 116"),
    (
        "SELECT * FROM t WHERE strftime('%Y', d) = '2024'",
        "SELECT * FROM t WHERE d >= '2024-01-01' AND d < '2025-01-01'",
    ),
    (
        "SELECT * FROM t WHERE strftime('%Y-%m', d) = '2025-12'",
        "SELECT * FROM t WHERE d >= '2025-12-01' AND d < '2026-01-01'",
    ),
    (
        "SELECT * FROM t WHERE date(d) = '2016-02-15'",
        "SELECT * FROM t WHERE d >= '2016-02-15' AND d < '2016-02-16'",
    ),
    (
        "SELECT * FROM t WHERE date(d) = '2016-02-15'",
        "SELECT * FROM t WHERE d BETWEEN '2016-02-15 00:00:00' AND '2016-02-15 23:59:59'",
    ),
    ("SELECT * FROM t WHERE substr(name, 1, 3) = 'abc'", "SELECT * FROM t WHERE name LIKE 'abc%'"),
    ("SELECT * FROM t WHERE name LIKE 'ab%'", "SELECT * FROM t WHERE name >= 'ab' AND name < 'ac'"),
    ("SELECT * FROM t WHERE x * 2 > 100", "SELECT * FROM t WHERE x > 50"),
    ("SELECT * FROM t WHERE CAST(y AS TEXT) = '2024'", "SELECT * FROM t WHERE y = 2024"),
    (
        "SELECT (SELECT COUNT(*) FROM o WHERE o.u = t.id) FROM t",
        "SELECT COALESCE(c.n, 0) FROM t LEFT JOIN (SELECT u, COUNT(*) AS n FROM o GROUP BY u) c ON c.u = t.id",
    ),
    (
        "SELECT a FROM t WHERE (SELECT COUNT(*) FROM o WHERE o.u = t.id) > 0",
        "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM o WHERE o.u = t.id)",
    ),
    ("SELECT a, b FROM t ORDER BY a", "SELECT a, b FROM t ORDER BY 1"),
    (
        "SELECT * FROM t WHERE julianday(d) - julianday('2024-01-01') < 30",
        "SELECT * FROM t WHERE d < '2024-01-31'",
    ),
    ("SELECT * FROM t WHERE x > 10", "SELECT * FROM t WHERE x >= 11"),
    ("SELECT * FROM t WHERE x > 10", "SELECT * FROM t WHERE x > 5 + 5"),
]

REFUSED = [
    # (original, rewrite, the constant named in the message)
    ("SELECT id FROM t WHERE status = 'x'", "SELECT id FROM t WHERE id IN (4711, 4812, 9917)", "4711"),
    ("SELECT COUNT(*) FROM t WHERE status = 'x'", "SELECT 1234 FROM t WHERE rowid = 1", "1234"),
    (
        "SELECT id FROM t WHERE status = 'x'",
        "SELECT id FROM t WHERE status = 'x' AND (SELECT SUM(v) FROM t) = 123456.78",
        "123456.78",
    ),
    (
        "SELECT id FROM t WHERE status = 'x'",
        "SELECT id FROM t WHERE status = 'x' AND name = 'zebra0042'",
        "zebra0042",
    ),
    ("SELECT id FROM t WHERE x > 10", "SELECT id FROM t WHERE x > 10 AND id <> 40 + 2 * 977", "40 + 2 * 977"),
    (
        "SELECT id FROM t WHERE d >= '2024-01-01'",
        "SELECT id FROM t WHERE d >= '2024-01-01' AND d <> '2019-06-30'",
        "2019-06-30",
    ),
]


def _evaluate(nodes):
    conn = apsw.Connection(":memory:")
    return [conn.execute("SELECT " + node.sql("sqlite")).get for node in nodes]


@pytest.mark.parametrize(("original", "rewrite"), ALLOWED)
def test_documented_derivations_are_allowed(original, rewrite):
    LiteralGuard(q(original), _evaluate).check(q(rewrite))


@pytest.mark.parametrize(("original", "rewrite", "constant"), REFUSED)
def test_new_constants_are_refused(original, rewrite, constant):
    with pytest.raises(PolicyViolation) as info:
        LiteralGuard(q(original), _evaluate).check(q(rewrite))
    assert info.value.verdict is Verdict.REJECTED and constant in info.value.message


def test_double_quoted_strings_count_as_literals():
    guard = LiteralGuard(q("SELECT id FROM t WHERE name = 'Eve'"))
    guard.check(q('SELECT id FROM t WHERE name LIKE "%Eve%"'), string_columns={"%eve%"})
    with pytest.raises(PolicyViolation):
        guard.check(q('SELECT id FROM t WHERE name = "Bob"'), string_columns={"bob"})


def test_the_engine_judges_constants_by_value(small_db):
    slow = "SELECT id, total FROM orders WHERE user_id = 3"
    assert evaluate(small_db, slow, "SELECT id, total FROM orders WHERE user_id = 1 + 2").correct
    built = evaluate(
        small_db, slow, "SELECT id, total FROM orders WHERE user_id = 3 AND id <> (3 * 3 * 3 * 3 * 3)"
    )
    assert built.verdict is Verdict.REJECTED and "constant" in built.error


UNMETERED = [
    ("SELECT a FROM t", "SELECT a FROM t WHERE length(printf('%d', a)) > 0", "printf"),
    ("SELECT a FROM t", "SELECT a FROM t WHERE replace(a, 'x', 'y') <> ''", "replace"),
    ("SELECT a FROM t", "SELECT a || a FROM t", "||"),
    ("SELECT a FROM t", "SELECT a FROM t WHERE a LIKE '%' || b", "LIKE"),
    ("SELECT a FROM t", "SELECT (SELECT group_concat(a) FROM t) FROM t", "group_concat"),
    ("SELECT a FROM t", "SELECT a FROM t WHERE zeroblob(10) IS NOT NULL", "zeroblob"),
    # DuckDB's and PostgreSQL's string builders: one row's value grows where no row counter sees it
    ("SELECT a FROM t", "SELECT length(repeat(a, b * b)) FROM t", "repeat"),
    ("SELECT a FROM t", "SELECT length(lpad(a, b * b)) FROM t", "lpad"),
    ("SELECT a FROM t", "SELECT length(rpad(a, b * b)) FROM t", "lpad"),
    ("SELECT a FROM t", "SELECT a FROM t WHERE regexp_replace(a, 'x', 'y') <> ''", "regexp_replace"),
    ("SELECT a FROM t", "SELECT (SELECT array_agg(a) FROM t) FROM t", "array_agg"),
]


@pytest.mark.parametrize(("original", "rewrite", "name"), UNMETERED)
def test_unmetered_functions_are_refused_unless_the_original_uses_them(original, rewrite, name):
    with pytest.raises(PolicyViolation) as info:
        check_unmetered(q(original), q(rewrite))
    assert name in info.value.message
    check_unmetered(q(rewrite), q(rewrite))  # the same construct in the original: allowed


def test_plain_patterns_and_columns_are_metered():
    check_unmetered(
        q("SELECT a FROM t"), q("SELECT a FROM t WHERE a LIKE 'x%' AND b LIKE c AND lower(a) = 'x'")
    )


def test_decimal_constants_are_numbers():
    """DuckDB evaluates ``NULLIF(7.0, 0)`` (its port of ``/ 7.0``) as a DECIMAL: the original's own
    constant must be allowed by value (it was refused, so the tpch Q17 references were rejected)."""
    from decimal import Decimal

    from quill_env.provenance import allowed_constants, value_key

    allowed = allowed_constants([Decimal("7.0"), Decimal("0.2")])
    assert value_key(Decimal("7.0")) in allowed and value_key(7) in allowed and value_key(8) in allowed
    assert value_key(Decimal("4711.5")) not in allowed
