"""The ``tpch`` suite (issue 14): TPC-H's own generator and templates, qgen's parameters, the tasks."""

import datetime as dt
import importlib.util
import json
import subprocess
import sys

import apsw
import pytest

import quill_env
from quill_env import MissingExtraError, SuiteError, get_suite, list_suites
from quill_env.canonical import fingerprint
from quill_env.tasks import Suite
from quill_env.tpch import dbgen, qgen
from quill_env.tpch.references import REWRITES
from quill_env.tpch.templates import TEMPLATES

HAVE_TPCH = importlib.util.find_spec("duckdb_extension_tpch") is not None
needs_tpch = pytest.mark.skipif(not HAVE_TPCH, reason='needs pip install "quill-sql[tpch]"')
SHIPPED_SEED = 20240601
"""The seed of the shipped instances (``scripts/tpch_tasks.py``)."""


@pytest.fixture(scope="module")
def tpch():
    return get_suite("tpch")


# --- qgen's parameters --------------------------------------------------------------------------


def _draws(template, n=60):
    return [qgen.params_for(template, i, seed=5) for i in range(n)]


def _first_of_month(day, lo, hi):
    return day.day == 1 and lo <= day <= hi


def test_parameters_follow_the_specification():
    """Each template's parameters stay inside TPC-H's substitution rules (clause 2.4.N.3)."""
    nations = {n for n, _ in qgen.NATIONS}
    years = {dt.date(y, 1, 1) for y in range(1993, 1998)}
    assert {p["DELTA"] for p in _draws(1)} <= set(range(60, 121))
    for p in _draws(2):
        assert 1 <= p["SIZE"] <= 50 and p["TYPE"] in qgen.TYPE_SYLLABLES[2] and p["REGION"] in qgen.REGIONS
    for p in _draws(3):
        assert p["SEGMENT"] in qgen.SEGMENTS and dt.date(1995, 3, 1) <= p["DATE"] <= dt.date(1995, 3, 31)
    assert all(_first_of_month(p["DATE"], dt.date(1993, 1, 1), dt.date(1997, 10, 1)) for p in _draws(4))
    assert all(p["DATE"] in years and p["REGION"] in qgen.REGIONS for p in _draws(5))
    for p in _draws(6):
        assert p["DATE"] in years and 0.02 <= p["DISCOUNT"] <= 0.09 and p["QUANTITY"] in (24, 25)
    assert all(p["NATION1"] != p["NATION2"] and {p["NATION1"], p["NATION2"]} <= nations for p in _draws(7))
    regions = dict(qgen.NATIONS)
    for p in _draws(8):
        assert qgen.REGIONS[regions[p["NATION"]]] == p["REGION"] and len(p["TYPE"].split()) == 3
    assert all(p["COLOR"] in qgen.COLORS for p in _draws(9)) and len(qgen.COLORS) == 92
    assert all(_first_of_month(p["DATE"], dt.date(1993, 2, 1), dt.date(1995, 1, 1)) for p in _draws(10))
    assert all(p["SHIPMODE1"] != p["SHIPMODE2"] and p["DATE"] in years for p in _draws(12))
    for p in _draws(16):
        assert len(set(p["SIZES"])) == 8 and all(1 <= s <= 50 for s in p["SIZES"])
        assert p["BRAND"][:6] == "Brand#" and set(p["BRAND"][6:]) <= set("12345")
    assert {p["QUANTITY"] for p in _draws(18)} <= {312, 313, 314, 315}
    for p in _draws(19):
        assert 1 <= p["QUANTITY1"] <= 10 and 10 <= p["QUANTITY2"] <= 20 and 20 <= p["QUANTITY3"] <= 30
    for p in _draws(22):
        assert len(set(p["CODES"])) == 7 and all(10 <= int(c) <= 34 for c in p["CODES"])
    # the draws vary: a constant "parameter" would pass every range above
    assert len({p["DATE"] for p in _draws(3)}) > 10 and len({p["NATION"] for p in _draws(21)}) > 10


def test_instances_are_deterministic_and_vary():
    a = [qgen.instance(q, i, 3).sql for q in TEMPLATES for i in range(3)]
    assert a == [qgen.instance(q, i, 3).sql for q in TEMPLATES for i in range(3)]
    assert len(set(a)) > 60
    assert qgen.instance(6, 0, 3).sql != qgen.instance(6, 0, 4).sql


def test_render_keeps_the_template_text_and_checks_the_placeholders():
    sql = qgen.instance(19, 0, 1).sql
    assert "FROM lineitem, part" in sql and "CROSS JOIN" not in sql and ":" not in sql.replace("':", "")
    with pytest.raises(KeyError, match="no value"):
        qgen.render("SELECT 1 FROM t WHERE a = :a AND b = :b", {"a": 1})
    with pytest.raises(KeyError, match="without a placeholder"):
        qgen.render("SELECT 1 FROM t WHERE a = :a", {"a": 1, "c": 2})
    assert (
        qgen.render("SELECT ':a' FROM t WHERE x = :a", {"a": "it's"})
        == "SELECT ':a' FROM t WHERE x = 'it''s'"
    )


def test_every_rewrite_renders_with_its_templates_parameters():
    for q, rewrites in REWRITES.items():
        values = qgen.bindings(q, qgen.VALIDATION[q])
        for rewrite in rewrites:
            assert ":" not in qgen.render(rewrite.action(q), values).replace("':", ""), (q, rewrite.name)


# --- the generator ------------------------------------------------------------------------------


def test_benchmark_suites_are_listed_only_on_request():
    assert "tpch" not in list_suites() and "tpch" in list_suites(benchmarks=True)
    assert "Quill-tpch-v1" in quill_env.registration.REGISTERED


def test_the_suite_and_its_hash_import_no_database_driver():
    code = (
        "import sys, quill_env; s = quill_env.get_suite('tpch'); s.data_hash; s.scales; "
        "from quill_env.tpch import qgen, references, workload; qgen.instance(2, 0, 1); "
        "print(sorted(m for m in sys.modules if m.startswith('duckdb')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_generator_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb_extension_tpch", None)
    with pytest.raises(MissingExtraError, match=r'pip install "quill-sql\[tpch\]"'):
        dbgen.connect()


def test_data_hash_follows_the_generator_version(tpch, monkeypatch):
    before = Suite.load(tpch.path).data_hash
    monkeypatch.setattr(dbgen, "generator_version", lambda: "duckdb 9.9.9, duckdb-extension-tpch 9.9.9")
    assert Suite.load(tpch.path).data_hash != before
    shop = get_suite("shop")
    assert Suite.load(shop.path).data_hash == shop.data_hash  # Quill's own generator: unchanged


@needs_tpch
def test_a_generator_writing_other_row_counts_fails(tpch):
    spec = json.loads(json.dumps(tpch.generator))
    spec["tables"]["nation"]["rows"]["variant"] = 24
    with pytest.raises(SuiteError, match="wrote 25 rows of nation"):
        dbgen.generate_tables(spec, "variant")


@needs_tpch
def test_small_tier_has_the_tpch_rows_and_keys(tpch):
    con = apsw.Connection(str(tpch.database("small")), flags=apsw.SQLITE_OPEN_READONLY)
    for table, spec in tpch.generator["tables"].items():
        assert con.execute(f"SELECT count(*) FROM {table}").get == spec["rows"]["small"], table
    fks = {(r[2], r[3], r[4]) for r in con.execute("SELECT * FROM pragma_foreign_key_list('lineitem')")}
    assert {("partsupp", "l_partkey", "ps_partkey"), ("partsupp", "l_suppkey", "ps_suppkey")} <= fks
    assert ("orders", "l_orderkey", "o_orderkey") in fks
    pk = [r[1] for r in con.execute("SELECT * FROM pragma_table_info('lineitem') WHERE pk > 0 ORDER BY pk")]
    assert pk == ["l_orderkey", "l_linenumber"]
    assert con.execute("SELECT count(*) FROM pragma_foreign_key_check").get == 0
    nations = con.execute("SELECT n_name, n_regionkey FROM nation ORDER BY n_nationkey").fetchall()
    assert [tuple(r) for r in nations] == list(qgen.NATIONS)
    regions = [r[0] for r in con.execute("SELECT r_name FROM region ORDER BY r_regionkey")]
    assert tuple(regions) == qgen.REGIONS
    con.close()


@needs_tpch
def test_validation_queries_match_duckdbs_own_tpch_queries(tpch):
    """Each template with the specification's parameters, ported to DuckDB and run on the suite's
    DuckDB database, returns what DuckDB's own ``tpch_queries()`` return on ``dbgen``'s tables."""
    import duckdb

    from quill_env.backends.duckdb import DuckDBBackend

    official = dbgen.connect()
    official.execute("CALL dbgen(sf = 0.01)")
    ours = duckdb.connect(str(tpch.database("small", engine="duckdb")), read_only=True)
    port = DuckDBBackend.port.__get__(DuckDBBackend.__new__(DuckDBBackend))
    try:
        for q, text in official.execute("SELECT query_nr, query FROM tpch_queries()").fetchall():
            want = official.execute(text).fetchall()
            got = ours.execute(port(qgen.validation_query(q), "sqlite")).fetchall()
            assert len(got) == len(want), q
            for a, b in zip(got, want):
                for x, y in zip(a, b):
                    if isinstance(x, float) or isinstance(y, float) or type(y).__name__ == "Decimal":
                        assert float(x) == pytest.approx(float(y), rel=1e-6), (q, a, b)
                    else:
                        assert str(x) == str(y), (q, a, b)
    finally:
        official.close()
        ours.close()


# --- the shipped tasks --------------------------------------------------------------------------


def test_shipped_tasks_are_qgen_instances_split_by_template(tpch):
    meta = json.loads((tpch.path / "meta.json").read_text())
    by_template = {}
    for task in tpch.tasks:
        name = task.id.split("/")[1]
        q, i = int(name[1:3]), int(name[4:])
        assert task.query == qgen.instance(q, i, meta["seed"]).sql, task.id
        assert task.split == ("test" if q in qgen.TEST_TEMPLATES else "train")
        by_template.setdefault(q, []).append(task)
    assert meta["seed"] == SHIPPED_SEED
    assert set(by_template) == set(range(1, 23)) - {18}, "Q18 finds no order at sf 0.01 (see meta.json)"
    assert all(len(tasks) >= 2 for tasks in by_template.values())
    train = {q for q, ts in by_template.items() if ts[0].split == "train"}
    assert train and not train & set(qgen.TEST_TEMPLATES)
    assert len({fingerprint(t.query) for t in tpch.tasks}) == len(tpch.tasks)
    with_reference = [t for t in tpch.tasks if t.reference]
    assert len(with_reference) >= 30
    assert all(t.reference_speedup["small"] >= 1.5 for t in with_reference)
    assert all("no reference" in t.notes for t in tpch.tasks if not t.reference)
