"""Measuring speed: the deterministic ``work`` mode and the interleaved ``wall`` mode (DESIGN §4).

``work`` compares the engine's own work counters (SQLite: exact VM steps), which repeat exactly
from run to run; the raw ratio overstates wall-clock speedups, so the reward uses the calibrated
estimate ``ratio ** alpha`` with ``alpha`` fitted per backend. ``wall`` warms up, then times the
baseline and the candidate interleaved (A B A B ...) until the confidence interval of the log
speed ratio is tight or the time budget is spent, and reports the conservative lower bound.
"""

from __future__ import annotations

import abc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from quill_env.backends.base import Backend, Budget, Timer
from quill_env.errors import ConfigError, UnknownNameError


class CostMode(str, Enum):
    """How speed is measured."""

    WORK = "work"
    """Engine work counter ratio, calibrated (deterministic)."""
    WALL = "wall"
    """Interleaved wall-clock timing, conservative bound (non-deterministic)."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: CostMode | str) -> CostMode:
        """The cost mode named ``value``, or an :class:`UnknownNameError` listing the modes.

        >>> CostMode.parse("wall") is CostMode.WALL
        True
        """
        try:
            return cls(value)
        except ValueError:
            raise UnknownNameError("cost mode", str(value), [m.value for m in cls]) from None

    @property
    def deterministic(self) -> bool:
        """Whether the mode repeats exactly (on a backend whose work counter does)."""
        return self is CostMode.WORK


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


# --- meters -----------------------------------------------------------------------------------


class Baselined(Protocol):
    """What a meter reads of the original query's run on a database."""

    work: int
    seconds: float
    rows: Sequence[tuple]
    counters: dict[str, int]


@dataclass(frozen=True)
class Measurement:
    """How much faster a verified rewrite is, as one cost mode measures it.

    Args:
        speedup: what the reward pays (``work``: calibrated; ``wall``: the lower confidence bound).
        raw: the uncalibrated ratio (``work``: the counter ratio; ``wall``: the point estimate).
        baseline_cost: the original's cost in :attr:`Meter.unit`.
        candidate_cost: the rewrite's cost in :attr:`Meter.unit`.
        wall: the wall-clock interval (``lower``, ``upper``, ``point``, ``pairs``); ``None`` in ``work``.
    """

    speedup: float
    raw: float
    baseline_cost: float
    candidate_cost: float
    wall: dict[str, float | int] | None = None


class Meter(abc.ABC):
    """One cost mode: the budget a rewrite runs under and the speedup it is paid for.

    A :class:`~quill_env.evaluator.TaskRunner` holds one meter (:func:`meter_for`) and never asks
    which mode it is in: the budget of a run on the main database or a twin comes from
    :meth:`budget`, the speedup of a verified rewrite from :meth:`measure`.
    """

    mode: CostMode
    unit: str
    """The unit of :attr:`Measurement.baseline_cost` and :attr:`Measurement.candidate_cost`."""

    def __init__(self, backend: Backend, budget_factor: float) -> None:
        self.backend = backend
        self.budget_factor = budget_factor

    def budget(self, record: Baselined, floor: Baselined | None = None) -> Budget:
        """The budget of a rewrite's run where the original ran as ``record``.

        Args:
            record: the original's run on the same database.
            floor: a run whose cost the budget is at least ``budget_factor`` times (a twin's
                budget is floored by the main database's, so a twin that makes the original
                cheaper does not stop a rewrite that costs what it costs on the main database).
        """
        cost = self.cost_of(record) if floor is None else max(self.cost_of(record), self.cost_of(floor))
        return self._budget(self.budget_factor * cost, len(record.rows) + 1)

    @abc.abstractmethod
    def cost_of(self, record: Baselined) -> float:
        """The original's cost in this mode."""

    @abc.abstractmethod
    def _budget(self, limit: float, max_rows: int) -> Budget: ...

    @abc.abstractmethod
    def measure(self, baseline: Baselined, run: Baselined, measure_wall: WallRun) -> Measurement:
        """The speedup of a verified rewrite.

        Args:
            baseline: the original's run on the main database.
            run: the rewrite's (verified) run there.
            measure_wall: times the original against the rewrite, interleaved (used by ``wall``).
        """


WallRun = Callable[[], WallMeasurement]


class WorkMeter(Meter):
    """``work``: the engine's deterministic counter, calibrated to the clock by the backend's constants."""

    mode = CostMode.WORK

    def __init__(self, backend: Backend, budget_factor: float) -> None:
        super().__init__(backend, budget_factor)
        self.unit = backend.work_unit

    def cost_of(self, record: Baselined) -> float:
        """The original's work counter."""
        return record.work

    def _budget(self, limit: float, max_rows: int) -> Budget:
        return Budget(max_work=int(limit) + 10_000, max_rows=max_rows)

    def measure(self, baseline: Baselined, run: Baselined, measure_wall: WallRun) -> Measurement:
        """The calibrated work ratio of the verified run (no query is run again)."""
        backend = self.backend
        # charged against the original's loop length, so dead padding cannot dilute the shares
        work = backend.work_of(run.counters, reference=baseline.counters)
        speedup = calibrated(
            baseline.work,
            work,
            len(baseline.rows),
            alpha=backend.calibration_alpha,
            statement_work=backend.calibration_statement_work,
            row_work=backend.calibration_row_work,
        )
        return Measurement(speedup, work_ratio(baseline.work, work), float(baseline.work), float(work))


class WallMeter(Meter):
    """``wall``: the original and the rewrite timed interleaved; the reward pays the lower bound."""

    mode = CostMode.WALL
    unit = "seconds"

    def cost_of(self, record: Baselined) -> float:
        """The original's seconds (of the baseline run)."""
        return record.seconds

    def _budget(self, limit: float, max_rows: int) -> Budget:
        return Budget(max_seconds=max(limit, 0.05), max_rows=max_rows)

    def measure(self, baseline: Baselined, run: Baselined, measure_wall: WallRun) -> Measurement:
        """Time the original against the rewrite, interleaved, and pay the interval's lower bound."""
        m = measure_wall()
        interval = {"lower": m.lower, "upper": m.upper, "point": m.speedup, "pairs": m.pairs}
        return Measurement(m.lower, m.speedup, m.baseline_seconds, m.candidate_seconds, interval)


METERS: dict[CostMode, type[Meter]] = {CostMode.WORK: WorkMeter, CostMode.WALL: WallMeter}
"""The meter of each cost mode."""


def meter_for(mode: CostMode | str, backend: Backend, budget_factor: float) -> Meter:
    """The meter of a cost mode on a backend.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> meter_for("work", SQLiteBackend.empty(), 2.0).unit
    'vm_steps'
    """
    return METERS[CostMode.parse(mode)](backend, budget_factor)
