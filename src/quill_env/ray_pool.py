"""A worker pool of Ray actors, for scoring on more than one machine.

:class:`RayPool` has the interface of :class:`~quill_env.workers.WorkerPool` (``submit``,
``map``, ``close``, a context manager), so the leaderboard and task authoring run on a Ray cluster
unchanged. Each actor is one process that runs the initializer once and keeps what it builds
(its runners, in its process's :func:`~quill_env.runners.runner_cache`) for every later call.

An actor that dies (its node lost, its process killed) is replaced by a fresh one, which runs the
initializer again, and the call it was running is retried once on it: Quill's scoring is
deterministic in work mode, so a retry returns what the first try would have. A second loss fails
the call's future with :class:`ray.exceptions.RayActorError`.

Ray is imported when a pool is made, never with :mod:`quill_env`; without it the pool raises
:class:`~quill_env.errors.MissingExtraError`. Every node needs Quill installed (the same version)
and builds its own suite databases in its ``QUILL_CACHE``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, as_completed
from typing import Any, TypeVar

from quill_env.errors import ConfigError, MissingExtraError

T = TypeVar("T")
R = TypeVar("R")

LOCAL = "local"
"""The address that starts a private Ray instance on this machine (the library's ``None``)."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "ray") from None
    return ray


def connect(address: str | None, num_cpus: int) -> bool:
    """Connect this process to Ray; ``True`` when it started the instance (and should stop it).

    Args:
        address: ``None`` or ``"local"``: reuse the instance this process already joined, else
            start one on this machine with ``num_cpus`` CPUs; ``"auto"``: the cluster that
            ``ray start`` runs here (or ``RAY_ADDRESS``); ``"host:port"`` or ``"ray://host:port"``:
            that cluster.
        num_cpus: CPUs of a local instance started here.

    Raises:
        MissingExtraError: Ray is not installed.
        ConfigError: no Ray cluster answers at ``address``.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    if address in (None, LOCAL):
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level="warning")
        return True
    try:
        ray.init(address=address, logging_level="warning")
    except ConnectionError as err:
        raise ConfigError(
            f"no Ray cluster at {address!r} ({err}); start one with `ray start --head`, "
            "or use a local instance (--ray local)"
        ) from None
    return False


def map_submitted(
    submit: Callable[..., Future[R]], fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True
) -> Iterator[R]:
    """``fn`` over ``items`` through ``submit``, every item at once: the ``map`` of both pools.

    Results come in order, or as each finishes (``ordered=False``); leaving the loop early
    cancels what has not started.
    """
    futures = [submit(fn, item) for item in items]
    try:
        yield from (f.result() for f in (futures if ordered else as_completed(futures)))
    finally:
        for f in futures:
            f.cancel()


class _Host:
    """The body of one actor: runs the pool's initializer once, then the calls sent to it."""

    def __init__(self, initializer: Callable[..., object] | None, initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def call(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(*args)

    def pid(self) -> int:
        return os.getpid()


class RayPool:
    """Ray actors that keep their state between calls, with the interface of ``WorkerPool``.

    Args:
        workers: how many actors (at least one; each takes one CPU of the cluster).
        initializer: run once in each actor (and again in an actor that replaces a dead one).
        initargs: its arguments (serializable).
        address: the Ray cluster (see :func:`connect`; ``None``: a local instance).

    Raises:
        ConfigError: ``workers`` is below one, or no cluster answers at ``address``.
        MissingExtraError: Ray is not installed.
    """

    def __init__(
        self,
        workers: int,
        initializer: Callable[..., object] | None = None,
        initargs: tuple = (),
        *,
        address: str | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"a worker pool needs at least one worker, got {workers}")
        self._owns_ray = connect(address, workers)
        self._ray = _ray()
        self.workers = workers
        self._host = self._ray.remote(num_cpus=1, max_restarts=0)(_Host)
        self._init = (initializer, initargs)
        self._lock = threading.Lock()
        self._actors: list[Any] = [self._spawn() for _ in range(workers)]
        self._busy = [0] * workers
        self._pending: set[Future[Any]] = set()
        self._closed = False

    def _spawn(self) -> Any:
        return self._host.remote(*self._init)

    def actor_pids(self) -> list[int]:
        """The process id of each actor (after its initializer ran)."""
        with self._lock:
            actors = list(self._actors)
        return self._ray.get([a.pid.remote() for a in actors])

    def kill_actor(self, index: int) -> None:
        """Kill actor ``index`` now, as a lost node would (its running call is retried elsewhere)."""
        self._ray.kill(self._actors[index], no_restart=True)

    def submit(self, fn: Callable[..., R], /, *args: Any) -> Future[R]:
        """Run ``fn(*args)`` in the least busy actor."""
        with self._lock:
            if self._closed:
                raise ConfigError("the worker pool is closed")
            slot = min(range(self.workers), key=self._busy.__getitem__)
            self._busy[slot] += 1
            out: Future[R] = Future()
            self._pending.add(out)
        self._send(slot, fn, args, out, retries=1)
        return out

    def _send(self, slot: int, fn: Callable[..., Any], args: tuple, out: Future[Any], retries: int) -> None:
        actor = self._actors[slot]
        ref = actor.call.remote(fn, args)
        ref.future().add_done_callback(lambda done: self._finish(slot, actor, fn, args, out, retries, done))

    def _finish(
        self,
        slot: int,
        actor: Any,
        fn: Callable[..., Any],
        args: tuple,
        out: Future[Any],
        retries: int,
        done: Future[Any],
    ) -> None:
        error = done.exception()
        if isinstance(error, self._ray.exceptions.RayActorError) and retries > 0 and not self._closed:
            try:
                with self._lock:
                    if self._actors[slot] is actor:  # the first call to see the loss replaces the actor
                        self._actors[slot] = self._spawn()
                self._send(slot, fn, args, out, retries - 1)
                return
            except Exception as err:  # the cluster itself is gone: fail the call, never hang it
                error = err
        with self._lock:
            self._busy[slot] -= 1
            self._pending.discard(out)
        if not out.set_running_or_notify_cancel():
            return
        if error is not None:
            out.set_exception(error)
        else:
            out.set_result(done.result())

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True) -> Iterator[R]:
        """``fn`` over ``items`` in the actors: in order, or as each finishes (``ordered=False``).

        Every item is submitted at once; leaving the loop early drops the results not yet read.
        """
        return map_submitted(self.submit, fn, items, ordered=ordered)

    def close(self, *, cancel: bool = False) -> None:
        """Stop the actors: after the submitted calls, or (``cancel``) at once, killing running ones.

        A Ray instance the pool started is shut down; a cluster it joined keeps running.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
        if not cancel:
            for f in as_completed(pending):
                f.exception()
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        if self._owns_ray:
            self._ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)


__all__ = ["LOCAL", "RayPool", "connect", "map_submitted"]
