"""The agent protocol: anything that turns an observation into an action (SQL text)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

Observation = Mapping[str, str]
"""A ``Quill-v1`` observation: ``schema``, ``query``, ``plan`` (and ``feedback`` in multi-turn)."""


@runtime_checkable
class Agent(Protocol):
    """A policy over Quill observations; the leaderboard and the trainers use only this."""

    name: str

    def act(self, observation: Observation) -> str:
        """One action (optional CREATE INDEX statements and a query) for one observation."""
        ...

    def act_batch(self, observations: Sequence[Observation]) -> list[str]:
        """One action per observation (batched policies override this)."""
        ...


class BaseAgent:
    """Convenience base: ``act_batch`` maps :meth:`act` over the observations."""

    name = "agent"

    def act(self, observation: Observation) -> str:
        """One action for one observation."""
        raise NotImplementedError

    def act_batch(self, observations: Sequence[Observation]) -> list[str]:
        """:meth:`act` for each observation."""
        return [self.act(o) for o in observations]
