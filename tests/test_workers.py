"""The one worker pool: state kept between calls, order, Ctrl-C, dead workers and cancellation."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from quill_env.errors import ConfigError
from quill_env.workers import WorkerPool

_STATE: list[str] = []


def _remember(tag: str) -> None:
    _STATE.append(tag)


def _state(_: object) -> tuple[int, list[str]]:
    return os.getpid(), list(_STATE)


def _sigint_ignored(_: object) -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def _square(x: int) -> int:
    time.sleep(0.05 * (x % 3))
    return x * x


def _die(_: object) -> None:
    os._exit(3)


def _sleep_then_touch(path: str) -> None:
    time.sleep(30)
    Path(path).touch()


def test_initializer_runs_once_per_worker_and_its_state_serves_later_calls():
    with WorkerPool(2, _remember, ("warm",)) as pool:
        first = list(pool.map(_state, range(6)))
        second = [pool.submit(_state, None).result() for _ in range(3)]
    assert all(state == ["warm"] for _, state in first + second)
    assert len({pid for pid, _ in first + second}) <= 2
    assert os.getpid() not in {pid for pid, _ in first}


def test_map_keeps_order_unless_asked_not_to():
    with WorkerPool(2) as pool:
        assert list(pool.map(_square, range(8))) == [x * x for x in range(8)]
        assert sorted(pool.map(_square, range(8), ordered=False)) == [x * x for x in range(8)]


def test_workers_ignore_ctrl_c_and_the_caller_does_not():
    before = signal.getsignal(signal.SIGINT)
    with WorkerPool(2) as pool:
        assert all(pool.map(_sigint_ignored, range(4)))
        assert signal.getsignal(signal.SIGINT) == before


def test_a_dead_worker_raises_instead_of_hanging():
    with WorkerPool(1) as pool, pytest.raises(BrokenProcessPool):
        pool.submit(_die, None).result(timeout=120)


def test_leaving_on_an_error_kills_running_calls(tmp_path):
    marker = tmp_path / "finished"
    with pytest.raises(KeyboardInterrupt), WorkerPool(1) as pool:
        pool.submit(_sleep_then_touch, str(marker))
        time.sleep(1.0)  # let the worker start the call
        raise KeyboardInterrupt
    assert not marker.exists()


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="at least one worker"):
        WorkerPool(0)
    with pytest.raises(ConfigError, match="start method"):
        WorkerPool(1, context="teleport")
    pool = WorkerPool(1)
    pool.close()
    with pytest.raises(ConfigError, match="closed"):
        pool.submit(_square, 2)
