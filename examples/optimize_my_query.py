"""Let the rule-based optimizer rewrite slow queries on your own database, verified by Quill.

With ``database=`` the heuristic agent builds its candidate indexes in a scratch state, keeps
only those the query plan uses, and submits the best candidate by Quill's own measurement.

Usage:
    python examples/optimize_my_query.py
        the shop suite's small database and a correlated COUNT(*) > 0 query
    python examples/optimize_my_query.py my.db
        a slow query derived from your schema (an unindexed lookup)
    python examples/optimize_my_query.py my.db "SELECT ..." [@slow2.sql ...]
        your own slow queries (``@file.sql`` reads a file)

The database file is never modified.
"""

import argparse

import quill_env
from quill_agents import HeuristicAgent
from quill_env import TaskRunner
from schema_queries import derive_lookup, read_sql

SHOP_SLOW = (
    "SELECT u.id, u.name FROM users u "
    "WHERE (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id AND o.status = 'refunded') > 0"
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database", nargs="?", default=None, help="SQLite file (default: the shop suite's)")
    parser.add_argument("queries", nargs="*", help="slow queries, or @file.sql (default: derived)")
    args = parser.parse_args()
    if args.database is None:
        database, queries = str(quill_env.get_suite("shop").database("small")), [SHOP_SLOW]
    else:
        database = args.database
        queries = [read_sql(q) for q in args.queries] or [derive_lookup(database).slow]
    agent = HeuristicAgent(database=database)
    for slow in queries:
        runner = TaskRunner.for_database(database, slow)
        try:
            action = agent.act(runner.observation())
        finally:
            runner.close()
        result = quill_env.evaluate(database, slow, action)
        print(f"slow:\n  {slow}\nrewrite:\n  {action}")
        print(f"-> {result.verdict.value}, speedup {result.speedup or 0:.1f}x, reward {result.reward:+.3f}\n")
