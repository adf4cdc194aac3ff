"""The heuristic agent: each rewrite rule fires when safe and declines when not, every shipped
training task verifies, and database mode keeps only indexes the plan uses."""

import collections

import pytest

import quill_env
from quill_agents.heuristic import HeuristicAgent, parse_schema
from quill_agents.heuristic import rewrites as rw
from quill_agents.heuristic.advisor import advise
from quill_agents.heuristic.sqlutil import parse, render

SCHEMA = """-- users: 1,000 rows
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  country TEXT NOT NULL,
  city TEXT
);
-- orders: 5,000 rows
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users(id),
  referrer_id INTEGER REFERENCES users(id),
  status TEXT NOT NULL,
  total REAL NOT NULL,
  created_at TEXT NOT NULL,
  n INT PRIMARY KEY
);
CREATE INDEX idx_orders_status ON orders(status);"""

CTX = rw.Context(parse_schema(SCHEMA))


def apply(rule, sql, ctx=CTX):
    out = rule(parse(sql), ctx)
    return None if out is None else render(out)


# --- schema --------------------------------------------------------------------------------


def test_schema_parsing():
    cat = parse_schema(SCHEMA)
    orders = cat.table("orders")
    assert orders.rows == 5000 and cat.table("users").rows == 1000
    assert orders.rowid_alias == "id"
    assert orders.not_null("user_id") and not orders.not_null("referrer_id")
    assert ("status",) in orders.indexes
    assert cat.table("users").is_unique_key("email")
    assert orders.column("n").type == "INT"  # INT PRIMARY KEY is not a rowid alias


# --- rules ---------------------------------------------------------------------------------


def test_or_to_in():
    out = apply(rw.or_to_in, "SELECT id FROM orders WHERE user_id = 1 OR user_id = 2 OR status = 'x'")
    assert out == "SELECT id FROM orders WHERE user_id IN (1, 2) OR status = 'x'"
    assert apply(rw.or_to_in, "SELECT id FROM orders WHERE user_id = 1 OR status = 'x'") is None


def test_date_functions_to_ranges():
    day = apply(rw.date_function_to_range, "SELECT id FROM orders WHERE date(created_at) = '2024-02-28'")
    assert day == "SELECT id FROM orders WHERE created_at >= '2024-02-28' AND created_at < '2024-02-29'"
    month = apply(
        rw.date_function_to_range, "SELECT id FROM orders WHERE strftime('%Y-%m', created_at) = '2023-12'"
    )
    assert "created_at >= '2023-12-01' AND created_at < '2024-01-01'" in month
    year = apply(rw.date_function_to_range, "SELECT id FROM orders WHERE strftime('%Y', created_at) = '2023'")
    assert "created_at >= '2023-01-01' AND created_at < '2024-01-01'" in year
    # a REAL column may hold Julian days: not a text range
    assert apply(rw.date_function_to_range, "SELECT id FROM orders WHERE date(total) = '2024-01-01'") is None


def test_arithmetic_to_range_only_on_rowid():
    out = apply(rw.arithmetic_to_range, "SELECT id FROM orders WHERE id - 1000 BETWEEN 0 AND 50")
    assert out == "SELECT id FROM orders WHERE id BETWEEN 1000 AND 1050"
    assert apply(rw.arithmetic_to_range, "SELECT id FROM orders WHERE user_id - 1 BETWEEN 0 AND 5") is None


def test_count_to_exists():
    sql = "SELECT u.id FROM users u WHERE (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) > 0"
    assert "WHERE EXISTS(SELECT 1 FROM orders AS o WHERE o.user_id = u.id)" in apply(rw.count_to_exists, sql)
    zero = sql.replace("> 0", "= 0")
    assert "NOT EXISTS" in apply(rw.count_to_exists, zero)
    assert apply(rw.count_to_exists, sql.replace("> 0", "> 1")) is None
    assert apply(rw.count_to_exists, sql.replace("COUNT(*)", "COUNT(o.referrer_id)")) is None


def test_not_in_to_not_exists_needs_not_null():
    sql = "SELECT id FROM users WHERE country = 'NZ' AND id NOT IN (SELECT user_id FROM orders WHERE status = 'c')"
    out = apply(rw.not_in_to_not_exists, sql)
    assert "NOT EXISTS(SELECT 1 FROM orders AS x WHERE x.user_id = users.id AND x.status = 'c')" in out
    nullable = sql.replace("SELECT user_id", "SELECT referrer_id")
    assert apply(rw.not_in_to_not_exists, nullable) is None
    nullable_lhs = "SELECT id FROM orders WHERE referrer_id NOT IN (SELECT id FROM users)"
    assert apply(rw.not_in_to_not_exists, nullable_lhs) is None


def test_correlated_count_gets_coalesce():
    sql = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n_orders FROM users u"
    out = apply(rw.scalar_aggregates_to_join, sql)
    assert "COALESCE(agg.v0, 0) AS n_orders" in out and "LEFT JOIN" in out and "GROUP BY o.user_id" in out
    summed = apply(rw.scalar_aggregates_to_join, sql.replace("COUNT(*)", "SUM(o.total)"))
    assert "agg.v0 AS n_orders" in summed and "COALESCE" not in summed
    assert apply(rw.scalar_aggregates_to_join, sql + " LIMIT 3") is None
    assert apply(rw.scalar_aggregates_to_join, sql.replace("u.id,", "*,")) is None


def test_repeated_aggregates_share_one_join():
    sql = (
        "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n, "
        "(SELECT MAX(o.total) FROM orders o WHERE o.user_id = u.id) AS top FROM users u"
    )
    out = apply(rw.scalar_aggregates_to_join, sql)
    assert out.count("JOIN") == 1 and "COALESCE(agg.v0, 0) AS n" in out and "agg.v1 AS top" in out


def test_where_aggregate_to_join_only_null_strict():
    sql = "SELECT o.id FROM orders o WHERE o.total > (SELECT 3 * AVG(o2.total) FROM orders o2 WHERE o2.user_id = o.user_id)"
    assert "JOIN (SELECT o2.user_id AS k0, 3 * AVG(o2.total) AS v" in apply(rw.where_aggregate_to_join, sql)
    assert apply(rw.where_aggregate_to_join, sql.replace("3 * AVG(o2.total)", "COUNT(*)")) is None
    assert (
        apply(rw.where_aggregate_to_join, sql.replace("3 * AVG", "COALESCE(AVG(o2.total), 0) + AVG")) is None
    )


def test_join_to_exists_and_cartesian():
    sql = "SELECT DISTINCT u.id, u.name FROM users u JOIN orders o ON o.user_id = u.id WHERE u.country = 'IS' AND o.status = 'd'"
    out = apply(rw.join_to_exists, sql)
    assert out.endswith(
        "WHERE u.country = 'IS' AND EXISTS(SELECT 1 FROM orders AS o WHERE o.user_id = u.id AND o.status = 'd')"
    )
    assert apply(rw.join_to_exists, sql.replace("DISTINCT ", "")) is None  # multiplicity matters
    assert apply(rw.join_to_exists, sql.replace("u.name", "o.total")) is None  # o contributes output
    assert apply(rw.join_to_exists, sql.replace("u.id, u.name", "*")) is None  # * includes o
    cart = apply(rw.join_to_exists, "SELECT DISTINCT u.name FROM users u, orders o WHERE u.country = 'DE'")
    assert (
        cart
        == "SELECT DISTINCT u.name FROM users AS u WHERE u.country = 'DE' AND EXISTS(SELECT 1 FROM orders AS o)"
    )


def test_drop_distinct_needs_unique_key():
    assert (
        apply(rw.drop_redundant_distinct, "SELECT DISTINCT id, name FROM users")
        == "SELECT id, name FROM users"
    )
    assert apply(rw.drop_redundant_distinct, "SELECT DISTINCT name FROM users") is None
    assert apply(rw.drop_redundant_distinct, "SELECT DISTINCT referrer_id FROM orders") is None


def test_union_rules():
    sql = "SELECT id, total FROM orders WHERE status = 'a' UNION SELECT id, total FROM orders WHERE status = 'b'"
    assert apply(rw.union_to_in, sql) == "SELECT id, total FROM orders WHERE status IN ('a', 'b')"
    no_key = sql.replace("id, total", "total")
    assert apply(rw.union_to_in, no_key).startswith("SELECT DISTINCT total")
    assert "UNION ALL" in apply(rw.union_to_union_all, sql)
    assert apply(rw.union_to_union_all, no_key) is None
    assert apply(rw.union_to_union_all, sql.replace("'b'", "'a'")) is None


def test_having_and_group_filters():
    out = apply(
        rw.having_to_where, "SELECT user_id, COUNT(*) FROM orders GROUP BY user_id HAVING user_id = 3"
    )
    assert out == "SELECT user_id, COUNT(*) FROM orders WHERE user_id = 3 GROUP BY user_id"
    assert (
        apply(rw.having_to_where, "SELECT user_id FROM orders GROUP BY user_id HAVING COUNT(*) > 3") is None
    )
    sql = "SELECT k, n FROM (SELECT user_id AS k, COUNT(*) AS n FROM orders GROUP BY user_id) WHERE k = 30"
    assert apply(rw.filter_into_group, sql) == (
        "SELECT user_id AS k, COUNT(*) AS n FROM orders WHERE user_id = 30 GROUP BY user_id"
    )
    assert apply(rw.filter_into_group, sql.replace("k = 30", "n = 30")) is None


def test_comma_joins_are_kept():
    tree = parse(
        "SELECT u.id FROM users u, orders o WHERE o.user_id = u.id AND o.status = 'x' OR o.status = 'x'"
    )
    assert ", orders AS o" in render(tree) and "CROSS" not in render(tree)


# --- advisor -------------------------------------------------------------------------------


def test_advisor_equality_then_order():
    tree = parse("SELECT id FROM orders WHERE user_id = 7 AND status = 'd' ORDER BY created_at, id")
    cols = [c.columns for c in advise(tree, CTX.catalog, "SCAN orders")]
    assert ("user_id", "status", "created_at") in cols
    tree = parse("SELECT u.id, (SELECT MAX(o.total) FROM orders o WHERE o.user_id = u.id) AS m FROM users u")
    best = advise(tree, CTX.catalog, "SCAN u\nCORRELATED SCALAR SUBQUERY 1\n  SCAN o")[0]
    assert (best.table, best.columns) == ("orders", ("user_id", "total"))


# --- the agent on shipped tasks -------------------------------------------------------------


def _training_tasks():
    out = []
    for name in quill_env.list_suites():
        try:
            suite = quill_env.get_suite(name)
        except quill_env.SuiteError:
            continue
        out += [pytest.param(name, t.id, id=t.id) for t in suite.split("train")]
    return out


SUMMARY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
BAD = {"wrong_result", "rejected", "syntax_error", "runtime_error"}


@pytest.fixture(scope="module")
def agent():
    return HeuristicAgent()


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for name, counts in sorted(SUMMARY.items()):
        total = sum(counts.values())
        print(
            f"\nheuristic agent, {name} train (small): {counts['improved']}/{total} improved {dict(counts)}"
        )


@pytest.mark.parametrize(("suite_name", "task_id"), _training_tasks())
def test_training_task_verifies(agent, suite_name, task_id):
    suite = quill_env.get_suite(suite_name)
    task = suite.task(task_id)
    runner = quill_env.TaskRunner.from_suite(suite, task, "small")
    action = agent.act(runner.observation())
    result = runner.evaluate(action)
    SUMMARY[suite_name][result.verdict.value] += 1
    assert result.verdict.value not in BAD, f"{action}\n-> {result.verdict.value}: {result.error}"


def test_candidates_are_distinct_and_start_with_act(shop_suite):
    agent = HeuristicAgent()
    task = next(t for t in shop_suite.split("train") if "not_in" in t.patterns)
    obs = quill_env.TaskRunner.from_suite(shop_suite, task, "small").observation()
    cands = agent.candidates(obs)
    assert len(cands) == len(set(cands)) > 2 and cands[0] == agent.act(obs)
    assert agent.act_batch([obs, obs]) == [cands[0], cands[0]]


# --- database mode -------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["correlated_subquery", "index_composite"])
def test_database_mode_improves(shop_suite, small_db, pattern):
    task = next(t for t in shop_suite.split("train") if pattern in t.patterns)
    runner = quill_env.TaskRunner.from_suite(shop_suite, task, "small")
    agent = HeuristicAgent(database=small_db)
    action = agent.act(runner.observation())
    result = quill_env.evaluate(small_db, task.query, action)
    assert result.verdict.value == "improved", (action, result.error)


def test_database_mode_drops_unused_index(small_db):
    agent = HeuristicAgent(database=small_db)
    catalog = parse_schema(agent.backend.schema_text())
    query = "SELECT id, total FROM orders WHERE coupon_code = 'SAVE-amber'"
    cands = [c for c in advise(parse(query), catalog) if c.columns == ("coupon_code",)]
    useless = advise(parse("SELECT id FROM users WHERE city = 'Oslo'"), catalog)[0]
    assert agent.used_indexes(query, [*cands, useless]) == cands
    obs = {"schema": agent.backend.schema_text(), "query": query, "plan": agent.backend.explain(query)}
    action = agent.act(obs)
    assert "users" not in action and "coupon_code" in action.split("\n")[0]
