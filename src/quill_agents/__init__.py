"""Agents that act on Quill environments: baselines, heuristic optimizer, teacher LLM, policies."""

from quill_agents.base import Agent, BaseAgent, Observation
from quill_agents.baselines import IdentityAgent, ReferenceAgent

__all__ = ["Agent", "BaseAgent", "IdentityAgent", "Observation", "ReferenceAgent"]
