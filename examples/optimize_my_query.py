"""Let the rule-based optimizer rewrite a slow query on your own database, verified by Quill.

With ``database=`` the heuristic agent builds its candidate indexes in a scratch state, keeps
only those the query plan uses, and submits the best candidate by Quill's own measurement.

Usage: python examples/optimize_my_query.py [path/to/db.sqlite]
"""

import sys

import quill_env
from quill_agents import HeuristicAgent
from quill_env import TaskRunner

database = sys.argv[1] if len(sys.argv) > 1 else str(quill_env.get_suite("shop").database("small"))
slow = (
    "SELECT u.id, u.name FROM users u "
    "WHERE (SELECT COUNT(*) FROM orders o WHERE o.user_id = u.id AND o.status = 'refunded') > 0"
)
observation = TaskRunner.for_database(database, slow).observation()
action = HeuristicAgent(database=database).act(observation)
result = quill_env.evaluate(database, slow, action)
print(action)
print(f"-> {result.verdict.value}, speedup {result.speedup or 0:.1f}x, reward {result.reward:+.3f}")
