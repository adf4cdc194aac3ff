"""Measuring speed: the deterministic ``work`` mode and the interleaved ``wall`` mode (DESIGN §4).

``work`` compares the engine's own work counters (SQLite: exact VM steps), which repeat exactly
from run to run; the raw ratio overstates wall-clock speedups, so the reward uses the calibrated
estimate ``ratio ** alpha`` with ``alpha`` fitted per backend. ``wall`` warms up, then times the
baseline and the candidate interleaved (A B A B ...) until the confidence interval of the log
speed ratio is tight or the time budget is spent, and reports the conservative lower bound.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from quill_env.backends.base import Timer
from quill_env.errors import ConfigError


class CostMode(str, Enum):
    """How speed is measured."""

    WORK = "work"
    """Engine work counter ratio, calibrated (deterministic)."""
    WALL = "wall"
    """Interleaved wall-clock timing, conservative bound (non-deterministic)."""


@dataclass(frozen=True)
class WallOptions:
    """Knobs of the ``wall`` mode.

    Args:
        warmup: untimed runs of each query first.
        min_pairs: the fewest timed (baseline, candidate) pairs.
        max_pairs: the most timed pairs.
        time_budget: seconds of timing after which measurement stops.
        target_halfwidth: stop when the CI half-width of ``log(speedup)`` is below this.
        z: the normal quantile of the two-sided interval (1.96 = 95%).
    """

    warmup: int = 1
    min_pairs: int = 3
    max_pairs: int = 25
    time_budget: float = 5.0
    target_halfwidth: float = 0.05
    z: float = 1.96

    def __post_init__(self) -> None:
        if self.min_pairs < 2 or self.max_pairs < self.min_pairs:
            raise ConfigError("WallOptions: need 2 <= min_pairs <= max_pairs")
        if self.time_budget <= 0 or self.target_halfwidth <= 0 or self.z <= 0:
            raise ConfigError("WallOptions: time_budget, target_halfwidth and z must be positive")


@dataclass(frozen=True)
class WallMeasurement:
    """The outcome of an interleaved timing."""

    speedup: float
    """Geometric-mean speedup (point estimate)."""
    lower: float
    """Conservative lower bound of the speedup (used for the tier)."""
    upper: float
    pairs: int
    baseline_seconds: float
    """Median baseline time."""
    candidate_seconds: float
    """Median candidate time."""


def calibrated(
    baseline_work: float,
    candidate_work: float,
    rows: int = 0,
    *,
    alpha: float = 1.0,
    statement_work: float = 0.0,
    row_work: float = 0.0,
) -> float:
    """The calibrated speedup estimate from deterministic work counters.

    Wall time is modelled as ``work + statement_work + row_work * rows`` in work units: a fixed
    cost per statement and a cost per returned row (both sides return the same rows once
    verified) that the engine's counter does not see, then the ratio is raised to ``alpha``.
    All three constants are fitted per backend by ``benchmarks/core.py``.

    >>> round(calibrated(108_000, 1_000, alpha=0.83), 1)
    48.7
    >>> round(calibrated(108_000, 1_000, 0, alpha=1.0, statement_work=1_000), 1)
    54.5
    """
    fixed = statement_work + row_work * rows
    ratio = (baseline_work + fixed) / (max(candidate_work, 1) + fixed)
    return ratio**alpha if ratio > 0 else 0.0


def work_ratio(baseline_work: int, candidate_work: int) -> float:
    """Baseline work over candidate work (a candidate doing no counted work counts as 1 unit).

    >>> work_ratio(1000, 10)
    100.0
    """
    return baseline_work / max(candidate_work, 1)


def interleaved(
    run_baseline: Callable[[], float],
    run_candidate: Callable[[], float],
    options: WallOptions | None = None,
    timer: Timer = time.perf_counter,
) -> WallMeasurement:
    """Time two queries interleaved until the log-ratio interval is tight.

    Args:
        run_baseline: runs the baseline once and returns its seconds.
        run_candidate: runs the candidate once and returns its seconds.
        options: see :class:`WallOptions`.
        timer: the clock that enforces the time budget.

    >>> m = interleaved(lambda: 0.2, lambda: 0.1)
    >>> round(m.speedup, 3), m.lower <= m.speedup <= m.upper
    (2.0, True)
    """
    options = options or WallOptions()
    for _ in range(options.warmup):
        run_baseline()
        run_candidate()
    start = timer()
    logs: list[float] = []
    base_times: list[float] = []
    cand_times: list[float] = []
    half = math.inf
    while len(logs) < options.max_pairs:
        if len(logs) % 2 == 0:
            b, c = run_baseline(), run_candidate()
        else:
            c, b = run_candidate(), run_baseline()
        b, c = max(b, 1e-9), max(c, 1e-9)
        base_times.append(b)
        cand_times.append(c)
        logs.append(math.log(b / c))
        if len(logs) >= options.min_pairs:
            half = options.z * statistics.stdev(logs) / math.sqrt(len(logs))
            if half <= options.target_halfwidth or timer() - start > options.time_budget:
                break
    mean = statistics.fmean(logs)
    return WallMeasurement(
        speedup=math.exp(mean),
        lower=math.exp(mean - half),
        upper=math.exp(mean + half),
        pairs=len(logs),
        baseline_seconds=statistics.median(base_times),
        candidate_seconds=statistics.median(cand_times),
    )
