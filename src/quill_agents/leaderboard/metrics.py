"""Leaderboard metrics over scored records: correctness, reward, speedups, fast_p, breakdowns.

A correct rewrite's speedup is the calibrated estimate (``work``) or the conservative bound
(``wall``); an ``unchanged`` rewrite counts as 1x. ``fast_p`` is the share of *all* tasks whose
rewrite is both correct and at least ``p`` times faster (KernelBench's fast_p). The papers'
workload figures (:func:`workload`) sit next to it: mean and 90th-percentile cost of the rewritten
workload, timeouts counted at the cap.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from quill_agents.leaderboard.pool import StepRecord
from quill_env.authoring.taskgen import TARGET_MIX
from quill_env.reward import Verdict

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


def p90(values: Sequence[float]) -> float | None:
    """The 90th percentile by nearest rank (``None`` for no values).

    >>> p90(list(range(1, 11))), p90([5.0]), p90([])
    (9, 5.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def rewritten_cost(record: StepRecord, budget_factor: float = 2.0) -> float | None:
    """What the task's query costs as the agent rewrote it, as the query-rewrite papers count it.

    A correct rewrite costs its own measured cost (``unchanged``: the original's); a timeout is
    counted at the cap, ``budget_factor`` times the original's cost (where the environment stopped
    it); any other failure runs the original instead (a rewriter's output is only used when it is
    equivalent), so it costs the original's. ``None`` when the record carries no baseline cost.

    >>> r = StepRecord("a", "t", "s", "s", [], "", Verdict.TIMEOUT, False, -0.5, baseline_cost=10.0)
    >>> rewritten_cost(r)
    20.0
    """
    base = record.baseline_cost
    if base is None:
        return None
    if record.verdict is Verdict.TIMEOUT:
        return budget_factor * base
    if record.correct and record.candidate_cost is not None:
        return float(record.candidate_cost)
    return float(base)


def workload(records: Sequence[StepRecord], budget_factor: float = 2.0) -> dict[str, Any]:
    """The papers' workload metrics (LLM-R2, R-Bot, E3-Rewrite) next to fast_p.

    Costs are in the records' unit: seconds in ``wall`` mode, the engine's work counter in
    ``work`` mode (where "latency" is the deterministic cost it stands for).

    Returns:
        ``unit``; ``mean`` and ``p90`` of :func:`rewritten_cost` over the tasks, and the same of the
        original workload (``original_mean``, ``original_p90``); ``mean_ratio`` and ``p90_ratio``
        (rewritten over original); ``improved`` (share with reward > 0) and ``faster_2x`` (share
        correct and at least 2x faster).
    """
    pairs = [(r.baseline_cost, rewritten_cost(r, budget_factor)) for r in records]
    pairs = [(float(b), c) for b, c in pairs if b is not None and c is not None]
    base, costs = [b for b, _ in pairs], [c for _, c in pairs]
    mean, p90_cost, base_mean, base_p90 = _mean(costs), p90(costs), _mean(base), p90(base)
    n = max(len(records), 1)
    return {
        "unit": next((r.cost_unit for r in records if r.cost_unit), ""),
        "tasks": len(pairs),
        "mean": mean,
        "p90": p90_cost,
        "original_mean": base_mean,
        "original_p90": base_p90,
        "mean_ratio": round(mean / base_mean, 6) if mean is not None and base_mean else None,
        "p90_ratio": round(p90_cost / base_p90, 6) if p90_cost is not None and base_p90 else None,
        "improved": round(sum(r.reward > 0 for r in records) / n, 6),
        "faster_2x": fast_p(records, (2.0,))["2"],
    }


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
        ``verdicts`` (counts), ``speedups`` (histogram against the target), ``workload`` (the
        papers' metrics, :func:`workload`) and ``timing``.
    """
    out = core(records)
    out["fast_p"] = fast_p(records)
    out["workload"] = workload(records)
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
    "p90",
    "p_key",
    "rewritten_cost",
    "speedup_histogram",
    "summarize",
    "timing",
    "workload",
]
