"""Agent specs: what a worker process needs to build an agent (a name and keyword arguments).

Agents are built inside the worker processes, never pickled: a spec is plain data, so a spawn
pool can ship it. Optional agents (heuristic, teacher, policy) are imported lazily and a missing
one fails with an error that says what is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from quill_agents.baselines import IdentityAgent, ReferenceAgent
from quill_agents.protocol import Agent
from quill_env.backends import DEFAULT_ENGINE
from quill_env.errors import ConfigError, UnknownNameError
from quill_env.tasks import Task

DEFAULT_AGENTS = ("identity", "reference", "heuristic")
"""The agents ``quill bench`` runs when none is named."""

KINDS = ("identity", "reference", "heuristic", "teacher", "policy")
"""Agent kinds a spec may name."""


@dataclass(frozen=True)
class AgentSpec:
    """A picklable recipe for an agent.

    Args:
        kind: one of :data:`KINDS`.
        kwargs: keyword arguments of the agent's constructor.
        label: the name shown on the leaderboard (defaults to the kind, plus its argument).
    """

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnknownNameError("agent", self.kind, KINDS)
        if not self.label:
            object.__setattr__(self, "label", self.kind)

    def key(self) -> tuple:
        """A hashable identity of the spec (for caching built agents)."""
        return (self.kind, self.label, tuple(sorted((k, repr(v)) for k, v in self.kwargs.items())))


def parse_agent(text: str, *, base_url: str | None = None, api_key: str | None = None) -> AgentSpec:
    """Parse a command-line agent spec.

    The forms are ``identity``, ``reference``, ``heuristic``, ``teacher:MODEL`` and ``policy:PATH``.

    >>> parse_agent("teacher:qwen2.5-coder", base_url="http://localhost:8000/v1").kwargs["model"]
    'qwen2.5-coder'
    >>> parse_agent("policy:runs/sft").label
    'policy:runs/sft'

    Raises:
        UnknownNameError: an unknown agent kind.
        ConfigError: a teacher without a model or a policy without a path.
    """
    kind, _, arg = text.strip().partition(":")
    if kind not in KINDS:
        raise UnknownNameError("agent", kind, KINDS)
    if kind == "teacher":
        if not arg:
            raise ConfigError("name the teacher's model: --agent teacher:MODEL (and --base-url URL)")
        kwargs: dict[str, Any] = {"model": arg}
        if base_url:
            kwargs["base_url"] = base_url
        if api_key:
            kwargs["api_key"] = api_key
        return AgentSpec("teacher", kwargs, label=f"teacher:{arg}")
    if kind == "policy":
        if not arg:
            raise ConfigError("name the model's directory: --agent policy:PATH")
        return AgentSpec("policy", {"path": arg}, label=f"policy:{arg}")
    if arg:
        raise ConfigError(f"agent {kind!r} takes no argument (got {text!r})")
    return AgentSpec(kind)


def _optional(module: str, attr: str, what: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            raise ConfigError(f"the {what} is not available: module {module!r} is not installed") from None
        raise
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise ConfigError(f"the {what} is not available: {module}.{attr} does not exist") from None


OPTIONAL: dict[str, tuple[str, str]] = {
    "heuristic": ("quill_agents.heuristic", "HeuristicAgent"),
    "teacher": ("quill_agents.teacher", "TeacherAgent"),
    "policy": ("quill_agents.policy", "PolicyAgent"),
}
"""Module and class of the agents that are imported only when used."""


def available(kind: str) -> bool:
    """Whether the module of an agent kind can be found (without importing it).

    >>> available("identity")
    True
    """
    if kind not in OPTIONAL:
        return True
    return importlib.util.find_spec(OPTIONAL[kind][0]) is not None


def require(spec: AgentSpec) -> None:
    """Fail early, in the calling process, when an agent's module is missing.

    Raises:
        ConfigError: the module is not installed.
    """
    if not available(spec.kind):
        module, cls = OPTIONAL[spec.kind]
        raise ConfigError(
            f"agent {spec.label!r} is not available: {module} ({cls}) is not installed in this environment"
        )


def build_agent(spec: AgentSpec, tasks: Sequence[Task], engine: str = DEFAULT_ENGINE) -> Agent:
    """Build the agent a spec describes (inside a worker process).

    Args:
        spec: the recipe.
        tasks: every task the run may show the agent (the reference agent looks them up).
        engine: the engine the run's observations come from.

    Raises:
        ConfigError: an optional agent's module is missing.
    """
    if spec.kind == "identity":
        return IdentityAgent()
    if spec.kind == "reference":
        return ReferenceAgent(tasks, engine=engine)
    if spec.kind in ("heuristic", "teacher"):
        return _optional(*OPTIONAL[spec.kind], f"{spec.kind} agent")(**spec.kwargs)
    cls = _optional(*OPTIONAL["policy"], "local model agent")
    kwargs = dict(spec.kwargs)
    path = kwargs.pop("path")
    loader = getattr(cls, "from_pretrained", None)
    return loader(path, **kwargs) if callable(loader) else cls(path, **kwargs)


__all__ = [
    "DEFAULT_AGENTS",
    "KINDS",
    "OPTIONAL",
    "AgentSpec",
    "available",
    "build_agent",
    "parse_agent",
    "require",
]
