"""The zero line and the oracle line of the leaderboard."""

from __future__ import annotations

from collections.abc import Sequence

from quill_agents.protocol import BaseAgent, Observation
from quill_env.prompt import observed_query
from quill_env.tasks import Task


class IdentityAgent(BaseAgent):
    """Returns the slow query unchanged (scores ``unchanged``, reward 0)."""

    name = "identity"

    def act(self, observation: Observation) -> str:
        """The observation's own query."""
        return observed_query(observation)


class ReferenceAgent(BaseAgent):
    """Returns the task's reference rewrite (the oracle line).

    Args:
        tasks: the tasks it may be asked about; observations are matched by their query text.
    """

    name = "reference"

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._by_query = {t.query.strip(): t.reference or t.query for t in tasks}

    def act(self, observation: Observation) -> str:
        """The reference of the task whose query this observation shows (else the query)."""
        query = observed_query(observation)
        return self._by_query.get(query, query)
