import datetime as dt

import apsw
import pytest

from quill_env.backends.sqlite import SQLiteBackend
from quill_env.variants import VariantBuilder, query_literals

QUERY = "SELECT * FROM orders o JOIN users u ON u.id = o.user_id WHERE o.total >= 500 AND o.created_at < '2024-01-01 00:00:00'"


@pytest.fixture(scope="module")
def variants(small_db):
    source = SQLiteBackend.open(small_db)
    builder = VariantBuilder(source, rows_per_table=40, seed=1)
    return {v.name: SQLiteBackend.from_bytes(v.image) for v in builder.build(QUERY)}


def _rows(backend, sql):
    return list(backend.connection.execute(sql))


def test_every_mutation_is_built(variants):
    assert list(variants) == list(VariantBuilder.MUTATIONS)


def test_constraints_hold_in_every_variant(variants):
    for name, db in variants.items():
        conn = db.connection
        assert _rows(
            db, "SELECT COUNT(*) FROM users WHERE email IS NULL OR name IS NULL OR country IS NULL"
        ) == [(0,)], name
        assert _rows(db, "SELECT COUNT(*) FROM orders WHERE user_id IS NULL OR total IS NULL") == [(0,)], name
        assert _rows(db, "SELECT COUNT(*) - COUNT(DISTINCT email) FROM users") == [(0,)], name
        assert list(conn.execute("PRAGMA foreign_key_check")) == [], name


def test_adversarial_content(variants):
    assert _rows(
        variants["empty"], "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM orders)"
    ) == [(0,)]
    nulls = _rows(
        variants["nulls"], "SELECT COUNT(*) FROM orders WHERE referrer_id IS NULL AND discount IS NULL"
    )
    assert nulls[0][0] > 0
    dup = variants["duplicates"]
    assert _rows(dup, "SELECT COUNT(*) FROM orders")[0][0] > 40
    childless = _rows(
        variants["childless"], "SELECT COUNT(*) FROM users WHERE id NOT IN (SELECT user_id FROM orders)"
    )
    assert childless[0][0] > 0
    boundary = _rows(variants["boundary"], "SELECT COUNT(*) FROM orders WHERE total IN (500, 499.99, 500.01)")
    assert boundary[0][0] > 0
    top = _rows(variants["ties"], "SELECT COUNT(*) FROM orders GROUP BY total ORDER BY 1 DESC LIMIT 1")
    assert top[0][0] >= 0.25 * _rows(variants["ties"], "SELECT COUNT(*) FROM orders")[0][0]


def test_dates_stay_dates(variants):
    for name, db in variants.items():
        for (value,) in _rows(db, "SELECT created_at FROM orders"):
            dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S"), name


def test_query_literals_resolve_aliases(variants):
    tables = variants["sample"].tables()
    found = query_literals(QUERY, tables)
    assert found[("orders", "total")] == [500]
    assert found[("orders", "created_at")] == ["2024-01-01 00:00:00"]


def test_source_is_never_modified(small_db, tmp_path):
    conn = apsw.Connection(small_db, flags=apsw.SQLITE_OPEN_READONLY)
    before = list(conn.execute("SELECT COUNT(*), SUM(total) FROM orders"))
    source = SQLiteBackend.open(small_db)
    VariantBuilder(source, seed=5).build(QUERY)
    assert list(conn.execute("SELECT COUNT(*), SUM(total) FROM orders")) == before
