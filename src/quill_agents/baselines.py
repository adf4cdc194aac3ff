"""The zero line and the oracle line of the leaderboard."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import sqlglot

from quill_agents.protocol import BaseAgent, Observation
from quill_env.backends import DEFAULT_ENGINE, get_backend
from quill_env.dialect import SUITE_DIALECT
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
        engine: the engine the observations come from; its tasks are ported to its dialect
            (:meth:`~quill_env.backends.base.Backend.port`), as the environment ports them.
    """

    name = "reference"

    def __init__(self, tasks: Sequence[Task], engine: str = DEFAULT_ENGINE) -> None:
        self._by_query = {t.query.strip(): t.reference or t.query for t in tasks}
        if engine != DEFAULT_ENGINE:
            port = functools.partial(get_backend(engine).port, dialect=SUITE_DIALECT)
            for task in tasks:
                try:
                    ported = task.ported(port)
                except sqlglot.errors.SqlglotError:
                    continue
                self._by_query[ported.query.strip()] = ported.reference or ported.query

    def act(self, observation: Observation) -> str:
        """The reference of the task whose query this observation shows (else the query)."""
        query = observed_query(observation)
        return self._by_query.get(query, query)
