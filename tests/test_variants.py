import datetime as dt
from collections import Counter

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import quill_env
from quill_env import Verdict, get_suite, list_suites
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.variants import Variant, VariantBuilder, query_literals

QUERY = "SELECT * FROM orders o JOIN users u ON u.id = o.user_id WHERE o.total >= 500 AND o.created_at < '2024-01-01 00:00:00'"


@pytest.fixture(scope="module")
def variants(small_db):
    source = SQLiteBackend.open(small_db)
    builder = VariantBuilder(source, rows_per_table=40, seed=1)
    return {v.name: v.load(SQLiteBackend) for v in builder.build(QUERY)}


def _rows(backend, sql):
    return backend.query(sql)


def test_every_mutation_is_built(variants):
    assert list(variants) == list(VariantBuilder.MUTATIONS)
    assert {"groups", "aggregates", "near_duplicates", "strings", "skew"} <= set(VariantBuilder.MUTATIONS)


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


def test_the_original_answers_on_every_variant_but_empty(variants):
    for name, db in variants.items():
        assert bool(_rows(db, QUERY)) is (name != "empty"), name


def test_dates_stay_dates(variants):
    for name, db in variants.items():
        for (value,) in _rows(db, "SELECT created_at FROM orders"):
            dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S"), name


def test_query_literals_resolve_aliases(variants):
    tables = variants["sample"].tables()
    found = query_literals(QUERY, tables)
    assert found[("orders", "total")] == [500]
    assert found[("orders", "created_at")] == ["2024-01-01 00:00:00"]


def test_query_literals_double_quoted_strings_and_derived_tables(variants):
    tables = variants["sample"].tables()
    # "Ada" names no column: SQLite (and query_literals) read it as a string; "city" is a column.
    found = query_literals('SELECT * FROM users WHERE name = "Ada" AND city = "city"', tables)
    assert found == {("users", "name"): ["Ada"]}
    derived = (
        "SELECT k, n FROM (SELECT user_id AS k, COUNT(*) AS n FROM orders GROUP BY user_id) WHERE k = 492"
    )
    assert query_literals(derived, tables) == {("orders", "user_id"): [492]}
    assert query_literals("SELECT", tables) == {}


def test_source_is_never_modified(small_db, tmp_path):
    conn = apsw.Connection(small_db, flags=apsw.SQLITE_OPEN_READONLY)
    before = list(conn.execute("SELECT COUNT(*), SUM(total) FROM orders"))
    source = SQLiteBackend.open(small_db)
    image = source.serialize()
    VariantBuilder(source, seed=5).build(QUERY)
    assert list(conn.execute("SELECT COUNT(*), SUM(total) FROM orders")) == before
    assert source.serialize() == image


def test_deterministic_given_the_seed(small_db):
    source = SQLiteBackend.open(small_db)
    a = VariantBuilder(source, seed=3).build(QUERY, 5)
    b = VariantBuilder(source, seed=3).build(QUERY, 5)
    c = VariantBuilder(source, seed=4).build(QUERY, 5)
    assert a == b
    assert [v.rows for v in a] != [v.rows for v in c]
    assert all(isinstance(v, Variant) for v in a) and [v.name for v in a] == list(
        VariantBuilder.MUTATIONS[:5]
    )


def test_lineage_seeds_a_selective_answer(small_db):
    source = SQLiteBackend.open(small_db)
    ((email, total),) = source.query(
        "SELECT u.email, o.total FROM orders o JOIN users u ON u.id = o.user_id ORDER BY o.id DESC LIMIT 1"
    )
    sql = f"SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE u.email = '{email}' AND o.total = {total}"
    (sample,) = VariantBuilder(source, rows_per_table=10, seed=0).build(sql, 1)
    assert _rows(sample.load(SQLiteBackend), sql)


# --- strategies ---------------------------------------------------------------------------


def _built(source, sql, name):
    index = VariantBuilder.MUTATIONS.index(name)
    variant = VariantBuilder(source, rows_per_table=40, seed=0).build(sql, index + 1)[index]
    assert variant.name == name
    return variant.load(SQLiteBackend)


@pytest.fixture(scope="module")
def shop_source(small_db):
    return SQLiteBackend.open(small_db)


def test_groups_are_sized_at_the_count_threshold(shop_source):
    sql = "SELECT user_id, COUNT(*) FROM orders WHERE status = 'paid' GROUP BY user_id HAVING COUNT(*) > 5"
    db = _built(shop_source, sql, "groups")
    sizes = {n for (n,) in _rows(db, "SELECT COUNT(*) FROM orders WHERE status = 'paid' GROUP BY user_id")}
    assert {4, 5, 6, 7} <= sizes


def test_groups_with_exactly_k_distinct_values(shop_source):
    sql = "SELECT user_id FROM orders GROUP BY user_id HAVING COUNT(DISTINCT status) = 3"
    db = _built(shop_source, sql, "aggregates")
    assert (3,) in _rows(db, "SELECT COUNT(DISTINCT status) FROM orders GROUP BY user_id")


def test_aggregates_land_on_the_literal(shop_source):
    sql = "SELECT user_id, SUM(total) FROM orders GROUP BY user_id HAVING SUM(total) > 750"
    db = _built(shop_source, sql, "aggregates")
    sums = [s for (s,) in _rows(db, "SELECT SUM(total) FROM orders GROUP BY user_id")]
    assert any(abs(s - 750) < 1e-9 for s in sums)
    mins = [m for (m,) in _rows(db, "SELECT MIN(total) FROM orders GROUP BY user_id")]
    assert 750 in mins


def test_near_duplicates_keep_a_grouping_column_and_change_others(shop_source):
    sql = "SELECT user_id, status, COUNT(*) FROM orders GROUP BY user_id, status"
    db = _built(shop_source, sql, "near_duplicates")
    mixed = _rows(db, "SELECT user_id FROM orders GROUP BY user_id HAVING COUNT(DISTINCT status) > 1")
    assert mixed
    assert list(db.connection.execute("PRAGMA foreign_key_check")) == []


def test_strings_contain_the_literal_in_other_cases(shop_source):
    sql = "SELECT id FROM users WHERE country = 'DE'"
    db = _built(shop_source, sql, "strings")
    values = {v for (v,) in _rows(db, "SELECT country FROM users")}
    assert "DE" in values
    assert {"de", "DE "} & values
    assert any("DE" in v and v != "DE" for v in values)
    dq = _built(shop_source, 'SELECT id FROM users WHERE country = "DE"', "strings")
    assert any(v != "DE" and "de" in v.lower() for (v,) in _rows(dq, "SELECT country FROM users"))


def test_like_patterns_are_matched_non_trivially(shop_source):
    sql = "SELECT id FROM orders WHERE coupon_code LIKE 'SAVE-a%'"
    db = _built(shop_source, sql, "strings")
    codes = {v for (v,) in _rows(db, "SELECT coupon_code FROM orders WHERE coupon_code LIKE 'SAVE-a%'")}
    assert len(codes) >= 2


def test_skew_ranks_counts_and_sums_differently(shop_source):
    sql = "SELECT user_id FROM orders GROUP BY user_id ORDER BY COUNT(*) DESC LIMIT 1"
    db = _built(shop_source, sql, "skew")
    by_count = _rows(
        db, "SELECT user_id FROM orders GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT 1"
    )
    by_sum = _rows(
        db, "SELECT user_id FROM orders GROUP BY user_id ORDER BY SUM(total) DESC, user_id LIMIT 1"
    )
    assert by_count != by_sum


def test_childless_keeps_every_table_populated(shop_source):
    db = _built(shop_source, QUERY, "childless")
    assert _rows(db, "SELECT COUNT(*) FROM orders")[0][0] > 0
    assert _rows(db, "SELECT COUNT(*) FROM users WHERE id NOT IN (SELECT user_id FROM orders)")[0][0] > 0


# --- constraints, on every shipped schema and on odd user schemas ------------------------------


def violations(db: SQLiteBackend) -> list[str]:
    """Every declared NOT NULL, key and foreign key a database breaks (foreign keys to non-unique
    columns included, which PRAGMA foreign_key_check refuses to check)."""
    conn = db.connection
    out = []
    tables = {k: v for k, v in db.tables().items() if not v.is_view}
    for info in tables.values():
        t = f'"{info.name}"'
        for col in info.columns:
            if col.notnull and conn.execute(f'SELECT COUNT(*) FROM {t} WHERE "{col.name}" IS NULL').get:
                out.append(f"{info.name}.{col.name} NULL")
        for key in info.unique_sets:
            cols = ", ".join(f'"{c}"' for c in key)
            nonnull = " AND ".join(f'"{c}" IS NOT NULL' for c in key)
            dup = f"SELECT COUNT(*) FROM (SELECT 1 FROM {t} WHERE {nonnull} GROUP BY {cols} HAVING COUNT(*) > 1)"
            if conn.execute(dup).get:
                out.append(f"{info.name}{key} duplicate")
        for fk in info.foreign_keys:
            parent = tables.get(fk.ref_table.lower())
            refs = fk.ref_columns or (parent.primary_key if parent else ())
            if parent is None or len(refs) != len(fk.columns):
                continue
            match = " AND ".join(f'p."{r}" = c."{c}"' for c, r in zip(fk.columns, refs))
            nonnull = " AND ".join(f'c."{c}" IS NOT NULL' for c in fk.columns)
            sql = f'SELECT COUNT(*) FROM {t} c WHERE {nonnull} AND NOT EXISTS (SELECT 1 FROM "{parent.name}" p WHERE {match})'
            if conn.execute(sql).get:
                out.append(f"{info.name}{fk.columns} dangling")
    return out


SUITE_TASKS = [(name, i) for name in sorted(list_suites()) for i in range(4)]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SUITE_TASKS), st.integers(0, 2**16))
def test_property_every_variant_satisfies_the_declared_constraints(choice, seed):
    name, slot = choice
    suite = get_suite(name)
    task = suite.tasks[(slot * 7919 + seed) % len(suite.tasks)]
    source = SQLiteBackend.open(suite.database("variant"))
    for variant in VariantBuilder(source, rows_per_table=30, seed=seed).build(task.query):
        db = variant.load(SQLiteBackend)
        assert violations(db) == [], (task.id, variant.name)
        assert db.connection.execute("PRAGMA integrity_check").get == "ok"
        db.close()
    source.close()


def _odd_database(path, width: int) -> None:
    conn = apsw.Connection(str(path))
    conn.limit(apsw.SQLITE_LIMIT_VARIABLE_NUMBER, 32766)
    columns = ", ".join(f"c{i} INTEGER" for i in range(1, width))
    with conn:
        conn.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {columns})")
        conn.execute(f"CREATE TABLE wide_norowid_alias (code TEXT PRIMARY KEY, {columns})")
        conn.execute("CREATE TABLE tags (code TEXT NOT NULL, label TEXT NOT NULL)")  # code is no key
        conn.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, code TEXT REFERENCES tags(code), "
            "wide_id INTEGER NOT NULL REFERENCES wide(id), qty INTEGER NOT NULL)"
        )
        marks = ", ".join("?" for _ in range(width))
        conn.executemany(
            f"INSERT INTO wide VALUES ({marks})",
            [(r, *[(r * i) % 97 for i in range(1, width)]) for r in range(1, 41)],
        )
        conn.executemany(
            f"INSERT INTO wide_norowid_alias VALUES ({marks})",
            [(f"k{r}", *[r + i for i in range(1, width)]) for r in range(1, 11)],
        )
        conn.executemany(
            "INSERT INTO tags VALUES (?, ?)", [(c, f"{c}-{n}") for c in "abcde" for n in range(3)]
        )
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(i, "abcde"[i % 5], i % 40 + 1, i % 7) for i in range(1, 121)],
        )
    conn.close()


@pytest.mark.parametrize("width", [40, 2000])
def test_wide_tables_and_foreign_keys_to_non_unique_columns_evaluate(tmp_path, width):
    options: dict = {}
    path = tmp_path / f"odd{width}.db"
    _odd_database(path, width)
    last = f"c{width - 1}"
    slow = f"SELECT i.id, w.{last}, i.qty FROM items i JOIN wide w ON w.id = i.wide_id WHERE i.code = 'b' AND i.qty > 2"
    same = f"SELECT i.id, w.{last}, i.qty FROM wide w JOIN items i ON i.wide_id = w.id WHERE i.qty > 2 AND i.code = 'b'"
    wrong = f"SELECT i.id, w.{last}, i.qty FROM items i JOIN wide w ON w.id = i.wide_id WHERE i.code = 'b' AND i.qty >= 2"
    good = quill_env.evaluate(path, slow, same, **options)
    assert good.correct is True, (good.verdict, good.error)
    assert good.variants and all(v.status == "match" for v in good.variants)
    bad = quill_env.evaluate(path, slow, wrong, **options)
    assert bad.verdict is Verdict.WRONG_RESULT
    star = quill_env.evaluate(
        path,
        "SELECT * FROM wide_norowid_alias WHERE c1 > 3",
        "SELECT * FROM wide_norowid_alias WHERE c1 >= 4",
        **options,
    )
    assert star.correct is True, (star.verdict, star.error)


def test_foreign_key_to_non_unique_column_holds_in_every_variant(tmp_path):
    path = tmp_path / "odd.db"
    _odd_database(path, 40)
    source = SQLiteBackend.open(path)
    built = VariantBuilder(source, rows_per_table=20, seed=2).build(
        "SELECT t.label, i.qty FROM items i JOIN tags t ON t.code = i.code WHERE t.label = 'c-1'"
    )
    for variant in built:
        db = variant.load(SQLiteBackend)
        assert violations(db) == [], variant.name
        if variant.name != "empty":
            assert _rows(db, "SELECT COUNT(*) FROM items")[0][0] > 0, variant.name
    counts = Counter(
        bool(
            _rows(
                v.load(SQLiteBackend),
                "SELECT 1 FROM items i JOIN tags t ON t.code = i.code WHERE t.label = 'c-1'",
            )
        )
        for v in built
    )
    assert counts[True] >= 6


ODD_QUERIES = [
    "",
    "SELECT",
    "DELETE FROM orders",
    "SELECT 1",
    "SELECT * FROM nowhere",
    "SELECT * FROM orders WHERE id = ?",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i FROM n",
    "WITH big AS (SELECT user_id, SUM(total) s FROM orders GROUP BY user_id HAVING SUM(total) > 900) "
    "SELECT u.name FROM users u JOIN big ON big.user_id = u.id WHERE u.country IN ('DE', 'FR')",
    "SELECT country, COUNT(*) OVER (PARTITION BY country) FROM users WHERE is_active = 1",
    "SELECT id FROM users EXCEPT SELECT user_id FROM orders WHERE status = 'paid'",
    "SELECT u.id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total > 100)",
    "SELECT * FROM (SELECT * FROM (SELECT id AS k, email FROM users) WHERE k > 3) WHERE email LIKE 'user1%'",
    "SELECT a.id, b.id FROM orders a JOIN orders b ON a.user_id = b.user_id AND a.id < b.id WHERE a.total = b.total",
    "SELECT user_id FROM orders GROUP BY user_id HAVING COUNT(*) > (SELECT COUNT(*) FROM users) / 100",
    "SELECT (SELECT MAX(total) FROM orders o WHERE o.user_id = u.id) FROM users u ORDER BY 1 DESC LIMIT 3 OFFSET 1",
    "SELECT * FROM orders WHERE total BETWEEN -5 AND 1e3 AND notes GLOB '*x*' AND coupon_code NOT LIKE 'SAVE%'",
    'SELECT * FROM users WHERE "name" = "no such column" OR city = \'Oslo\ud800\'',
    "SELECT value FROM json_each('[1, 2]')",
    "VALUES (1), (2)",
    "SELECT COUNT(DISTINCT status), TOTAL(discount), AVG(quantity) FROM orders WHERE created_at >= date('2020-01-01', '+1 month')",
]


@pytest.mark.parametrize("sql", ODD_QUERIES)
def test_any_query_builds_every_variant(shop_source, sql):
    built = VariantBuilder(shop_source, rows_per_table=15, seed=1).build(sql)
    assert [v.name for v in built] == list(VariantBuilder.MUTATIONS)
    for variant in built:
        assert violations(variant.load(SQLiteBackend)) == [], variant.name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_random_text_never_raises(shop_source, text):
    assert len(VariantBuilder(shop_source, rows_per_table=5, seed=0).build(text, 3)) == 3


# --- engine-neutral: the same builder on every backend -------------------------------------------

ENGINES = ["sqlite", "duckdb"]

NEUTRAL_QUERIES = [
    QUERY,
    "SELECT user_id, COUNT(*) FROM orders WHERE status = 'paid' GROUP BY user_id HAVING COUNT(*) > 2",
    "SELECT u.id FROM users u WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.total > 100)",
]


def _engine(name: str):
    if name == "duckdb":
        return pytest.importorskip("quill_env.backends.duckdb").DuckDBBackend
    return SQLiteBackend


def _rows_of(db, info) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in info.column_names)
    return db.query(f'SELECT {cols} FROM "{info.name}" ORDER BY rowid')


@pytest.fixture(scope="module")
def engine_sources(small_db):
    """The shop database on each engine (DuckDB: the SQLite schema and rows, ported)."""
    sqlite = SQLiteBackend.open(small_db)
    out = {"sqlite": sqlite}
    try:
        from quill_env.backends.duckdb import DuckDBBackend
    except ImportError:
        return out
    infos = [t for t in sqlite.tables().values() if not t.is_view]
    rows = {t.name: _rows_of(sqlite, t) for t in infos}
    out["duckdb"] = DuckDBBackend.from_rows([t.sql for t in infos], rows, dialect="sqlite")
    return out


def _source(engine_sources, engine: str):
    _engine(engine)
    return engine_sources[engine]


def _ported(sql: str, engine: str) -> str:
    import sqlglot

    return sql if engine == "sqlite" else sqlglot.transpile(sql, read="sqlite", write=engine)[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_variants_are_rows_that_load_on_the_source_engine(engine_sources, engine):
    source = _source(engine_sources, engine)
    cls = type(source)
    built = VariantBuilder(source, rows_per_table=20, seed=1).build(_ported(QUERY, engine), 6)
    assert [v.name for v in built] == list(VariantBuilder.MUTATIONS[:6])
    for variant in built:
        assert variant.dialect == source.dialect
        assert set(variant.rows) == {"users", "orders"}
        db = variant.load(cls)
        assert db.label == variant.name and type(db) is cls
        for info in db.tables().values():
            assert _rows_of(db, info) == list(variant.rows[info.name]), (variant.name, info.name)
        db.close()
    assert VariantBuilder(source, rows_per_table=20, seed=1).build(_ported(QUERY, engine), 6) == built


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sql", NEUTRAL_QUERIES)
def test_declared_constraints_hold_and_the_original_answers_on_every_engine(engine_sources, engine, sql):
    source = _source(engine_sources, engine)
    query = _ported(sql, engine)
    answered = 0
    for variant in VariantBuilder(source, rows_per_table=30, seed=0).build(query):
        db = variant.load(type(source))
        assert _rows(db, "SELECT COUNT(*) FROM users WHERE email IS NULL OR name IS NULL") == [(0,)]
        assert _rows(db, "SELECT COUNT(*) - COUNT(DISTINCT email) FROM users") == [(0,)]
        dangling = (
            "SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id)"
        )
        assert _rows(db, dangling) == [(0,)], variant.name
        answered += bool(_rows(db, query)) and variant.name != "empty"
        db.close()
    assert answered >= 8  # of the 12 that are not "empty" (SQLite today: 12, 9 and 12)


def test_a_variant_built_on_sqlite_loads_on_duckdb(shop_source):
    duckdb_backend = _engine("duckdb")
    (variant,) = VariantBuilder(shop_source, rows_per_table=10, seed=0).build(QUERY, 1)
    db = variant.load(duckdb_backend, label="ported")
    assert db.label == "ported"
    for name, rows in variant.rows.items():
        info = db.tables()[name]
        assert sorted(_rows_of(db, info), key=repr) == sorted(rows, key=repr), name
