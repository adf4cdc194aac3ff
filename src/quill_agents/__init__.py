"""Agents that act on Quill environments (baselines now; heuristic, teacher and trainers next)."""

from quill_agents.baselines import IdentityAgent, ReferenceAgent

__all__ = ["IdentityAgent", "ReferenceAgent"]
