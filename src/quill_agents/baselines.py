"""The zero line and the oracle line of the leaderboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from quill_env.tasks import Task


class IdentityAgent:
    """Returns the slow query unchanged (scores ``unchanged``, reward 0)."""

    name = "identity"

    def act(self, observation: Mapping[str, str]) -> str:
        """The observation's own query."""
        return observation["query"]

    def act_batch(self, observations: Sequence[Mapping[str, str]]) -> list[str]:
        """:meth:`act` for each observation."""
        return [self.act(o) for o in observations]


class ReferenceAgent:
    """Returns the task's reference rewrite (the oracle line); needs the tasks by query text."""

    name = "reference"

    def __init__(self, tasks: Sequence[Task]) -> None:
        self._by_query = {t.query.strip(): t.reference or t.query for t in tasks}

    def act(self, observation: Mapping[str, str]) -> str:
        """The reference of the task whose query this observation shows."""
        query = observation["query"].split("\n-- the application reads only:")[0].strip()
        return self._by_query.get(query, observation["query"])

    def act_batch(self, observations: Sequence[Mapping[str, str]]) -> list[str]:
        """:meth:`act` for each observation."""
        return [self.act(o) for o in observations]
