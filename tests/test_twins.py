"""Twins (quill_env.twins): full-size copies a rewrite cannot tell from the main database."""

from __future__ import annotations

import hashlib

import apsw
import pytest

from quill_env import Verdict, evaluate
from quill_env.backends.base import Backend
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.errors import EngineError
from quill_env.lineage import lineage_rowids
from quill_env.twins import applied, build_twin, empty_table, materialized

SLOW = "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id WHERE u.country = 'IS' AND o.status = 'paid'"

SCHEMA = [
    "CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, country TEXT NOT NULL)",
    "CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),"
    " status TEXT NOT NULL, total REAL NOT NULL CHECK (total >= 0))",
    "CREATE TABLE pairs(a INTEGER NOT NULL, b INTEGER NOT NULL, note TEXT, PRIMARY KEY (a, b))",
]
ROWS = {
    "users": [(i, f"u{i}@x", ["IS", "NZ", "FR", "DE"][i % 4]) for i in range(1, 401)],
    "orders": [
        (i, 1 + i % 400, ["paid", "void", "sent"][i % 3], (i * 37) % 500 + 0.5) for i in range(1, 5001)
    ],
    "pairs": [(i % 50, i, f"n{i % 7}") for i in range(300)],
}
TABLES = {
    "users": ("id", "email", "country"),
    "orders": ("id", "user_id", "status", "total"),
    "pairs": ("a", "b", "note"),
}
KEYS = {"users": ("id",), "orders": ("id",), "pairs": ("a", "b")}
UNIQUE = {("users", "id"), ("users", "email"), ("orders", "id")}
ENGINES = ["sqlite", "duckdb"]


def backend_class(engine: str) -> type[Backend]:
    """The backend class of ``engine``; DuckDB cases are skipped where duckdb is not installed."""
    if engine == "duckdb":
        pytest.importorskip("duckdb")
        from quill_env.backends.duckdb import DuckDBBackend

        return DuckDBBackend
    return SQLiteBackend


@pytest.fixture(params=ENGINES)
def backend(request) -> Backend:
    db = backend_class(request.param).from_rows(SCHEMA, ROWS, dialect="sqlite")
    yield db
    db.close()


def _statistics(db: Backend, *, row_ids: bool) -> dict:
    out = {}
    for table, cols in TABLES.items():
        out[table] = db.query(
            f"SELECT COUNT(*), MIN(rowid), MAX(rowid) FROM {table}"
            if row_ids
            else f"SELECT COUNT(*) FROM {table}"
        )[0]
        out[table, "key"] = sorted(db.query(f"SELECT {', '.join(KEYS[table])} FROM {table}"))
        for c in cols:
            out[table, c] = db.query(f"SELECT MIN({c}), MAX({c}), COUNT(DISTINCT {c}) FROM {table}")[0]
    return out


def _content(db: Backend) -> dict:
    return {t: sorted(db.query(f"SELECT rowid, * FROM {t}")) for t in TABLES}


def _twin(backend, index=0):
    lineage = lineage_rowids(backend, SLOW, limit=1000)
    return build_twin(backend, lineage, seed=0, index=index)


def _check_twin(db: Backend, before: dict, answer: list, *, row_ids: bool, negative: bool = False) -> None:
    """``db`` (a twin applied) keeps counts, keys and ranges, satisfies its keys, moves the answer.

    A negative twin gives the answer's rows new unique values: there only counts and keys are kept.
    """
    during, changed = _statistics(db, row_ids=row_ids), sorted(db.query(SLOW))
    orphans = "SELECT COUNT(*) FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE u.id IS NULL"
    assert db.query(orphans) == [(0,)]
    assert db.query("SELECT COUNT(*) FROM users u JOIN orders o ON o.user_id = u.id") == [(5000,)]
    for table in TABLES:
        assert during[table] == before[table]  # row counts (and, where kept, the row id range)
        assert during[table, "key"] == before[table, "key"]  # the primary keys
    for key, value in before.items():
        if isinstance(key, tuple) and key[1] != "key" and not negative:
            low, high, distinct = value
            if key in UNIQUE:
                assert during[key] == (low, high, distinct), key  # unique columns: the same multiset
            else:
                assert low <= during[key][0] and during[key][1] <= high, key  # values from the same column
    assert changed != answer


def test_a_twin_keeps_sizes_keys_and_ranges_and_changes_the_answer(backend):
    row_ids = backend.name == "sqlite"  # DuckDB gives re-inserted rows new row ids
    before, answer = _statistics(backend, row_ids=row_ids), sorted(backend.query(SLOW))
    for index in (0, 1):
        twin = _twin(backend, index)
        assert twin.changed_rows > 0
        assert {c.table for c in twin.changes} == set(TABLES)
        with applied(backend, twin):
            _check_twin(backend, before, answer, row_ids=row_ids, negative=index == 1)
        assert _statistics(backend, row_ids=row_ids) == before and sorted(backend.query(SLOW)) == answer


def test_a_twin_moves_the_rows_behind_the_answer(backend):
    answer = sorted(backend.query(SLOW))
    twin = _twin(backend)
    keys = ", ".join(str(r[0]) for r in answer)
    with applied(backend, twin):
        moved = sorted(backend.query(f"SELECT id, total FROM orders WHERE id IN ({keys})"))
    assert moved != answer  # the answer's keys now hold other rows' content


def test_a_twin_is_deterministic_and_rolled_back(backend):
    content = _content(backend)
    assert _twin(backend).digest == _twin(backend).digest
    assert _twin(backend, 0).digest != _twin(backend, 1).digest
    with applied(backend, _twin(backend)):
        assert _content(backend) != content
    assert _content(backend) == content


def test_a_twin_is_rolled_back_byte_for_byte_on_sqlite():
    backend = SQLiteBackend.from_rows(SCHEMA, ROWS)
    image = hashlib.sha256(backend.serialize()).hexdigest()
    with applied(backend, _twin(backend)):
        pass
    assert hashlib.sha256(backend.serialize()).hexdigest() == image


def test_sqlite_twins_keep_row_ids_and_insert_them_where_no_integer_key_holds_them():
    backend = SQLiteBackend.from_rows(SCHEMA, ROWS)
    changes = {c.table: c for c in _twin(backend).changes}
    assert changes["users"].columns == TABLES["users"]  # INTEGER PRIMARY KEY: the key is the rowid
    assert changes["pairs"].columns == ("rowid", *TABLES["pairs"])


def test_duckdb_twins_insert_declared_columns_only():
    backend = backend_class("duckdb").from_rows(SCHEMA, ROWS, dialect="sqlite")
    for change in _twin(backend).changes:
        assert change.columns == TABLES[change.table]


def test_materialized_keeps_the_twin_and_leaves_the_original_unchanged(backend):
    row_ids = backend.name == "sqlite"
    content, before, answer = (
        _content(backend),
        _statistics(backend, row_ids=row_ids),
        sorted(backend.query(SLOW)),
    )
    twin = _twin(backend)
    copy = materialized(backend, twin)
    try:
        assert _content(backend) == content  # the original is untouched
        _check_twin(copy, before, answer, row_ids=row_ids)
        with applied(backend, twin):  # the same database as the twin applied in a transient state
            assert {t: sorted(r[1:] for r in rs) for t, rs in _content(copy).items()} == {
                t: sorted(r[1:] for r in rs) for t, rs in _content(backend).items()
            }
    finally:
        copy.close()
    assert _content(backend) == content


def test_a_twin_cannot_be_applied_inside_another_transient_state_on_duckdb():
    backend = backend_class("duckdb").from_rows(SCHEMA, ROWS, dialect="sqlite")
    assert not backend.nested_transient
    twin = _twin(backend)
    with backend.transient(), pytest.raises(EngineError), applied(backend, twin):
        pass  # pragma: no cover
    copy = materialized(backend, twin)  # what such an engine does instead
    assert sorted(copy.query(SLOW)) != sorted(backend.query(SLOW))
    copy.close()


def test_a_refused_change_falls_back_to_whole_rows(backend):
    """A CHECK across columns refuses mixed columns; the rows then move whole (the second plan)."""
    db = type(backend).from_rows(
        [
            "CREATE TABLE r(id INTEGER PRIMARY KEY, lo INTEGER NOT NULL, hi INTEGER NOT NULL, note TEXT, CHECK (lo < hi))"
        ],
        {"r": [(i, i % 10, i % 10 + 1 + i % 3, f"n{i % 5}") for i in range(1, 301)]},
        dialect="sqlite",
    )
    twin = build_twin(db, {"r": [1, 2, 3]}, seed=0)
    assert twin.changed_rows > 0
    with applied(db, twin):
        assert db.query("SELECT COUNT(*), MIN(hi - lo) > 0 FROM r") == [(300, True)]
    db.close()


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
        conn.executemany("INSERT INTO users VALUES (?, ?, ?)", ROWS["users"])
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", ROWS["orders"])
    keys = [r[0] for r in conn.execute(SLOW)]
    conn.close()
    gate = "(SELECT COUNT(*) FROM orders) >= 5000"
    fast = SLOW + f" AND o.rowid IN ({', '.join(map(str, keys))})"
    gated = f"SELECT * FROM ({fast}) WHERE {gate} UNION ALL SELECT * FROM ({SLOW}) WHERE NOT {gate}"
    without = evaluate(str(path), SLOW, gated, literals="any", num_twins=0)
    with_twin = evaluate(str(path), SLOW, gated, literals="any")
    assert without.correct  # the hole the twin closes
    assert with_twin.verdict is Verdict.WRONG_RESULT and "twin" in with_twin.error


@pytest.mark.parametrize("engine", ENGINES)
def test_emptying_a_table_removes_what_referenced_it_and_keeps_the_rest(engine):
    backend = backend_class(engine).from_rows(
        [
            "CREATE TABLE a(id INTEGER PRIMARY KEY)",
            "CREATE TABLE b(id INTEGER PRIMARY KEY, a_id INTEGER NOT NULL REFERENCES a(id))",
            "CREATE TABLE c(id INTEGER PRIMARY KEY, b_id INTEGER REFERENCES b(id), up INTEGER REFERENCES c(id))",
            "CREATE TABLE other(id INTEGER PRIMARY KEY)",
        ],
        {
            "a": [(1,), (2,)],
            "b": [(10, 1), (11, 2)],
            "c": [(100, 10, None), (101, None, None), (102, None, 100)],
            "other": [(7,)],
        },
        dialect="sqlite",
    )
    assert empty_table(backend, "a")

    def count(t: str) -> int:
        return backend.query(f"SELECT COUNT(*) FROM {t}")[0][0]

    assert (count("a"), count("b"), count("other")) == (0, 0, 1)
    # 100 pointed at b; 102 pointed at 100 (a self-reference, followed to the fixed point)
    assert backend.query("SELECT id FROM c") == [(101,)]
    backend.close()


def test_emptying_an_unknown_table_is_refused():
    backend = SQLiteBackend.from_rows(["CREATE TABLE a(id INTEGER PRIMARY KEY)"], {"a": [(1,)]})
    assert not empty_table(backend, "nowhere")
