"""One chat completion against an OpenAI-compatible endpoint: cache, retries, accounting.

The ``openai`` client is built with ``max_retries=0``: retrying is done here, so that every
attempt is counted, a ``Retry-After`` header is honoured, the clock can be injected in tests,
and a slot of the concurrency limit is never held while sleeping.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quill_agents.teacher.config import TeacherConfig
from quill_agents.teacher.response_cache import ResponseCache, cache_key
from quill_agents.teacher.usage import Usage
from quill_env.errors import ConfigError, MissingExtraError

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 300.0
"""The longest ``Retry-After`` (seconds) honoured; longer hints are cut to this."""

Messages = Sequence[Mapping[str, str]]


@dataclass(frozen=True)
class Completion:
    """One answer of the endpoint (or the record of why there is none)."""

    text: str
    """The completion text; empty when the request failed or the model said nothing."""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    """Served from the on-disk cache (it cost nothing this run)."""
    error: str | None = None
    """Why the request failed for good (after retries), or ``None``."""

    @property
    def ok(self) -> bool:
        """Whether the endpoint answered."""
        return self.error is None


class _Failed(Exception):
    """A request that will not succeed (retries spent, or not worth retrying)."""


def import_openai() -> Any:
    """Import the ``openai`` package, or raise :class:`MissingExtraError` naming the extra."""
    try:
        import openai
    except ImportError:
        raise MissingExtraError("openai", "teacher") from None
    return openai


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: ``min(cap, base * 2**attempt)`` times a factor in [0.5, 1).

    >>> 0.5 <= backoff_delay(0, 1.0, 30.0, random.Random(0)) < 1.0
    True
    >>> backoff_delay(10, 1.0, 4.0, random.Random(0)) < 4.0
    True
    """
    return min(cap, base * 2.0**attempt) * (0.5 + 0.5 * rng.random())


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date).

    >>> retry_after({"retry-after": "2"}), retry_after({"retry-after-ms": "250"}), retry_after({})
    (2.0, 0.25, None)
    """
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms") is not None:
            seconds = float(headers["retry-after-ms"]) / 1000.0
        elif headers.get("retry-after") is not None:
            value = headers["retry-after"].strip()
            try:
                seconds = float(value)
            except ValueError:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        else:
            return None
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class ChatTransport:
    """Sends chat requests for one resolved :class:`TeacherConfig`.

    Args:
        config: a resolved config (see :meth:`TeacherConfig.resolve`).
        usage: the accounting to update.
        client: an ``openai.OpenAI``-like client to use instead of building one.
        sleep: the function that waits between retries (tests pass a fake).
    """

    def __init__(
        self,
        config: TeacherConfig,
        usage: Usage,
        *,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.usage = usage
        self._openai = import_openai()
        self._client = client or self._openai.OpenAI(
            base_url=config.base_url, api_key=config.api_key, timeout=config.timeout, max_retries=0
        )
        self._sleep = sleep
        self._rng = random.Random(config.seed)
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self.cache = ResponseCache(config.cache_dir) if config.cache else None

    def request(self, messages: Messages, sample: int = 0) -> dict[str, Any]:
        """The cache-relevant description of a request (no API key)."""
        cfg = self.config
        return {
            "base_url": cfg.base_url,
            "model": cfg.model,
            "messages": [dict(m) for m in messages],
            "temperature": cfg.temperature,
            "max_tokens": cfg.max_tokens,
            "sample": sample,
            "seed": None if cfg.seed is None else cfg.seed + sample,
        }

    def complete(self, messages: Messages, sample: int = 0) -> Completion:
        """Sample ``sample`` of the answer to ``messages``: from the cache, or from the endpoint.

        Never raises for what the endpoint sends back; a request that fails for good is a
        :class:`Completion` with ``error`` set (and recorded in ``usage.errors``).

        Raises:
            ConfigError: the endpoint refuses the key (401/403) or does not know the model (404).
        """
        request = self.request(messages, sample)
        key = cache_key(request)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self.usage.add(cache_hits=1)
            return _from_cache(hit)
        try:
            response = self._send(request)
            completion = _parse(response)
        except _Failed as err:
            self.usage.error(str(err))
            log.warning("teacher request failed: %s", err)
            return Completion(text="", error=str(err))
        cfg = self.config
        self.usage.add(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            dollars=completion.prompt_tokens / 1000.0 * cfg.price_per_1k_input
            + completion.completion_tokens / 1000.0 * cfg.price_per_1k_output,
        )
        if self.cache is not None:
            try:
                self.cache.put(key, request, _to_cache(completion))
            except OSError as err:
                log.warning("cannot write the teacher cache in %s: %s", self.cache.root, err)
        return completion

    def _body(self, request: Mapping[str, Any]) -> dict[str, Any]:
        body = {k: request[k] for k in ("model", "messages", "temperature", "max_tokens")}
        if request["seed"] is not None:
            body["seed"] = request["seed"]
        return body

    def _send(self, request: Mapping[str, Any]) -> Any:
        openai, cfg = self._openai, self.config
        body = self._body(request)
        attempts = cfg.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                self.usage.add(retries=1)
            self.usage.add(requests=1)
            wait = None
            try:
                with self._slots:
                    return self._client.chat.completions.create(**body)
            except openai.APIStatusError as err:
                status = err.status_code
                if status in (401, 403):
                    raise ConfigError(
                        f"{cfg.base_url} refused the API key (HTTP {status}): {err.message}"
                    ) from None
                if status == 404:
                    raise ConfigError(
                        f"{cfg.base_url} has no model {cfg.model!r} or no chat endpoint "
                        f"(HTTP 404): {err.message}"
                    ) from None
                if status != 429 and status < 500:
                    raise _Failed(f"HTTP {status}: {err.message}") from None
                reason = f"HTTP {status}: {err.message}"
                wait = retry_after(err.response.headers)
            except openai.APITimeoutError:
                reason = f"timed out after {cfg.timeout:g} s"
            except openai.APIConnectionError as err:
                reason = f"connection error: {err}"
            except (openai.APIError, ValueError) as err:
                raise _Failed(f"malformed response: {err}") from None
            if attempt + 1 < attempts:
                base, cap = cfg.backoff
                self._sleep(wait if wait is not None else backoff_delay(attempt, base, cap, self._rng))
        raise _Failed(f"{reason} (gave up after {attempts} attempts)")

    def close(self) -> None:
        """Close the HTTP client's connections."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts, as some servers send them
        parts = (p.get("text") if isinstance(p, dict) else getattr(p, "text", None) for p in content)
        return "".join(p for p in parts if isinstance(p, str))
    return ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _parse(response: Any) -> Completion:
    """Read text, finish reason and token counts from whatever the client returned."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise _Failed(f"malformed response: no choices in {type(response).__name__}")
    choice = choices[0]
    message = getattr(choice, "message", None)
    usage = getattr(response, "usage", None)
    return Completion(
        text=_text(getattr(message, "content", None)),
        finish_reason=getattr(choice, "finish_reason", None),
        prompt_tokens=_int(getattr(usage, "prompt_tokens", 0)),
        completion_tokens=_int(getattr(usage, "completion_tokens", 0)),
    )


def _to_cache(c: Completion) -> dict[str, Any]:
    return {
        "text": c.text,
        "finish_reason": c.finish_reason,
        "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens,
    }


def _from_cache(entry: Mapping[str, Any]) -> Completion:
    reason = entry.get("finish_reason")
    return Completion(
        text=entry["text"],
        finish_reason=reason if isinstance(reason, str) else None,
        prompt_tokens=_int(entry.get("prompt_tokens")),
        completion_tokens=_int(entry.get("completion_tokens")),
        cached=True,
    )
