"""A scriptable OpenAI-compatible HTTP server for tests (stdlib only).

It serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (plain and ``stream: true``
server-sent events) on 127.0.0.1 at a free port, from a background thread. Each chat request
takes the next :class:`Reply` from a queue (or the ``default`` reply, which may be a function of
the request); every request is recorded, and the largest number of chat requests in flight at
once is tracked so tests can check a client's concurrency limit::

    with OpenAIStub() as stub:
        stub.enqueue(Reply.status(429, retry_after=0.01), Reply.sql("SELECT 1"))
        client = openai.OpenAI(base_url=stub.base_url, api_key="test", max_retries=0)
        ...
        assert len(stub.chat_requests) == 2
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_HANG_S = 5.0
"""A hanging reply never sleeps longer than this, so server threads always end."""


@dataclass(frozen=True)
class Reply:
    """One scripted answer to a chat-completion request."""

    kind: str = "content"
    """``content``, ``status``, ``hang`` or ``malformed``."""
    content: str = ""
    status: int = 200
    retry_after: float | None = None
    """Seconds sent in the ``Retry-After`` header (status replies)."""
    seconds: float = 0.0
    """How long to wait before answering (``hang`` replies; a delay for the others)."""
    prompt_tokens: int = 40
    completion_tokens: int = 12
    finish_reason: str = "stop"

    @classmethod
    def text(cls, content: str, **kw: Any) -> Reply:
        """A normal completion with this exact text."""
        return cls(kind="content", content=content, **kw)

    @classmethod
    def sql(cls, sql: str, **kw: Any) -> Reply:
        """A normal completion holding ``sql`` in a markdown ```sql fence, with some prose."""
        return cls.text(f"Here is the query:\n```sql\n{sql}\n```\nIt should be fast.", **kw)

    @classmethod
    def prose(cls, **kw: Any) -> Reply:
        """A completion with no SQL in it."""
        return cls.text("I'm sorry, but I can't see how to make that query any faster.", **kw)

    @classmethod
    def error(cls, status: int, retry_after: float | None = None) -> Reply:
        """An HTTP error status with an OpenAI-style JSON error body."""
        return cls(kind="status", status=status, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """Answer only after ``seconds`` (bounded by :data:`MAX_HANG_S`), past a client timeout."""
        return cls(kind="hang", seconds=min(seconds, MAX_HANG_S))

    @classmethod
    def malformed(cls) -> Reply:
        """A 200 response whose JSON body is cut off."""
        return cls(kind="malformed")


Responder = Callable[[dict], Reply]


@dataclass
class Recorded:
    """A request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: dict | None
    at: float = field(default_factory=time.monotonic)


class OpenAIStub:
    """The server; use it as a context manager (it starts on enter and stops on exit).

    Args:
        model: the model id listed by ``/v1/models`` and echoed in completions.
        default: the reply when the queue is empty: a :class:`Reply` or a function of the
            request body returning one.
        delay: seconds every chat reply waits before answering (to make requests overlap).
    """

    def __init__(
        self, model: str = "stub-model", default: Reply | Responder | None = None, delay: float = 0.0
    ) -> None:
        self.model = model
        self.default: Reply | Responder = default or Reply.sql("SELECT 1")
        self.delay = delay
        self.requests: list[Recorded] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting and inspection -----------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next chat requests with these replies, in order."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def chat_requests(self) -> list[Recorded]:
        """The chat-completion requests received so far."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        """Forget recorded requests, queued replies and the in-flight maximum."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give an OpenAI client (ends in ``/v1``)."""
        if self._server is None:
            raise RuntimeError("the stub is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> OpenAIStub:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        handler = type("Handler", (_Handler,), {"stub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- used by the handler ------------------------------------------------------------------

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def _next_reply(self, body: dict) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        return self.default(body) if callable(self.default) else self.default

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    stub: OpenAIStub
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.stub._record(Recorded("GET", self.path, _headers(self.headers), None))
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.stub.model, "object": "model", "created": 0, "owned_by": "stub"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, _error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        self.stub._record(Recorded("POST", self.path, _headers(self.headers), body))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, _error_body(404, f"no route {self.path}"))
            return
        if not isinstance(body, dict) or "messages" not in body:
            self._json(400, _error_body(400, "body must be a JSON object with 'messages'"))
            return
        self.stub._enter()
        try:
            self._answer(body, self.stub._next_reply(body))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer
        finally:
            self.stub._leave()

    def _answer(self, body: dict, reply: Reply) -> None:
        time.sleep(min(max(self.stub.delay, reply.seconds), MAX_HANG_S))
        if reply.kind == "status":
            headers = {} if reply.retry_after is None else {"Retry-After": f"{reply.retry_after:g}"}
            self._json(reply.status, _error_body(reply.status, f"scripted status {reply.status}"), headers)
        elif reply.kind == "malformed":
            self._send(
                200,
                b'{"id": "chatcmpl-stub", "choices": [{"index": 0, "message": {"content": "SEL',
                "application/json",
            )
        elif body.get("stream"):
            self._stream(body, reply)
        else:
            self._json(200, _completion(self.stub.model, body, reply))

    def _stream(self, body: dict, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        model = body.get("model") or self.stub.model
        pieces = [reply.content[i : i + 8] for i in range(0, len(reply.content), 8)]
        deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
        for delta in deltas:
            self._event(_chunk(model, delta, None))
        self._event(_chunk(model, {}, reply.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            last = _chunk(model, None, None)
            last["choices"], last["usage"] = [], _usage(reply)
            self._event(last)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, payload: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _headers(message: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in message.items()}


def _usage(reply: Reply) -> dict:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _completion(model: str, body: dict, reply: Reply) -> dict:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": _usage(reply),
    }


def _chunk(model: str, delta: dict | None, finish_reason: str | None) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish_reason}
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }


def _error_body(status: int, message: str) -> dict:
    kinds = {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "code": status}}
