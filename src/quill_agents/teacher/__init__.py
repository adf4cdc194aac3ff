"""The teacher LLM behind any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp).

It writes slow queries and proposes optimizations, with retries, a concurrency limit, an
on-disk response cache and token/dollar accounting.

``openai`` is imported only when a :class:`TeacherAgent` is built; without it, building one
raises :class:`~quill_env.errors.MissingExtraError` naming the ``teacher`` extra.
"""

from quill_agents.teacher.config import TeacherConfig
from quill_agents.teacher.prompts import PATTERN_HINTS, slow_query_messages
from quill_agents.teacher.response_cache import ResponseCache, cache_key
from quill_agents.teacher.teacher_agent import TeacherAgent
from quill_agents.teacher.transport import Completion
from quill_agents.teacher.usage import Usage

__all__ = [
    # the agent and its configuration
    "TeacherAgent",
    "TeacherConfig",
    # results and accounting
    "Completion",
    "Usage",
    # building blocks
    "PATTERN_HINTS",
    "ResponseCache",
    "cache_key",
    "slow_query_messages",
]
