"""Leaderboard plots (matplotlib, Agg backend, imported only when a plot is drawn)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quill_agents.leaderboard.metrics import FAST_P, SPEEDUP_BUCKETS, p_key
from quill_env.authoring.taskgen import TARGET_MIX
from quill_env.errors import MissingExtraError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError("matplotlib", "plot") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _speeds(agent: Mapping[str, Any]) -> list[float | None]:
    out = []
    for r in agent["records"]:
        out.append((r["speedup"] or 1.0) if r["correct"] else None)
    return out


def plot_fast_p(agents: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    """fast_p curves of every agent on one chart: share of tasks correct and at least p times faster.

    Args:
        agents: agent entries of a results JSON (``agent`` and ``records``).
        path: the PNG to write.
        title: the chart's title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    grid = [10 ** (k / 40) for k in range(0, 3 * 40 + 21)]  # 1x .. 3162x
    for agent in agents:
        speeds = _speeds(agent)
        n = max(len(speeds), 1)
        ys = [sum(1 for s in speeds if s is not None and s >= p) / n for p in grid]
        (line,) = ax.step(grid, ys, where="post", label=agent["agent"])
        marks = [sum(1 for s in speeds if s is not None and s >= p) / n for p in FAST_P]
        ax.plot(FAST_P, marks, "o", color=line.get_color(), markersize=4)
    ax.set_xscale("log")
    ticks = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0]
    ax.set_xticks(ticks, [f"{p_key(p)}x" for p in ticks])
    ax.minorticks_off()
    ax.set_xlim(1, grid[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("speedup threshold p")
    ax.set_ylabel("fast_p: share of tasks correct and >= p x faster")
    ax.set_title(title or "fast_p", wrap=True, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_speedup_histogram(
    agents: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Share of each agent's improved rewrites per speedup bucket, against the 50/30/20 target.

    Args:
        agents: agent entries of a results JSON.
        path: the PNG to write.
        title: the chart's title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    names = [b[0] for b in SPEEDUP_BUCKETS]
    shown = [a for a in agents if any(s is not None and s >= SPEEDUP_BUCKETS[0][1] for s in _speeds(a))]
    width = 0.8 / (len(shown) + 1)
    for i, agent in enumerate(shown):
        speeds = [s for s in _speeds(agent) if s is not None and s >= SPEEDUP_BUCKETS[0][1]]
        shares = [sum(lo <= s < hi for s in speeds) / len(speeds) for _, lo, hi in SPEEDUP_BUCKETS]
        xs = [k + (i - len(shown) / 2) * width for k in range(len(names))]
        ax.bar(xs, shares, width, label=f"{agent['agent']} (n={len(speeds)})")
    target = [TARGET_MIX.get(n, 0.0) for n in names]
    xs = [k + (len(shown) / 2) * width for k in range(len(names))]
    ax.bar(xs, target, width, fill=False, hatch="//", edgecolor="black", label="target 50/30/20")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of improved rewrites")
    ax.set_xlabel("speedup")
    ax.set_title(title or "speedups of improved rewrites vs the target mix", wrap=True, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["plot_fast_p", "plot_speedup_histogram"]
