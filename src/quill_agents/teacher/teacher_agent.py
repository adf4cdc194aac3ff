"""The teacher agent: a strong LLM behind any OpenAI-compatible endpoint.

It has two jobs in the data loop (DESIGN §1): write "junior developer" slow queries for a
schema, and propose optimizations of a query. Either way, what the model sends back is data:
an unusable answer is an empty or rejected candidate, never an exception.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from quill_agents.protocol import BaseAgent, Observation
from quill_agents.teacher.config import TeacherConfig
from quill_agents.teacher.prompts import (
    SUITE_ENGINE,
    action_from_completion,
    slow_query_from_completion,
    slow_query_messages,
)
from quill_agents.teacher.transport import ChatTransport, Completion, Messages
from quill_agents.teacher.usage import Usage
from quill_env.errors import ConfigError
from quill_env.prompt import build_messages


class TeacherAgent(BaseAgent):
    """An :class:`~quill_agents.protocol.Agent` that asks an OpenAI-compatible endpoint.

    Requests are retried with backoff on 429, 5xx, timeouts and connection errors, run
    concurrently up to ``config.concurrency``, and cached on disk by request, so a rerun costs
    nothing. :attr:`usage` accounts for requests, cache hits, retries, errors, tokens and dollars.

    Args:
        config: the configuration (default: ``TeacherConfig()``, endpoint from the environment).
        sleep: waits between retries (tests pass a fake clock).
        client: an ``openai.OpenAI``-compatible client to use instead of building one.
        **overrides: :class:`TeacherConfig` fields replacing those of ``config``
            (``TeacherAgent(model="qwen2.5-coder", base_url="http://localhost:8000/v1")``).

    Raises:
        ConfigError: a bad field, no model, or no key for api.openai.com.
        MissingExtraError: the ``openai`` package is not installed.
    """

    def __init__(
        self,
        config: TeacherConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        client: Any = None,
        **overrides: Any,
    ) -> None:
        if config is not None and not isinstance(config, TeacherConfig):
            raise ConfigError(f"config must be a TeacherConfig, got {type(config).__name__}")
        self.config = (config or TeacherConfig()).with_overrides(**overrides).resolve()
        self.usage = Usage()
        self.name = f"teacher:{self.config.model}"
        self._transport = ChatTransport(self.config, self.usage, client=client, sleep=sleep)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # --- the Agent protocol ---------------------------------------------------------------------

    def act(self, observation: Observation) -> str:
        """One action for ``observation`` (``""`` when the model gave none)."""
        return self.optimize(observation, k=1)[0]

    def act_batch(self, observations: Sequence[Observation]) -> list[str]:
        """One action per observation, requested concurrently up to ``config.concurrency``."""
        jobs = [(self._optimize_messages(o), 0) for o in observations]
        return [action_from_completion(c.text) for c in self.complete_many(jobs)]

    # --- the two jobs -----------------------------------------------------------------------------

    def optimize(self, observation: Observation, k: int = 1) -> list[str]:
        """``k`` candidate actions for one observation, sampled concurrently.

        Each sample is a separate, separately cached request, so asking for more samples later
        only pays for the new ones. Candidates are the SQL of the completion
        (:func:`quill_env.prompt.extract_sql`); an answer without SQL, or a request that
        failed for good (see ``usage.errors``), gives ``""``.

        Raises:
            ConfigError: ``k`` is not a positive int.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be a positive int, got {k!r}")
        messages = self._optimize_messages(observation)
        return [action_from_completion(c.text) for c in self.complete_many([(messages, i) for i in range(k)])]

    def write_slow_query(
        self,
        schema_text: str,
        pattern: str,
        examples: Iterable[object] = (),
        *,
        sample: int = 0,
        engine: str = SUITE_ENGINE,
    ) -> str | None:
        """Ask for one "junior developer" slow query over a schema, aimed at ``pattern``.

        Args:
            schema_text: the schema's ``CREATE TABLE`` statements.
            pattern: a pattern tag or generator family name (``"correlated_subquery"``,
                ``"or_chain"`` ...).
            examples: a few earlier accepted tasks (query strings, mappings with ``query``
                and ``patterns``, or ``Task`` objects), shown as few-shot examples.
            sample: which sample of this prompt to draw (each is cached separately).
            engine: the display name of the engine the query must run on.

        Returns:
            The query, or ``None`` when the answer is not exactly one SELECT statement (or the
            request failed for good; see ``usage.errors``).

        Raises:
            UnknownNameError: ``pattern`` is not a known pattern or family.
        """
        messages = slow_query_messages(schema_text, pattern, examples, engine=engine)
        (completion,) = self.complete_many([(messages, sample)])
        return slow_query_from_completion(completion.text) if completion.ok else None

    # --- lower level ------------------------------------------------------------------------------

    def complete(self, messages: Messages, sample: int = 0) -> Completion:
        """One raw completion of ``messages`` (cached, retried and accounted)."""
        return self._transport.complete(messages, sample)

    def complete_many(self, jobs: Sequence[tuple[Messages, int]]) -> list[Completion]:
        """Raw completions of ``(messages, sample)`` jobs, in order, run concurrently."""
        if len(jobs) <= 1:
            return [self.complete(m, s) for m, s in jobs]
        futures = [self._executor().submit(self.complete, m, s) for m, s in jobs]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the worker threads and close the HTTP client."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._transport.close()

    def __enter__(self) -> TeacherAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="quill-teacher")
            return self._pool

    def _optimize_messages(self, observation: Observation) -> list[dict[str, str]]:
        return build_messages(observation, max_indexes=self.config.max_indexes)
