"""The teacher's configuration: endpoint, sampling, retries, concurrency, cache and prices."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from quill_env.errors import ConfigError
from quill_env.tasks import cache_dir as quill_cache_dir

OPENAI_URL = "https://api.openai.com/v1"
"""The endpoint used when neither ``base_url`` nor ``OPENAI_BASE_URL`` is set."""

LOCAL_API_KEY = "not-needed"
"""Placeholder key for local servers (vLLM, Ollama, llama.cpp) that do not check one."""


@dataclass(frozen=True)
class TeacherConfig:
    """How :class:`~quill_agents.teacher.TeacherAgent` talks to an OpenAI-compatible endpoint.

    Unset endpoint fields are read from the environment when the agent is built (see
    :meth:`resolve`), so the same code runs against OpenAI, vLLM, Ollama or llama.cpp.
    """

    model: str | None = None
    """Model name; default ``$QUILL_TEACHER_MODEL``."""
    base_url: str | None = None
    """API root (ending in ``/v1``); default ``$OPENAI_BASE_URL``, then OpenAI's."""
    api_key: str | None = field(default=None, repr=False)
    """API key; default ``$OPENAI_API_KEY`` (a placeholder for non-OpenAI endpoints)."""
    temperature: float = 0.7
    """Sampling temperature, in [0, 2]."""
    max_tokens: int = 1024
    """Most tokens per completion."""
    timeout: float = 60.0
    """Seconds before one HTTP request is abandoned (and retried)."""
    max_retries: int = 4
    """Retries per request after a 429, a 5xx, a timeout or a connection error."""
    backoff: tuple[float, float] = (0.5, 30.0)
    """``(base, max)`` seconds of the exponential backoff (with jitter) between retries."""
    concurrency: int = 4
    """Most requests in flight at once, per agent."""
    cache_dir: str | os.PathLike[str] | None = None
    """Response cache directory; default ``quill_env.tasks.cache_dir() / "teacher"``."""
    cache: bool = True
    """Read and write the on-disk response cache."""
    price_per_1k_input: float = 0.0
    """Dollars per 1,000 prompt tokens (for the run's cost accounting)."""
    price_per_1k_output: float = 0.0
    """Dollars per 1,000 completion tokens."""
    seed: int | None = None
    """Sampling seed sent to the endpoint (sample ``i`` of ``k`` uses ``seed + i``)."""
    max_indexes: int = 3
    """How many ``CREATE INDEX`` statements the optimization prompt allows."""

    def __post_init__(self) -> None:
        for name in ("model", "base_url", "api_key"):
            value = getattr(self, name)
            self._require(
                value is None or (isinstance(value, str) and bool(value.strip())),
                name,
                "a non-empty string or None",
            )
        try:
            base, cap = (float(x) for x in self.backoff)
        except (TypeError, ValueError):
            base = cap = math.nan
        self._require(
            0.0 <= base <= cap < math.inf, "backoff", "a (base, max) pair of seconds, 0 <= base <= max"
        )
        object.__setattr__(self, "backoff", (base, cap))
        self._require(
            _number(self.temperature) and 0.0 <= self.temperature <= 2.0, "temperature", "in [0, 2]"
        )
        self._require(_is_int(self.max_tokens) and self.max_tokens > 0, "max_tokens", "a positive int")
        self._require(
            _number(self.timeout) and 0.0 < self.timeout < math.inf, "timeout", "a positive number of seconds"
        )
        self._require(_is_int(self.max_retries) and self.max_retries >= 0, "max_retries", "an int >= 0")
        self._require(_is_int(self.concurrency) and self.concurrency >= 1, "concurrency", "an int >= 1")
        self._require(_is_int(self.max_indexes) and self.max_indexes >= 0, "max_indexes", "an int >= 0")
        self._require(self.seed is None or _is_int(self.seed), "seed", "an int or None")
        for name in ("price_per_1k_input", "price_per_1k_output"):
            value = getattr(self, name)
            self._require(_number(value) and 0.0 <= value < math.inf, name, "a number >= 0")

    def _require(self, ok: bool, name: str, requirement: str) -> None:
        if not ok:
            raise ConfigError(f"TeacherConfig.{name} must be {requirement}, got {getattr(self, name)!r}")

    def with_overrides(self, **overrides: object) -> TeacherConfig:
        """A copy with some fields replaced; unknown names raise :class:`ConfigError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown TeacherConfig field(s) {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)

    def resolve(self) -> TeacherConfig:
        """Fill ``model``, ``base_url``, ``api_key`` and ``cache_dir`` from the environment.

        Raises:
            ConfigError: no model is given, or OpenAI's own endpoint is used without a key.
        """
        model = self.model or os.environ.get("QUILL_TEACHER_MODEL") or None
        if not model:
            raise ConfigError("no teacher model: pass model=... or set QUILL_TEACHER_MODEL")
        base_url = (self.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None:
            if base_url == OPENAI_URL:
                raise ConfigError("no API key for api.openai.com: pass api_key=... or set OPENAI_API_KEY")
            api_key = LOCAL_API_KEY
        cache_dir = self.cache_dir
        if cache_dir is None:
            cache_dir = quill_cache_dir() / "teacher"
        return replace(self, model=model, base_url=base_url, api_key=api_key, cache_dir=Path(cache_dir))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
