"""A Python client of the environment server: one WebSocket, one session, Gymnasium-style calls.

>>> from quill_env.serve import QuillClient
>>> with QuillClient("http://127.0.0.1:8000") as env:  # doctest: +SKIP
...     obs, info = env.reset(task_id="shop/coupon_lookup")
...     obs, reward, terminated, truncated, info = env.step("SELECT ...")
"""

from __future__ import annotations

import contextlib
import json
from types import TracebackType
from typing import Any

from quill_env.errors import MissingExtraError, ServeError
from quill_env.serve.wire import MAX_MESSAGE_BYTES, ErrorCode


def ws_url(base_url: str) -> str:
    """The WebSocket URL of a server's ``/ws`` route.

    >>> ws_url("http://127.0.0.1:8000/")
    'ws://127.0.0.1:8000/ws'
    >>> ws_url("https://example.org/quill")
    'wss://example.org/quill/ws'
    """
    url = base_url.rstrip("/")
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            url = secure + url[len(plain) :]
    return url if url.endswith("/ws") else url + "/ws"


class QuillClient:
    """A session of a served Quill environment (``quill serve``), over one WebSocket.

    The session lives as long as the connection: :meth:`close` (or leaving the ``with`` block)
    frees it on the server.

    Args:
        base_url: the server, ``http://host:port`` (or ``ws://host:port``).
        timeout: seconds to wait for the connection and for each answer (a step scores SQL).

    Raises:
        MissingExtraError: ``websockets`` is not installed (the ``serve`` extra).
        ServeError: the server cannot be reached (``SESSION_ERROR``).
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, timeout: float = 300.0) -> None:
        try:
            from websockets.exceptions import ConnectionClosed
            from websockets.sync.client import connect
        except ImportError:
            raise MissingExtraError("websockets", "serve") from None
        self._closed_error = ConnectionClosed
        self.timeout = timeout
        self.url = ws_url(base_url)
        self._stack = contextlib.ExitStack()
        try:
            self._ws = self._stack.enter_context(
                connect(self.url, open_timeout=timeout, max_size=2 * MAX_MESSAGE_BYTES, proxy=None)
            )
        except (OSError, TimeoutError) as err:
            raise ServeError(ErrorCode.SESSION_ERROR.value, f"cannot connect to {self.url}: {err}") from None

    # --- the environment -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, task_id: str | None = None, episode_id: str | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """Start an episode (on ``task_id``, or a task drawn with ``seed``).

        Returns:
            ``(observation, info)`` as :meth:`SQLOptEnv.reset <quill_env.env.SQLOptEnv.reset>`.

        Raises:
            ServeError: the server refused (e.g. ``VALIDATION_ERROR`` for an unknown task id).
        """
        data = {
            k: v
            for k, v in {"seed": seed, "task_id": task_id, "episode_id": episode_id}.items()
            if v is not None
        }
        reply = self._request({"type": "reset", "data": data})
        return reply["observation"], reply["info"]

    def step(self, sql: str) -> tuple[dict[str, str], float, bool, bool, dict[str, Any]]:
        """Score ``sql``.

        Returns:
            ``(observation, reward, terminated, truncated, info)`` as
            :meth:`SQLOptEnv.step <quill_env.env.SQLOptEnv.step>`.

        Raises:
            ServeError: ``STATE_ERROR`` before :meth:`reset` or after the episode ended.
        """
        reply = self._request({"type": "step", "data": {"sql": sql}})
        return reply["observation"], reply["reward"], reply["terminated"], reply["truncated"], reply["info"]

    def state(self) -> dict[str, Any]:
        """The session's state: ``episode_id``, ``step_count``, ``task_id``, ``done`` ..."""
        return self._request({"type": "state"})

    def close(self) -> None:
        """End the session and wait until the server has closed the connection (idempotent)."""
        try:
            self._ws.send(json.dumps({"type": "close"}))
            while True:
                self._ws.recv(timeout=self.timeout)
        except (self._closed_error, TimeoutError):
            pass
        finally:
            self._stack.close()

    def __enter__(self) -> QuillClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------

    def _request(self, message: dict[str, Any]) -> Any:
        """Send ``message`` and return the data of its answer.

        Raises:
            ServeError: an error answer (its code and message), or a closed connection.
        """
        try:
            self._ws.send(json.dumps(message))
            reply = json.loads(self._ws.recv(timeout=self.timeout))
        except self._closed_error:
            reply = self._pending_error()
        except TimeoutError:
            raise ServeError(
                ErrorCode.SESSION_ERROR.value, f"no answer from {self.url} in {self.timeout:g}s"
            ) from None
        if reply.get("type") == "error":
            data = reply.get("data") or {}
            raise ServeError(str(data.get("code", "UNKNOWN")), str(data.get("message", "the server refused")))
        return reply.get("data")

    def _pending_error(self) -> dict[str, Any]:
        """The error the server sent before closing (e.g. ``CAPACITY_REACHED``), or a generic one."""
        try:
            return json.loads(self._ws.recv(timeout=0))
        except (self._closed_error, TimeoutError, ValueError):
            return {
                "type": "error",
                "data": {
                    "code": ErrorCode.SESSION_ERROR.value,
                    "message": f"{self.url} closed the connection",
                },
            }


__all__ = ["QuillClient", "ws_url"]
