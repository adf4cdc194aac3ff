"""The environment server: OpenEnv's HTTP and WebSocket contract over Quill's environment.

Routes (``create_app``):

- ``GET /health``: ``{"status": "healthy", "active_sessions": n, "max_sessions": N}``.
- ``GET /schema``: JSON schemas of the action (``{"sql": str}``), the observation and the state.
- ``GET /metadata``: name, description, version and the task ids a reset may ask for.
- ``WS /ws``: one session per connection. Messages ``{"type": "reset", "data": {"seed",
  "task_id", "episode_id"}}``, ``{"type": "step", "data": {"sql": ...}}``, ``{"type":
  "state"}`` and ``{"type": "close"}``; answers ``{"type": "observation" | "state" | "error",
  "data": ...}`` (see :mod:`quill_env.serve.wire`). The session closes with the connection, for
  whatever reason it ends.
- ``POST /reset``, ``POST /step``, ``GET /state``, ``POST /close``: the same over plain HTTP.
  OpenEnv's HTTP reset and step build a fresh environment per request; a Quill episode needs
  its task between the two, so ``/reset`` opens a session and returns its ``session_id``,
  which ``/step`` (body field), ``/state`` (query parameter) and ``/close`` name. Idle sessions
  expire after ``session_timeout`` seconds.

A full server refuses a new session at once (WebSocket: a ``CAPACITY_REACHED`` error message,
then close code 1013; HTTP: 503). A bad request is an error (HTTP 4xx with ``{"detail",
"code"}``, or a WebSocket error message on a connection that stays open) and never reaches
another session. FastAPI and uvicorn are imported only when a server is built: the ``serve``
extra.
"""

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

from quill_env._version import __version__
from quill_env.env import SQLOptEnv
from quill_env.errors import MissingExtraError, ServeError
from quill_env.serve.sessions import Session, SessionManager
from quill_env.serve.wire import (
    MAX_MESSAGE_BYTES,
    ErrorCode,
    dumps,
    error_message,
    http_status,
    only_keys,
    parse_object,
    refuse,
    reset_args,
    step_action,
)

logger = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013
"""WebSocket close code of a connection refused because the server is full."""


def require(module: str) -> ModuleType:
    """Import ``module`` of the ``serve`` extra.

    Raises:
        MissingExtraError: it is not installed (the message names ``quill-sql[serve]``).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(module, "serve") from None


def schemas(env: SQLOptEnv) -> dict[str, Any]:
    """JSON schemas of the action, the observation and the state of ``env``'s sessions."""
    obs = {
        key: {"type": "string", "maxLength": space.max_length}
        for key, space in env.observation_space.spaces.items()
    }
    return {
        "action": {
            "type": "object",
            "properties": {
                "sql": {"type": "string", "maxLength": env.action_space.max_length},
                "metadata": {"type": "object"},
            },
            "required": ["sql"],
            "additionalProperties": False,
        },
        "observation": {"type": "object", "properties": obs, "required": sorted(obs)},
        "state": {
            "type": "object",
            "properties": {
                "session_id": {"type": "string"},
                "episode_id": {"type": ["string", "null"]},
                "step_count": {"type": "integer", "minimum": 0},
                "task_id": {"type": ["string", "null"]},
                "done": {"type": "boolean"},
                "max_attempts": {"type": "integer", "minimum": 1},
            },
        },
    }


def create_app(
    *,
    max_sessions: int = 8,
    session_timeout: float = 300.0,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    clock: Callable[[], float] = time.monotonic,
    **env_kwargs: Any,
) -> Any:
    """The FastAPI application serving :class:`~quill_env.env.SQLOptEnv` sessions.

    Args:
        max_sessions: sessions open at once (WebSocket and HTTP together).
        session_timeout: seconds a session may stay idle before it is closed.
        max_message_bytes: the largest request (WebSocket message or HTTP body) accepted.
        clock: the clock of idle times.
        **env_kwargs: the :class:`~quill_env.env.SQLOptEnv` arguments of every session
            (``suite``, ``split``, ``scale``, ``engine``, ``max_attempts``, ``cost`` ...).

    Returns:
        A ``fastapi.FastAPI`` application; ``app.state.sessions`` is its
        :class:`~quill_env.serve.sessions.SessionManager`.

    Raises:
        MissingExtraError: FastAPI is not installed.
        ConfigError: bad ``env_kwargs`` (checked once here, not at the first session).
    """
    fastapi = require("fastapi")
    responses = require("fastapi.responses")
    probe = SQLOptEnv(**env_kwargs)
    described = schemas(probe)
    metadata = {
        "name": "Quill",
        "description": "SQL query optimization with verified, execution-based rewards.",
        "version": __version__,
        "task_ids": [t.id for t in probe.tasks],
    }
    probe.close()
    manager = SessionManager(env_kwargs, max_sessions, session_timeout, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async def reap_forever() -> None:
            while True:
                await asyncio.sleep(min(session_timeout / 2, 30.0))
                await manager.reap()

        reaper = asyncio.create_task(reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            await manager.close_all()

    app = fastapi.FastAPI(title="Quill", version=__version__, lifespan=lifespan)
    app.state.sessions = manager

    @app.exception_handler(ServeError)
    async def refused(request: fastapi.Request, err: ServeError) -> Any:
        return responses.JSONResponse({"detail": str(err), "code": err.code}, status_code=http_status(err))

    async def body_of(request: fastapi.Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_message_bytes):
            raise refuse(ErrorCode.MESSAGE_TOO_LARGE, f"the body is over {max_message_bytes:,} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_message_bytes:
                raise refuse(ErrorCode.MESSAGE_TOO_LARGE, f"the body is over {max_message_bytes:,} bytes")
        return parse_object(bytes(body), max_message_bytes) if body.strip() else {}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "healthy", "active_sessions": manager.active, "max_sessions": manager.max_sessions}

    @app.get("/schema")
    async def schema() -> dict[str, Any]:
        return described

    @app.get("/metadata")
    async def get_metadata() -> dict[str, Any]:
        return metadata

    @app.post("/reset")
    async def http_reset(request: fastapi.Request) -> Any:
        body = await body_of(request)
        session_id = body.pop("session_id", None)
        args = reset_args(body)
        fresh = session_id is None
        session = await manager.open("http") if fresh else manager.get(session_id)
        try:
            data = await session.reset(**args)
        except ServeError:
            if fresh:
                await manager.close(session)
            raise
        return _json(responses, {**data, "session_id": session.id})

    @app.post("/step")
    async def http_step(request: fastapi.Request) -> Any:
        body = await body_of(request)
        only_keys(body, {"action", "session_id", "timeout_s", "request_id"}, "the step request")
        session = manager.get(body.get("session_id"))
        if "action" not in body:
            raise refuse(ErrorCode.VALIDATION_ERROR, 'the step request needs "action": {"sql": "..."}')
        data = await session.step(step_action(body["action"]))
        return _json(responses, {**data, "session_id": session.id})

    @app.get("/state")
    async def http_state(session_id: str | None = None) -> Any:
        return await manager.get(session_id).state()

    @app.post("/close")
    async def http_close(request: fastapi.Request) -> Any:
        body = await body_of(request)
        only_keys(body, {"session_id"}, "the close request")
        await manager.close(manager.get(body.get("session_id")))
        return {"closed": True}

    @app.websocket("/ws")
    async def websocket_session(websocket: fastapi.WebSocket) -> None:
        await websocket.accept()
        try:
            session = await manager.open("ws")
        except ServeError as err:
            await _send(websocket, error_message(err))
            with contextlib.suppress(Exception):
                await websocket.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(_receive(websocket), timeout=session_timeout)
                except asyncio.TimeoutError:
                    idle = refuse(
                        ErrorCode.SESSION_ERROR, f"idle for {session_timeout:g}s: the session is closed"
                    )
                    await _send(websocket, error_message(idle))
                    break
                if raw is None:
                    break
                try:
                    reply = await _dispatch(session, raw, max_message_bytes)
                except ServeError as err:
                    reply = error_message(err)
                if reply is None or not await _send(websocket, reply):
                    break
        finally:
            await manager.close(session)
            with contextlib.suppress(Exception):
                await websocket.close()

    return app


def _json(responses: ModuleType, content: Any) -> Any:
    """A JSON response of already JSON-safe ``content`` (strict: no NaN)."""
    return responses.Response(dumps(content), media_type="application/json")


async def _receive(websocket: Any) -> str | bytes | None:
    """The next message's text (or bytes); ``None`` once the client has gone."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    return text if text is not None else message.get("bytes") or b""


async def _send(websocket: Any, message: dict[str, Any]) -> bool:
    """Send ``message``; ``False`` when the client has gone (the caller then closes the session)."""
    try:
        await websocket.send_text(dumps(message))
    except Exception:  # a dropped connection surfaces as one of several transport errors
        return False
    return True


async def _dispatch(session: Session, raw: str | bytes, limit: int) -> dict[str, Any] | None:
    """The reply to one WebSocket message (``None`` for ``close``).

    Raises:
        ServeError: the message is malformed or the session refused it.
    """
    message = parse_object(raw, limit)
    only_keys(message, {"type", "data"}, "the message")
    kind, data = message.get("type"), message.get("data", {})
    if kind == "reset":
        return {"type": "observation", "data": await session.reset(**reset_args(data))}
    if kind == "step":
        return {"type": "observation", "data": await session.step(step_action(data))}
    if kind == "state":
        return {"type": "state", "data": await session.state()}
    if kind == "close":
        return None
    raise refuse(
        ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}; expected reset, step, state or close"
    )


def make_server(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    **uvicorn_options: Any,
) -> Any:
    """A ``uvicorn.Server`` for ``app``.

    A WebSocket message a little over ``max_message_bytes`` gets the app's error message; one
    over twice that drops its connection (close code 1009) before it is read.

    Raises:
        MissingExtraError: uvicorn is not installed.
    """
    uvicorn = require("uvicorn")
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws_max_size=2 * max_message_bytes,
        lifespan="on",
        **uvicorn_options,
    )
    return uvicorn.Server(config)


def run(host: str = "127.0.0.1", port: int = 8000, **app_options: Any) -> None:
    """Serve until interrupted: :func:`create_app` with ``app_options`` on ``host:port``.

    Raises:
        MissingExtraError: the ``serve`` extra is not installed.
        ConfigError: bad environment arguments.
    """
    limit = app_options.get("max_message_bytes", MAX_MESSAGE_BYTES)
    make_server(create_app(**app_options), host, port, max_message_bytes=limit).run()


__all__ = ["CLOSE_TRY_AGAIN_LATER", "create_app", "make_server", "require", "run", "schemas"]
