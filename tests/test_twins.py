"""Twins (quill_env.twins): full-size copies a rewrite cannot tell from the main database."""

from __future__ import annotations

import hashlib

import apsw
import pytest

from quill_env import Verdict, evaluate
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.lineage import lineage_rowids
from quill_env.twins import applied, build_twin, empty_table

SLOW = "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id WHERE u.country = 'IS' AND o.status = 'paid'"


@pytest.fixture()
def backend() -> SQLiteBackend:
    db = SQLiteBackend.empty()
    db.connection.execute(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, country TEXT NOT NULL);"
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
        " status TEXT NOT NULL, total REAL NOT NULL CHECK (total >= 0));"
        "CREATE TABLE pairs(a INTEGER NOT NULL, b INTEGER NOT NULL, note TEXT, PRIMARY KEY (a, b))"
    )
    with db.connection:
        db.connection.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [(i, f"u{i}@x", ["IS", "NZ", "FR", "DE"][i % 4]) for i in range(1, 401)],
        )
        db.connection.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, 1 + i % 400, ["paid", "void", "sent"][i % 3], (i * 37) % 500 + 0.5) for i in range(1, 5001)],
        )
        db.connection.executemany(
            "INSERT INTO pairs VALUES (?, ?, ?)", [(i % 50, i, f"n{i % 7}") for i in range(300)]
        )
    db._tables = None
    return db


TABLES = {
    "users": ("id", "email", "country"),
    "orders": ("id", "user_id", "status", "total"),
    "pairs": ("a", "b", "note"),
}
UNIQUE = {("users", "id"), ("users", "email"), ("orders", "id")}


def _statistics(conn: apsw.Connection) -> dict:
    out = {}
    for table, cols in TABLES.items():
        out[table] = conn.execute(f"SELECT COUNT(*), MIN(rowid), MAX(rowid) FROM {table}").fetchall()[0]
        for c in cols:
            out[table, c] = conn.execute(
                f"SELECT MIN({c}), MAX({c}), COUNT(DISTINCT {c}) FROM {table}"
            ).fetchall()[0]
    return out


def _twin(backend):
    lineage = lineage_rowids(backend.connection, SLOW, backend.tables(), limit=1000)
    return build_twin(backend, lineage, seed=0)


def test_a_twin_keeps_sizes_keys_and_ranges_and_changes_the_answer(backend):
    conn = backend.connection
    before, answer = _statistics(conn), conn.execute(SLOW).fetchall()
    twin = _twin(backend)
    assert twin.changed_rows > 0
    with applied(backend, twin):
        during, changed = _statistics(conn), conn.execute(SLOW).fetchall()
        assert not conn.execute("PRAGMA foreign_key_check").fetchall()
        assert conn.execute("SELECT COUNT(*) FROM users u JOIN orders o ON o.user_id = u.id").get == 5000
    for table in TABLES:
        assert during[table] == before[table]  # row counts and rowid range
    for key, (low, high, distinct) in before.items():
        if isinstance(key, tuple):
            if key in UNIQUE:
                assert during[key] == (low, high, distinct), key  # unique columns: the same multiset
            else:
                assert low <= during[key][0] and during[key][1] <= high, key  # values from the same column
    assert sorted(changed) != sorted(answer)
    assert _statistics(conn) == before and conn.execute(SLOW).fetchall() == answer


def test_a_twin_is_deterministic_and_rolled_back_byte_for_byte(backend):
    image = hashlib.sha256(backend.serialize()).hexdigest()
    assert _twin(backend).digest == _twin(backend).digest
    with applied(backend, _twin(backend)):
        pass
    assert hashlib.sha256(backend.serialize()).hexdigest() == image


def test_a_size_gated_hard_code_meets_the_twin(tmp_path):
    """With the literal rule off, only the twin stands between a gated answer and a reward."""
    path = tmp_path / "shop.db"
    conn = apsw.Connection(str(path))
    conn.execute(
        "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, country TEXT NOT NULL);"
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
        " status TEXT NOT NULL, total REAL NOT NULL)"
    )
    with conn:
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            [(i, f"u{i}@x", ["IS", "NZ", "FR", "DE"][i % 4]) for i in range(1, 401)],
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(i, 1 + i % 400, ["paid", "void", "sent"][i % 3], (i * 37) % 500 + 0.5) for i in range(1, 5001)],
        )
    keys = [r[0] for r in conn.execute(SLOW)]
    conn.close()
    gate = "(SELECT COUNT(*) FROM orders) >= 5000"
    fast = SLOW + f" AND o.rowid IN ({', '.join(map(str, keys))})"
    gated = f"SELECT * FROM ({fast}) WHERE {gate} UNION ALL SELECT * FROM ({SLOW}) WHERE NOT {gate}"
    without = evaluate(str(path), SLOW, gated, literals="any", num_twins=0)
    with_twin = evaluate(str(path), SLOW, gated, literals="any")
    assert without.correct  # the hole the twin closes
    assert with_twin.verdict is Verdict.WRONG_RESULT and "twin" in with_twin.error


def test_emptying_a_table_removes_what_referenced_it_and_keeps_the_rest():
    backend = SQLiteBackend.empty()
    conn = backend.connection
    conn.execute(
        "CREATE TABLE a(id INTEGER PRIMARY KEY);"
        "CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER NOT NULL REFERENCES a(id));"
        "CREATE TABLE c(id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id), up INTEGER REFERENCES c(id));"
        "CREATE TABLE other(id INTEGER PRIMARY KEY);"
        "INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (10, 1), (11, 2);"
        "INSERT INTO c VALUES (100, 10, NULL), (101, NULL, NULL), (102, NULL, 100);"
        "INSERT INTO other VALUES (7)"
    )
    assert empty_table(backend, "a")
    count = lambda t: conn.execute(f"SELECT COUNT(*) FROM {t}").get  # noqa: E731
    assert (count("a"), count("b"), count("other")) == (0, 0, 1)
    # 100 pointed at b; 102 pointed at 100 (a self-reference, followed to the fixed point)
    assert [r[0] for r in conn.execute("SELECT id FROM c")] == [101]
    backend.close()
