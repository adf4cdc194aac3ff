"""One pool of worker processes for every caller that scores in parallel.

The leaderboard, the trainers' reward function and task authoring all score in a
:class:`WorkerPool`: processes started with ``spawn`` (safe with APSW and DuckDB connections,
threads and CUDA), each running an initializer once, so what a worker builds (its runners, in the
process-wide :func:`~quill_env.runners.runner_cache`) serves every later call. Workers ignore
SIGINT: Ctrl-C in a terminal reaches every process of the foreground group, and the parent alone
stops the pool and reports, once, with no traceback from each worker. :func:`make_pool` gives the
same interface over Ray actors (:class:`~quill_env.ray_pool.RayPool`) when a caller names a cluster.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from quill_env.errors import ConfigError
from quill_env.ray_pool import LOCAL, RayPool, map_submitted

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT while processes are started (only in the main thread, where signals live).

    A process started meanwhile inherits the ignored signal, and Python keeps it ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _start(initializer: Callable[..., object] | None, initargs: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    """Worker processes that keep their state between calls.

    Args:
        workers: how many processes (at least one; callers score in their own process instead
            of making a pool of none).
        initializer: run once in each worker, with ``initargs``.
        initargs: its arguments (picklable).
        context: the multiprocessing start method (``spawn`` by default).

    Raises:
        ConfigError: ``workers`` is below one, or ``context`` is not a start method.
    """

    def __init__(
        self,
        workers: int,
        initializer: Callable[..., object] | None = None,
        initargs: tuple = (),
        *,
        context: str = "spawn",
    ) -> None:
        if workers < 1:
            raise ConfigError(f"a worker pool needs at least one worker, got {workers}")
        try:
            ctx = mp.get_context(context)
        except ValueError:
            raise ConfigError(f"unknown multiprocessing start method {context!r}") from None
        self.workers = workers
        with sigint_ignored():
            self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_start, initargs=(initializer, initargs)
            )

    def submit(self, fn: Callable[..., R], /, *args: Any) -> Future[R]:
        """Run ``fn(*args)`` in a worker."""
        if self._executor is None:
            raise ConfigError("the worker pool is closed")
        with sigint_ignored():  # workers start on demand, here
            return self._executor.submit(fn, *args)

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True) -> Iterator[R]:
        """``fn`` over ``items`` in the workers: in order, or as each finishes (``ordered=False``).

        Every item is submitted at once; leaving the loop early cancels what has not started.
        """
        return map_submitted(self.submit, fn, items, ordered=ordered)

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers: after the submitted calls, or (``cancel``) at once, killing running ones."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if cancel:
            terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
            if terminate is not None:
                terminate()
            else:
                for process in list((getattr(executor, "_processes", None) or {}).values()):
                    process.terminate()
        executor.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)


def make_pool(
    workers: int,
    initializer: Callable[..., object] | None = None,
    initargs: tuple = (),
    *,
    ray: str | None = None,
    context: str = "spawn",
) -> WorkerPool | RayPool:
    """A :class:`WorkerPool`, or a :class:`~quill_env.ray_pool.RayPool` when ``ray`` names a cluster.

    Args:
        workers: how many processes (or actors).
        initializer: run once in each of them, with ``initargs``.
        initargs: its arguments.
        ray: ``None``: local processes; ``"local"``: Ray actors on a Ray instance started here (or
            the one this process joined); ``"auto"``, ``"host:port"`` or ``"ray://host:port"``:
            actors on that cluster.
        context: the start method of local processes.

    Raises:
        ConfigError: ``workers`` is below one, or no Ray cluster answers at ``ray``.
        MissingExtraError: ``ray`` is given and Ray is not installed.
    """
    if ray is None:
        return WorkerPool(workers, initializer, initargs, context=context)
    return RayPool(workers, initializer, initargs, address=None if ray == LOCAL else ray)


__all__ = ["WorkerPool", "make_pool", "sigint_ignored"]
