"""Sessions of the served environment: one environment, one thread and one lock per session.

Every call on a session's env runs on the session's single worker thread (so the event loop never
blocks), and a lock keeps two calls of one session from interleaving. Sessions share the
process-wide runners (:func:`~quill_env.runners.runner_cache`): a runner's database is locked
while it scores (:func:`~quill_env.runners.backend_lock`), so one session's scratch indexes and
twin rows are gone before another session's step touches that database, and a task's baseline
and variants are built once for every session. A session closed for any reason closes its env on
that thread, after any step still running; its slot counts until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from quill_env.env import SQLOptEnv
from quill_env.errors import ConfigError, EnvStateError, QuillError, ServeError
from quill_env.serve.wire import ErrorCode, jsonable, refuse

logger = logging.getLogger(__name__)

R = TypeVar("R")


def _as_serve_error(err: Exception) -> ServeError:
    """The error a client sees for an exception of its session's env.

    Argument and ordering errors are the client's and say so; anything else is logged and
    reported without its message, which may carry database values.
    """
    if isinstance(err, ServeError):
        return err
    if isinstance(err, EnvStateError):
        return refuse(ErrorCode.STATE_ERROR, str(err))
    if isinstance(err, ConfigError):
        return refuse(ErrorCode.VALIDATION_ERROR, str(err))
    logger.error("a served environment failed", exc_info=err)
    kind = type(err).__name__ if isinstance(err, QuillError) else "internal error"
    return refuse(ErrorCode.EXECUTION_ERROR, f"the environment failed ({kind}); see the server's log")


class Session:
    """One client's environment, run on a thread of its own.

    Args:
        kind: ``"ws"`` (owned by one WebSocket connection) or ``"http"`` (named by its id).
        env_kwargs: the :class:`SQLOptEnv` arguments.
        clock: the clock of idle times (seconds).
    """

    def __init__(self, kind: str, env_kwargs: dict[str, Any], clock: Callable[[], float]) -> None:
        self.id = secrets.token_urlsafe(16)
        """Unguessable: over HTTP the id is all that names a session."""
        self.kind = kind
        self._clock = clock
        self.last_active = clock()
        self.episode_id: str | None = None
        self.step_count = 0
        self.done = True
        """No episode is running (none started yet, or the last one ended)."""
        self.closed = False
        self.lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"quill-{kind}-session")
        self._env_kwargs = env_kwargs
        self._env: SQLOptEnv | None = None

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(*args)`` on the session's thread, one call at a time."""
        async with self.lock:
            if self.closed:
                raise refuse(ErrorCode.SESSION_ERROR, "the session is closed")
            self.last_active = self._clock()
            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            except Exception as err:
                raise _as_serve_error(err) from None
            finally:
                self.last_active = self._clock()

    def _env_here(self) -> SQLOptEnv:
        if self._env is None:
            self._env = SQLOptEnv(**self._env_kwargs)
        return self._env

    async def reset(self, seed: int | None, task_id: str | None, episode_id: str | None) -> dict[str, Any]:
        """Start an episode; the observation message's data."""

        def run() -> tuple[dict, dict]:
            options = {"task_id": task_id} if task_id is not None else None
            return self._env_here().reset(seed=seed, options=options)

        obs, info = await self._call(run)
        self.episode_id = episode_id or uuid.uuid4().hex
        self.step_count = 0
        self.done = False
        return jsonable(
            {
                "observation": obs,
                "reward": None,
                "done": False,
                "terminated": False,
                "truncated": False,
                "info": info,
            }
        )

    async def step(self, sql: str) -> dict[str, Any]:
        """Score ``sql``; the observation message's data.

        Raises:
            ServeError: ``STATE_ERROR`` before ``reset`` or after the episode ended.
        """

        def run() -> tuple[dict, float, bool, bool, dict]:
            if self._env is None:
                raise EnvStateError("call reset before step")
            return self._env.step(sql)

        obs, reward, terminated, truncated, info = await self._call(run)
        self.step_count += 1
        done = self.done = bool(terminated or truncated)
        return jsonable(
            {
                "observation": obs,
                "reward": reward,
                "done": done,
                "terminated": terminated,
                "truncated": truncated,
                "info": info,
            }
        )

    async def state(self) -> dict[str, Any]:
        """OpenEnv's state (``episode_id``, ``step_count``) plus the task and episode status."""
        async with self.lock:
            task = self._env.task if self._env is not None else None
            return {
                "session_id": self.id,
                "episode_id": self.episode_id,
                "step_count": self.step_count,
                "task_id": task.id if task is not None else None,
                "done": self.done,
                "max_attempts": self._env_kwargs.get("max_attempts", 1),
            }

    def close(self) -> asyncio.Future[None]:
        """Close the env on the session's thread (after a running step); done when it is closed."""
        self.closed = True

        def run() -> None:
            if self._env is not None:
                self._env.close()

        future = asyncio.wrap_future(self._executor.submit(run))
        self._executor.shutdown(wait=False)
        return future


class SessionManager:
    """The sessions of one server: at most ``max_sessions``, idle ones expire.

    Args:
        env_kwargs: the :class:`SQLOptEnv` arguments of every session.
        max_sessions: sessions open at once (WebSocket and HTTP together); one more is refused.
        session_timeout: seconds a session may stay idle before it is closed.
        clock: the clock of idle times (inject a fake one in tests).

    Raises:
        ConfigError: ``max_sessions < 1`` or ``session_timeout <= 0``.
    """

    def __init__(
        self,
        env_kwargs: dict[str, Any],
        max_sessions: int = 8,
        session_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1:
            raise ConfigError(f"max_sessions must be >= 1, got {max_sessions}")
        if not session_timeout > 0:
            raise ConfigError(f"session_timeout must be > 0 seconds, got {session_timeout}")
        self.env_kwargs = dict(env_kwargs)
        self.max_sessions = max_sessions
        self.session_timeout = session_timeout
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    @property
    def active(self) -> int:
        """Sessions holding a slot (including closed ones whose env is still closing)."""
        return len(self._sessions)

    async def open(self, kind: str) -> Session:
        """A new session.

        Raises:
            ServeError: ``CAPACITY_REACHED`` when every slot is taken.
        """
        await self.reap()
        if len(self._sessions) >= self.max_sessions:
            raise refuse(
                ErrorCode.CAPACITY_REACHED,
                f"the server is full ({self.max_sessions} sessions); try again after one closes",
            )
        session = Session(kind, self.env_kwargs, self._clock)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: Any) -> Session:
        """The open HTTP session ``session_id``.

        Raises:
            ServeError: ``SESSION_ERROR`` for an unknown, expired or closed id (or a WebSocket's).
        """
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None or session.closed or session.kind != "http":
            raise refuse(
                ErrorCode.SESSION_ERROR,
                "unknown, expired or closed session_id; POST /reset without one starts a session",
            )
        return session

    async def close(self, session: Session) -> None:
        """Close ``session``; its slot is free once its env is closed (idempotent)."""
        if session.closed:
            return
        future = session.close()
        future.add_done_callback(lambda _: self._sessions.pop(session.id, None))
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("closing a session's environment failed")

    async def reap(self) -> int:
        """Close the HTTP sessions idle for longer than ``session_timeout``; how many."""
        now = self._clock()
        expired = [
            s
            for s in self._sessions.values()
            if s.kind == "http"
            and not s.closed
            and not s.lock.locked()
            and now - s.last_active > self.session_timeout
        ]
        for session in expired:
            await self.close(session)
        return len(expired)

    async def close_all(self) -> None:
        """Close every session (server shutdown)."""
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await self.close(session)


__all__ = ["Session", "SessionManager"]
