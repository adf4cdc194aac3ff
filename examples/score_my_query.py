"""Score rewrites of a slow query on your own SQLite database.

Usage:
    python examples/score_my_query.py
        the shop suite's small database and a showcase of rewrites (right, wrong, index, hostile)
    python examples/score_my_query.py my.db
        a slow query derived from your schema (an unindexed lookup), scored with an index, a
        wrong rewrite and a hostile statement
    python examples/score_my_query.py my.db --slow "SELECT ..." --candidate "SELECT ..." [...]
        your own query and rewrites (``@file.sql`` reads a file; repeat --candidate)

The database file is never modified.
"""

import argparse

import quill_env
from schema_queries import derive_lookup, read_sql

SHOP_SLOW = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u WHERE u.country = 'NZ'"
SHOP_REWRITES = {
    "join + coalesce": "SELECT u.id, COALESCE(c.n, 0) AS n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'",
    "join, no coalesce (wrong)": "SELECT u.id, c.n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'",
    "index": "CREATE INDEX idx ON orders(user_id);\n" + SHOP_SLOW,
    "hostile": "DELETE FROM orders",
}


def workload(args: argparse.Namespace) -> tuple[str, str, dict[str, str]]:
    """``(database, slow query, {name: rewrite})`` from the command line."""
    if args.database is None:
        return str(quill_env.get_suite("shop").database("small")), SHOP_SLOW, SHOP_REWRITES
    if args.slow:
        candidates = args.candidate or []
        rewrites = {"as given (identity)": read_sql(args.slow)}
        rewrites.update({f"candidate {i}": read_sql(c) for i, c in enumerate(candidates, 1)})
        return args.database, read_sql(args.slow), rewrites
    lookup = derive_lookup(args.database)
    rewrites = {"add an index": lookup.index, "other rows (wrong)": lookup.wrong, "hostile": lookup.hostile}
    return args.database, lookup.slow, rewrites


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("database", nargs="?", default=None, help="SQLite file (default: the shop suite's)")
    parser.add_argument("--slow", default=None, help="the slow query, or @file.sql (default: derived)")
    parser.add_argument("--candidate", action="append", default=None, help="a rewrite, or @file.sql (repeat)")
    args = parser.parse_args()
    if args.candidate and not args.slow:
        parser.error("--candidate needs --slow")
    database, slow, rewrites = workload(args)
    print(f"slow query on {database}:\n  {slow}\n")
    for name, sql in rewrites.items():
        r = quill_env.evaluate(database, slow, sql)
        speed = f"{r.speedup:.1f}x" if r.speedup else "-"
        print(f"{name:28} {r.verdict.value:13} speedup {speed:>8}  reward {r.reward:+.3f}  {r.error}")
