"""Schema augmentation by consistent renaming (quill_env.authoring.augment)."""

from __future__ import annotations

import dataclasses

import apsw
import numpy as np
import pytest
import sqlglot
from sqlglot import exp

from quill_env import get_suite
from quill_env.action_policy import split_statements
from quill_env.authoring.augment import (
    SQLITE_KEYWORDS,
    RenameMap,
    augment_suite,
    augment_task_text,
    rename_output_columns,
    rename_sql,
    schema_tables,
)
from quill_env.evaluator import TaskRunner
from quill_env.tasks import list_suites

M = RenameMap(
    tables={"users": "customers", "orders": "purchases"},
    columns={
        ("users", "id"): "cid",
        ("users", "name"): "full_name",
        ("users", "email"): "mail",
        ("orders", "id"): "pid",
        ("orders", "user_id"): "customer_id",
        ("orders", "total"): "amount",
        ("orders", "status"): "state",
        ("orders", "created_at"): "created_on",
    },
)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # qualified by alias
        (
            "SELECT u.name, o.total FROM orders o JOIN users u ON u.id = o.user_id",
            "SELECT u.full_name, o.amount FROM purchases AS o JOIN customers AS u ON u.cid = o.customer_id",
        ),
        # qualified by table name
        (
            "SELECT orders.total FROM orders JOIN users ON users.id = orders.user_id",
            "SELECT purchases.amount FROM purchases JOIN customers ON customers.cid = purchases.customer_id",
        ),
        # unqualified, resolved through the FROM tables
        (
            "SELECT name, total FROM orders JOIN users ON users.id = user_id WHERE status = 'paid'",
            "SELECT full_name, amount FROM purchases JOIN customers ON customers.cid = customer_id "
            "WHERE state = 'paid'",
        ),
        # output aliases are kept, and a bare ORDER BY naming one
        (
            "SELECT status, COUNT(*) AS n FROM orders GROUP BY status ORDER BY n DESC",
            "SELECT state, COUNT(*) AS n FROM purchases GROUP BY state ORDER BY n DESC",
        ),
        # an alias spelled like a column: ORDER BY names the alias (SQLite's rule)
        (
            "SELECT status AS total FROM orders ORDER BY total",
            "SELECT state AS total FROM purchases ORDER BY total",
        ),
        # correlated subquery: unqualified inner column, outer alias
        (
            "SELECT u.id, (SELECT COUNT(*) FROM orders WHERE user_id = u.id) AS n FROM users u",
            "SELECT u.cid, (SELECT COUNT(*) FROM purchases WHERE customer_id = u.cid) AS n FROM customers AS u",
        ),
        # derived table: its unaliased outputs are renamed, read outside under the new name
        (
            "SELECT user_id, n FROM (SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) "
            "WHERE user_id = 3",
            "SELECT customer_id, n FROM (SELECT customer_id, COUNT(*) AS n FROM purchases "
            "GROUP BY customer_id) WHERE customer_id = 3",
        ),
        # CTE name and derived alias kept; base columns inside renamed
        (
            "WITH a AS (SELECT user_id, SUM(total) AS s FROM orders GROUP BY user_id) "
            "SELECT u.name, a.s FROM users u JOIN a ON a.user_id = u.id",
            "WITH a AS (SELECT customer_id, SUM(amount) AS s FROM purchases GROUP BY customer_id) "
            "SELECT u.full_name, a.s FROM customers AS u JOIN a ON a.customer_id = u.cid",
        ),
        # set operation with ORDER BY on the union's outputs
        (
            "SELECT id, total FROM orders WHERE status = 'a' UNION SELECT id, total FROM orders ORDER BY total",
            "SELECT pid, amount FROM purchases WHERE state = 'a' UNION SELECT pid, amount FROM purchases "
            "ORDER BY amount",
        ),
        # comma joins stay comma joins (CROSS JOIN would pin SQLite's join order); unary + is kept
        (
            "SELECT u.name FROM users u, orders o WHERE +o.user_id = u.id",
            "SELECT u.full_name FROM customers AS u, purchases AS o WHERE +o.customer_id = u.cid",
        ),
        # an action: CREATE INDEX (table, columns, name) + query
        (
            "CREATE INDEX idx_orders_user ON orders(user_id, created_at DESC);\nSELECT id FROM orders",
            "CREATE INDEX idx_purchases_customer_id_created_on ON purchases(customer_id, created_on DESC);\n"
            "SELECT pid FROM purchases",
        ),
    ],
)
def test_rename_sql_examples(sql, expected):
    assert rename_sql(sql, M) == expected


def test_rename_create_table_constraints():
    ddl = (
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), "
        "total REAL CHECK (total >= 0), status TEXT COLLATE NOCASE, created_at TEXT, "
        "UNIQUE (user_id, created_at), FOREIGN KEY (user_id) REFERENCES users (id), CHECK (status <> ''))"
    )
    out = rename_sql(ddl, M)
    tree = sqlglot.parse_one(out, read="sqlite")
    names = {i.name for i in tree.find_all(exp.Identifier)}
    assert {"purchases", "customers", "pid", "customer_id", "amount", "state", "created_on", "cid"} <= names
    assert not names & {"orders", "users", "id", "user_id", "total", "status", "created_at"}
    assert "COLLATE NOCASE" in out
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE customers (cid INTEGER PRIMARY KEY)")
    conn.execute(out)


def test_output_columns_follow_the_renaming():
    assert rename_output_columns("SELECT o.total, COUNT(*) AS n FROM orders o GROUP BY 1", M) == {
        "total": "amount",
        "n": "n",
    }
    star = rename_output_columns("SELECT * FROM orders", M)
    assert star["user_id"] == "customer_id" and star["id"] == "pid"


def test_sample_is_deterministic_complete_and_injective():
    schema = {"users": ["id", "name", "email"], "orders": ["id", "user_id", "total", "mystery_col"]}
    a = RenameMap.sample(schema, 7, "shop")
    assert a == RenameMap.sample(schema, 7, "shop")
    assert a != RenameMap.sample(schema, 8, "shop")
    assert RenameMap.sample(schema, np.random.default_rng(3)) == RenameMap.sample(
        schema, np.random.default_rng(3)
    )
    assert set(a.tables) == set(schema) and all(a.tables[t] != t for t in schema)
    assert len(set(a.tables.values())) == len(a.tables)
    for t, cols in schema.items():
        new = [a.columns[(t, c)] for c in cols]
        assert all(n != c for n, c in zip(new, cols)) and len(set(new)) == len(new)
    everything = [*a.tables.values(), *a.columns.values()]
    assert not set(everything) & SQLITE_KEYWORDS
    assert a.columns[("users", "id")] == a.columns[("orders", "id")]  # same old name, same new name
    assert a.columns[("orders", "user_id")] != a.columns[("orders", "id")]
    blocked = RenameMap.sample(schema, 7, "shop", reserved=[a.tables["users"]])
    assert blocked.tables["users"] != a.tables["users"]
    assert RenameMap.from_dict(a.to_dict()) == a


def _suites_with_tasks():
    return [name for name in list_suites() if get_suite(name).tasks]


@pytest.mark.parametrize("name", _suites_with_tasks())
def test_every_task_renames_and_round_trips(name):
    """Every query and reference renames (no old table left) and renames back to itself."""
    suite = get_suite(name)
    mapping = RenameMap.sample(schema_tables(suite.ddl), 11, name)
    back = mapping.inverse()
    old_tables = {t.lower() for t in mapping.tables}
    for task in suite.tasks:
        for sql in (task.query, task.reference):
            if not sql:
                continue
            renamed = rename_sql(sql, mapping)
            for part in renamed.split(";\n"):
                tree = sqlglot.parse_one(part, read="sqlite")
                ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
                left = {t.name.lower() for t in tree.find_all(exp.Table)} & old_tables - ctes
                assert not left, (task.id, renamed)
            # the query renames back to its own (sqlglot-rendered) text
            query = split_statements(sql)[-1]
            assert rename_sql(rename_sql(query, mapping), back) == rename_sql(query, RenameMap()), task.id


@pytest.mark.parametrize("name", list_suites())
def test_augmented_ddl_keeps_the_table_layout(name):
    suite = get_suite(name)
    aug = augment_suite(suite, 5)
    mapping = RenameMap.from_dict(aug.spec["augment"]["mapping"])
    c0, c1 = apsw.Connection(":memory:"), apsw.Connection(":memory:")
    for ddl in suite.ddl:
        c0.execute(ddl)
    for ddl in aug.ddl:
        c1.execute(ddl)
    for table, new in mapping.tables.items():
        info0 = [(mapping.column(table, r[1]), *r[2:]) for r in c0.execute(f"PRAGMA table_info({table})")]
        info1 = [r[1:] for r in c1.execute(f"PRAGMA table_info({new})")]
        assert info0 == info1
        fk0 = [
            (mapping.table(r[2]), mapping.column(table, r[3]), mapping.column(r[2], r[4]))
            for r in c0.execute(f"PRAGMA foreign_key_list({table})")
        ]
        fk1 = [r[2:5] for r in c1.execute(f"PRAGMA foreign_key_list({new})")]
        assert fk0 == fk1
    assert list(aug.generator["tables"]) == [mapping.table(t) for t in suite.generator["tables"]]


# --- the shop suite, end to end ------------------------------------------------------------------

SEEDS = (1, 2)
TASKS = (
    "coupon_lookup",  # index
    "orders_of_email",  # index, join with aliases
    "spend_per_kiwi_user",  # rewrite to a derived table
    "one_user_totals",  # derived table outputs read outside + index
    "recent_order_totals",  # SELECT * with output_columns + index
    "icelandic_customers",  # DISTINCT join to EXISTS + composite index
)


@pytest.fixture(scope="module", params=SEEDS)
def augmented(request, shop_suite):
    return augment_suite(shop_suite, request.param), request.param


def test_augmented_suite_renames_everything(augmented, shop_suite):
    aug, seed = augmented
    mapping = RenameMap.from_dict(aug.spec["augment"]["mapping"])
    assert aug.name == f"shop-aug{seed}" and aug.path is None
    old, new = schema_tables(shop_suite.ddl), schema_tables(aug.ddl)
    assert list(new) == [mapping.tables[t] for t in old]
    for table, cols in old.items():
        assert all(mapping.tables[table] != table for table in old)
        assert new[mapping.tables[table]] == [mapping.column(table, c) for c in cols]
        assert all(mapping.column(table, c) != c for c in cols)
        spec = aug.generator["tables"][mapping.tables[table]]["columns"]
        assert list(spec) == new[mapping.tables[table]]
    refs = {s["ref"] for t in aug.generator["tables"].values() for s in t["columns"].values() if "ref" in s}
    assert refs == {f"{mapping.tables['users']}.{mapping.column('users', 'id')}"}
    assert [t.id for t in aug.tasks] == [f"{t.id}@aug{seed}" for t in shop_suite.tasks]
    assert all(t.suite == aug.name and t.schema == "shop" for t in aug.tasks)
    star = aug.task(f"shop/recent_order_totals@aug{seed}")
    assert star.output_columns == (mapping.column("orders", "id"), mapping.column("orders", "total"))


def test_augmented_database_holds_the_same_data(augmented, shop_suite):
    aug, _ = augmented
    mapping = RenameMap.from_dict(aug.spec["augment"]["mapping"])
    c0 = apsw.Connection(str(shop_suite.database("small")), flags=apsw.SQLITE_OPEN_READONLY)
    c1 = apsw.Connection(str(aug.database("small")), flags=apsw.SQLITE_OPEN_READONLY)
    for table, new in mapping.tables.items():
        rows0 = list(c0.execute(f"SELECT * FROM {table} ORDER BY rowid"))
        rows1 = list(c1.execute(f"SELECT * FROM {new} ORDER BY rowid"))
        assert rows0 == rows1 and rows0


@pytest.mark.parametrize("name", TASKS)
def test_augmented_reference_verifies_identically(augmented, shop_suite, name):
    aug, seed = augmented
    task = shop_suite.task(name)
    atask = aug.task(f"shop/{name}@aug{seed}")
    r0 = TaskRunner.from_suite(shop_suite, task, "small")
    r1 = TaskRunner.from_suite(aug, atask, "small")
    assert r0.baseline.main.rows == r1.baseline.main.rows
    assert r0.baseline.main.work == r1.baseline.main.work
    e0, e1 = r0.evaluate(task.reference), r1.evaluate(atask.reference)
    assert e0.verdict == e1.verdict and e0.correct
    assert e0.speedup_raw == e1.speedup_raw  # VM steps do not depend on names
    assert r1.evaluate(atask.query).verdict.value == "unchanged"


def test_augment_task_text_single_task(shop_suite):
    task = shop_suite.task("recent_order_totals")
    mapping = RenameMap.sample(schema_tables(shop_suite.ddl), 3, "shop")
    out = augment_task_text(task, mapping)
    assert out.id == task.id and out.output_columns == (
        mapping.column("orders", "id"),
        mapping.column("orders", "total"),
    )
    assert out.query == rename_sql(task.query, mapping)
    assert out.reference == rename_sql(task.reference, mapping)
    assert (
        dataclasses.replace(
            out, query=task.query, reference=task.reference, output_columns=task.output_columns
        )
        == task
    )


def test_renaming_differs_between_seeds(shop_suite):
    a, b = augment_suite(shop_suite, 1), augment_suite(shop_suite, 2)
    assert a.spec["augment"]["mapping"] != b.spec["augment"]["mapping"]
    assert a.ddl != b.ddl
    assert augment_suite(shop_suite, 1).ddl == a.ddl
