"""The rule-based optimizer agent: safe query rewrites and an index advisor, working offline.

>>> from quill_agents.heuristic import HeuristicAgent
>>> HeuristicAgent().name
'heuristic'
"""

from quill_agents.heuristic.advisor import IndexCandidate, advise
from quill_agents.heuristic.catalog import Catalog, parse_schema
from quill_agents.heuristic.heuristic_agent import HeuristicAgent
from quill_agents.heuristic.rewrites import ALTERNATIVES, RULES, Context, rewrite

__all__ = [
    "ALTERNATIVES",
    "RULES",
    "Catalog",
    "Context",
    "HeuristicAgent",
    "IndexCandidate",
    "advise",
    "parse_schema",
    "rewrite",
]
