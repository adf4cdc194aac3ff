"""Leaderboard metrics over scored records: correctness, reward, speedups, fast_p, breakdowns.

A correct rewrite's speedup is the calibrated estimate (``work``) or the conservative bound
(``wall``); an ``unchanged`` rewrite counts as 1x. ``fast_p`` is the share of *all* tasks whose
rewrite is both correct and at least ``p`` times faster (KernelBench's fast_p).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from quill_agents.leaderboard.pool import StepRecord
from quill_env.authoring.taskgen import TARGET_MIX

FAST_P = (1.5, 2.0, 5.0, 10.0, 50.0, 1000.0)
"""The speedup thresholds of the fast_p curve."""

SPEEDUP_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("1.5-2x", 1.5, 2.0),
    ("2-10x", 2.0, 10.0),
    ("10-100x", 10.0, 100.0),
    ("100x+", 100.0, math.inf),
)
"""Buckets of the speedup histogram; the last three carry the 50/30/20 target (DESIGN §1)."""


def p_key(p: float) -> str:
    """The JSON key of a fast_p threshold.

    >>> p_key(1.5), p_key(2.0), p_key(1000.0)
    ('1.5', '2', '1000')
    """
    return f"{p:g}"


def correct_speedup(record: StepRecord) -> float | None:
    """The speedup of a correct rewrite (``unchanged``: 1.0); ``None`` when not correct."""
    if not record.correct:
        return None
    return float(record.speedup) if record.speedup else 1.0


def geomean(values: Iterable[float]) -> float | None:
    """Geometric mean (``None`` for no values).

    >>> geomean([1.0, 4.0]), geomean([])
    (2.0, None)
    """
    logs = [math.log(v) for v in values if v > 0]
    return round(math.exp(sum(logs) / len(logs)), 6) if logs else None


def fast_p(records: Sequence[StepRecord], ps: Sequence[float] = FAST_P) -> dict[str, float]:
    """Share of tasks whose rewrite is correct and at least ``p`` times faster, per ``p``."""
    speeds = [correct_speedup(r) for r in records]
    n = max(len(records), 1)
    return {p_key(p): round(sum(1 for s in speeds if s is not None and s >= p) / n, 6) for p in ps}


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 6) if values else None


def core(records: Sequence[StepRecord]) -> dict[str, Any]:
    """Correct share, mean reward, improved share (reward > 0) and geometric-mean speedup."""
    n = len(records)
    speeds = [s for s in map(correct_speedup, records) if s is not None]
    return {
        "tasks": n,
        "correct": round(sum(r.correct for r in records) / n, 6) if n else 0.0,
        "mean_reward": _mean([r.reward for r in records]) or 0.0,
        "improved": round(sum(r.reward > 0 for r in records) / n, 6) if n else 0.0,
        "geomean_speedup": geomean(speeds),
    }


def _breakdown(records: Sequence[StepRecord], keys: Callable[[StepRecord], Iterable[str]]) -> dict[str, Any]:
    groups: dict[str, list[StepRecord]] = defaultdict(list)
    for r in records:
        for key in keys(r):
            groups[key].append(r)
    return {k: core(v) for k, v in sorted(groups.items())}


def speedup_histogram(records: Sequence[StepRecord]) -> dict[str, Any]:
    """Shares of the improved rewrites per speedup bucket, beside the target mix."""
    speeds = [s for s in map(correct_speedup, records) if s is not None and s >= SPEEDUP_BUCKETS[0][1]]
    n = max(len(speeds), 1)
    shares = {name: round(sum(lo <= s < hi for s in speeds) / n, 6) for name, lo, hi in SPEEDUP_BUCKETS}
    return {"improved": len(speeds), "shares": shares, "target": dict(TARGET_MIX)}


def timing(records: Sequence[StepRecord]) -> dict[str, float | None]:
    """Mean and median scoring time per step, and the agent's mean time per action."""
    steps = [r.step_seconds for r in records if r.step_seconds]
    acts = [r.act_seconds for r in records if r.act_seconds]
    return {
        "step_mean_s": _mean(steps),
        "step_median_s": round(statistics.median(steps), 6) if steps else None,
        "act_mean_s": _mean(acts),
    }


def summarize(records: Sequence[StepRecord]) -> dict[str, Any]:
    """Every leaderboard figure of one agent's records.

    Returns:
        ``tasks``, ``correct`` and ``improved`` (shares in [0, 1]), ``mean_reward``,
        ``geomean_speedup``, ``fast_p`` (by threshold), ``by_pattern``, ``by_schema``,
        ``verdicts`` (counts), ``speedups`` (histogram against the target) and ``timing``.
    """
    out = core(records)
    out["fast_p"] = fast_p(records)
    out["by_pattern"] = _breakdown(records, lambda r: r.patterns or ["(none)"])
    out["by_schema"] = _breakdown(records, lambda r: [r.schema])
    out["verdicts"] = dict(sorted(Counter(r.verdict.value for r in records).items()))
    out["speedups"] = speedup_histogram(records)
    out["timing"] = timing(records)
    wall = [r.wall for r in records if r.wall]
    if wall:
        out["wall_ci"] = {
            "mean_lower": _mean([w["lower"] for w in wall]),
            "mean_upper": _mean([w["upper"] for w in wall]),
            "mean_pairs": _mean([w["pairs"] for w in wall]),
        }
    return out


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """The deterministic part of a summary (timings dropped): equal across re-runs in ``work`` mode."""
    return {k: v for k, v in summary.items() if k not in ("timing", "wall_ci")}


__all__ = [
    "FAST_P",
    "SPEEDUP_BUCKETS",
    "comparable",
    "core",
    "correct_speedup",
    "fast_p",
    "geomean",
    "p_key",
    "speedup_histogram",
    "summarize",
    "timing",
]
