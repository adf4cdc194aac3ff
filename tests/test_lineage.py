"""Why-provenance of a query's answer (quill_env.lineage)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quill_env.backends.sqlite import SQLiteBackend
from quill_env.lineage import lineage_rowids, lineage_scopes

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), total REAL, status TEXT);
CREATE TABLE tags (user_id INTEGER, tag TEXT, PRIMARY KEY (user_id, tag)) WITHOUT ROWID;
CREATE TABLE odd (rowid TEXT, v INTEGER);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
"""


@pytest.fixture(scope="module")
def db() -> SQLiteBackend:
    backend = SQLiteBackend.empty()
    conn = backend.connection
    conn.execute(SCHEMA)
    conn.executemany(
        "INSERT INTO users VALUES (?, ?, ?)",
        [(1, "Ada", "Oslo"), (2, "Bob", "Rome"), (3, "Cyd", "Oslo"), (4, "Dan", None)],
    )
    conn.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [(10, 1, 50.0, "paid"), (11, 1, 500.0, "paid"), (12, 2, 70.0, "open"), (13, 3, 900.0, "paid")],
    )
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [(1, "vip"), (3, "new")])
    conn.executemany("INSERT INTO odd VALUES (?, ?)", [("x", 1), ("y", 2)])
    return backend


def rows(db: SQLiteBackend, sql: str, **kw) -> dict[str, list[int]]:
    return lineage_rowids(db.connection, sql, db.tables(), **kw)


def test_join_with_filter_and_aggregates_dropped(db):
    sql = (
        "SELECT u.city, COUNT(*) FROM users u JOIN orders o ON o.user_id = u.id "
        "WHERE o.status = 'paid' GROUP BY u.city HAVING COUNT(*) > 5 ORDER BY 2 DESC LIMIT 1"
    )
    assert rows(db, sql) == {"orders": [10, 11, 13], "users": [1, 3]}


def test_scopes_cte_derived_union_and_uncorrelated_subquery(db):
    sql = (
        "WITH rich AS (SELECT user_id FROM orders WHERE total > 400) "
        "SELECT name FROM users WHERE id IN (SELECT user_id FROM rich) "
        "UNION SELECT d.name FROM (SELECT * FROM users WHERE city IS NULL) d"
    )
    found = rows(db, sql)
    assert found["orders"] == [11, 13]
    assert found["users"] == [1, 3, 4]


def test_correlated_scope_is_skipped_but_outer_scope_runs(db):
    sql = "SELECT u.name, (SELECT MAX(o.total) FROM orders o WHERE o.user_id = u.id) FROM users u WHERE u.city = 'Oslo'"
    assert rows(db, sql) == {"users": [1, 3]}
    scopes = lineage_scopes(db.connection, sql, db.tables())
    assert [s.tables for s in scopes] == [("users",)]


def test_self_join_and_left_join_miss(db):
    sql = "SELECT a.id, o.id FROM users a LEFT JOIN orders o ON o.user_id = a.id AND o.total > 800"
    scopes = lineage_scopes(db.connection, sql, db.tables())
    assert scopes[0].tables == ("users", "orders")
    assert (4, None) in scopes[0].rows
    assert rows(db, sql) == {"orders": [13], "users": [1, 2, 3, 4]}


def test_without_rowid_views_and_shadowed_rowid(db):
    assert rows(db, "SELECT * FROM tags t JOIN users u ON u.id = t.user_id") == {"users": [1, 3]}
    assert rows(db, "SELECT * FROM big_orders") == {}
    assert rows(db, "SELECT v FROM odd WHERE v = 2") == {"odd": [2]}


def test_limit_and_work_budget(db):
    assert len(rows(db, "SELECT * FROM orders", limit=2)["orders"]) == 2
    cartesian = "SELECT * FROM orders a, orders b, orders c, orders d, orders e, orders f, orders g WHERE a.total + b.total + c.total + d.total + e.total + f.total + g.total < 0"
    assert rows(db, cartesian, max_work=5_000) == {}
    assert db.connection.execute("SELECT COUNT(*) FROM users").get == 4  # handler removed


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "SELECT",
        "DELETE FROM users",
        "SELECT 1; SELECT 2",
        "SELECT * FROM users WHERE id = ?",
        "SELECT * FROM nowhere",
        "SELECT 1",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n, users",
        "SELECT '\ud800'",
    ],
)
def test_never_raises(db, sql):
    assert isinstance(rows(db, sql, max_work=100_000), dict)
    assert db.connection.execute("SELECT COUNT(*) FROM orders").get == 4


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_random_text_never_raises(text):
    backend = SQLiteBackend.empty()
    backend.connection.execute("CREATE TABLE t(a)")
    assert isinstance(lineage_rowids(backend.connection, text, backend.tables(), max_work=10_000), dict)


def test_deterministic_and_sorted(db):
    sql = "SELECT * FROM orders o JOIN users u ON u.id = o.user_id ORDER BY o.total DESC"
    first = rows(db, sql)
    assert first == rows(db, sql)
    assert list(first) == sorted(first)
    assert all(v == sorted(v) for v in first.values())
