"""Score a rewrite of a slow query on your own SQLite database.

Usage: python examples/score_my_query.py [path/to/db]  (defaults to the shop suite's small database)
"""

import sys

import quill_env

database = sys.argv[1] if len(sys.argv) > 1 else quill_env.get_suite("shop").database("small")
slow = "SELECT u.id, (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id) AS n FROM users u WHERE u.country = 'NZ'"
rewrites = {
    "join + coalesce": "SELECT u.id, COALESCE(c.n, 0) AS n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'",
    "join, no coalesce (wrong)": "SELECT u.id, c.n FROM users u LEFT JOIN "
    "(SELECT user_id, COUNT(*) AS n FROM orders GROUP BY user_id) c ON c.user_id = u.id WHERE u.country = 'NZ'",
    "index": "CREATE INDEX idx ON orders(user_id);\n" + slow,
    "hostile": "DELETE FROM orders",
}
for name, sql in rewrites.items():
    r = quill_env.evaluate(database, slow, sql)
    speed = f"{r.speedup:.1f}x" if r.speedup else "-"
    print(f"{name:28} {r.verdict.value:13} speedup {speed:>8}  reward {r.reward:+.3f}  {r.error}")
