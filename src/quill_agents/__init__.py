"""Agents that act on Quill environments: baselines, heuristic optimizer, teacher LLM, policies.

Importing ``quill_agents`` never imports openai, torch, trl or transformers; those load when an
agent that needs them is constructed.
"""

from quill_agents.baselines import IdentityAgent, ReferenceAgent
from quill_agents.heuristic import HeuristicAgent
from quill_agents.protocol import Agent, BaseAgent, Observation
from quill_agents.teacher import TeacherAgent, TeacherConfig

__all__ = [
    "Agent",
    "BaseAgent",
    "HeuristicAgent",
    "IdentityAgent",
    "Observation",
    "ReferenceAgent",
    "TeacherAgent",
    "TeacherConfig",
]
