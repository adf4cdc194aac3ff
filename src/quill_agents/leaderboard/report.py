"""Writing a run (JSON, plots, submissions) and regenerating ``benchmarks/LEADERBOARD.md``.

The Markdown is a pure function of the results JSON files, so regenerating it from the same
directory always gives the same text.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quill_agents.leaderboard.bench import FORMAT, BenchResult
from quill_agents.leaderboard.fingerprint import comparable_key
from quill_agents.leaderboard.metrics import FAST_P, p_key
from quill_agents.leaderboard.plots import plot_fast_p, plot_speedup_histogram
from quill_agents.leaderboard.submission import write_submission

DEFAULT_RESULTS = Path("benchmarks") / "results" / "leaderboard"
"""Where ``quill bench`` writes results (relative to the working directory)."""
DEFAULT_LEADERBOARD = Path("benchmarks") / "LEADERBOARD.md"
"""The generated leaderboard page."""


def slug(text: str) -> str:
    """A file-name-safe form of a label.

    >>> slug("teacher:qwen2.5/coder 7b")
    'teacher-qwen2.5-coder-7b'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "agent"


def save_run(
    result: BenchResult, out_dir: str | os.PathLike[str], *, plots: bool = True, submissions: bool = True
) -> dict[str, Path]:
    """Write a run: ``<run>.json``, and under ``<run>/`` the plots and one submission per agent.

    Returns:
        The paths written, by role (``json``, ``fast_p``, ``speedups``, ``submission:<agent>``).
    """
    out_dir = Path(out_dir)
    run_dir = out_dir / result.run
    paths: dict[str, Path] = {}
    fp = result.fingerprint
    if submissions:
        for agent in result.agents:
            if agent.source == "agent":
                meta = {"agent": agent.label, "scale": fp["scale"], "cost": fp["cost_mode"]}
                path = write_submission(
                    run_dir / f"{slug(agent.label)}.submission.jsonl", agent.records, meta
                )
                agent.submission = os.path.relpath(path, out_dir)
                paths[f"submission:{agent.label}"] = path
    data = result.to_dict()
    if plots:
        suites = ", ".join(s["name"] for s in fp["suites"])
        title = f"{suites} / {fp['split']} / {fp['scale']} / {fp['cost_mode']}"
        paths["fast_p"] = plot_fast_p(data["agents"], run_dir / "fast_p.png", f"fast_p: {title}")
        paths["speedups"] = plot_speedup_histogram(
            data["agents"], run_dir / "speedups.png", f"speedups: {title}"
        )
        data["plots"] = {k: os.path.relpath(paths[k], out_dir) for k in ("fast_p", "speedups")}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["json"] = out_dir / f"{result.run}.json"
    paths["json"].write_text(json.dumps(data, indent=1) + "\n")
    return paths


def load_results(results_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every results JSON in a directory (other JSON files are skipped), oldest first."""
    out = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("format") == FORMAT:
            data["_path"] = str(path)
            out.append(data)
    return sorted(out, key=lambda d: (d.get("created", ""), d.get("run", "")))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _speed(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{1000 * x:.1f} ms"


def _group_title(fp: Mapping[str, Any]) -> str:
    suites = ", ".join(f"{s['name']} v{s['version']}" for s in fp.get("suites", []))
    return (
        f"{suites} — split `{fp.get('split')}`, scale `{fp.get('scale')}`, cost `{fp.get('cost_mode')}`, "
        f"engine `{fp.get('engine')}`"
    )


def _latest_entries(runs: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    latest: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for run in runs:  # oldest first, so later runs replace earlier ones
        for agent in run["agents"]:
            latest[agent["agent"]] = (run, agent)
    return sorted(latest.values(), key=lambda ra: (-ra[1]["summary"]["mean_reward"], ra[1]["agent"]))


def _table(entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[str]:
    fast = [f"fast_{p_key(p)}" for p in FAST_P]
    head = ["#", "agent", "correct", "mean reward", "improved", "geomean speedup", *fast]
    head += ["mean cost", "p90 cost", "time/step", "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, (run, agent) in enumerate(entries, 1):
        s = agent["summary"]
        cells = [
            str(rank),
            f"`{agent['agent']}`" + (" (submission)" if agent["source"] == "submission" else ""),
            _pct(s["correct"]),
            f"{s['mean_reward']:+.3f}",
            _pct(s["improved"]),
            _speed(s["geomean_speedup"]),
            *[_pct(s["fast_p"].get(p_key(p))) for p in FAST_P],
            _pct(s.get("workload", {}).get("mean_ratio")),
            _pct(s.get("workload", {}).get("p90_ratio")),
            _ms(s["timing"]["step_mean_s"]),
            f"`{run['run']}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _patterns(entries: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> list[str]:
    patterns = sorted({p for _, a in entries for p in a["summary"]["by_pattern"]})
    if not patterns:
        return []
    names = [a["agent"] for _, a in entries]
    lines = [
        "| pattern | tasks | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|" + "---|" * (len(names) + 2),
    ]
    for p in patterns:
        cells = []
        tasks = "-"
        for _, a in entries:
            row = a["summary"]["by_pattern"].get(p)
            tasks = str(row["tasks"]) if row else tasks
            cells.append("-" if row is None else f"{row['mean_reward']:+.2f} / {_pct(row['improved'])}")
        lines.append(f"| {p} | {tasks} | " + " | ".join(cells) + " |")
    return lines


def render_leaderboard(
    runs: Sequence[Mapping[str, Any]], link_base: str | os.PathLike[str] | None = None
) -> str:
    """The leaderboard Markdown of some runs: one table per comparable setting.

    Within a setting (suites and their hashes, engine, cost mode, scale, split) each agent's
    latest run is shown, ranked by mean reward. Entries that do not re-validate are listed apart.

    Args:
        runs: results JSON objects (from :func:`load_results`).
        link_base: the directory the page's links are relative to (default: no links).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[comparable_key(run["fingerprint"])].append(run)
    out = [
        "# Quill leaderboard",
        "",
        "Generated by `quill bench` from the results JSON files; do not edit by hand "
        "(regenerate with `quill bench --regenerate`).",
        "",
        "Columns: *correct* — share of tasks whose rewrite returns the same results (main and variant "
        "databases); *mean reward* — the environment's reward; *improved* — share with reward > 0; "
        "*geomean speedup* — over correct rewrites; *fast_p* — share of tasks both correct and at least "
        "p times faster (fast_2 is the papers' share faster by at least 2x); *mean cost* and *p90 cost* — "
        "mean and 90th-percentile cost of the rewritten workload as a share of the original's, the papers' "
        "latency metrics (timeouts counted at the cap, other failures at the original's cost; seconds in "
        "wall mode, the work counter in work mode); *time/step* — mean scoring time. An entry is accepted "
        "only when it re-validates (`quill validate`).",
    ]
    if not runs:
        out += ["", "No results yet: run `quill bench`."]
    for key in sorted(groups, key=lambda k: repr(k)):
        grp = groups[key]
        fp = grp[-1]["fingerprint"]
        entries = _latest_entries(grp)
        accepted = [e for e in entries if e[1].get("validated", True)]
        rejected = [e for e in entries if not e[1].get("validated", True)]
        out += ["", f"## {_group_title(fp)}", ""]
        out += _table(accepted) if accepted else ["No accepted entry."]
        if rejected:
            out += ["", "Not accepted (claims did not re-validate):", ""]
            for run, agent in rejected:
                kinds = sorted({i["kind"] for i in agent.get("issues", [])})
                source = f", file `{Path(agent['submission']).name}`" if agent.get("submission") else ""
                n_issues = len(agent.get("issues", []))
                what = f"{n_issues} issues ({', '.join(kinds)})"
                out.append(f"- `{agent['agent']}` (run `{run['run']}`{source}): {what}")
        pattern_lines = _patterns(accepted)
        if pattern_lines:
            out += ["", "Per pattern (mean reward / improved):", "", *pattern_lines]
        latest = grp[-1]
        plots = latest.get("plots", {})
        if plots and link_base is not None and latest.get("_path"):
            base = Path(latest["_path"]).parent
            links = [
                f"[{k}]({Path(os.path.relpath(base / v, link_base)).as_posix()})" for k, v in plots.items()
            ]
            out += ["", f"Plots of run `{latest['run']}`: " + ", ".join(links)]
        machine = fp.get("machine", {})
        suites = "; ".join(f"{s['name']} v{s['version']} `{s['hash']}`" for s in fp.get("suites", []))
        out += [
            "",
            f"Fingerprint (latest run): Quill {fp.get('quill_version')}; suites {suites}; engine "
            f"{fp.get('engine')}; cost `{fp.get('cost_mode')}`; scale `{fp.get('scale')}`; machine: "
            f"{machine.get('cpus')} CPUs, {machine.get('platform')}, Python {machine.get('python')}.",
        ]
    return "\n".join(out) + "\n"


def regenerate_leaderboard(
    results_dir: str | os.PathLike[str] = DEFAULT_RESULTS, out: str | os.PathLike[str] = DEFAULT_LEADERBOARD
) -> Path:
    """Rewrite the leaderboard page from every results JSON in ``results_dir``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_leaderboard(load_results(results_dir), link_base=out.parent))
    return out


__all__ = [
    "DEFAULT_LEADERBOARD",
    "DEFAULT_RESULTS",
    "load_results",
    "regenerate_leaderboard",
    "render_leaderboard",
    "save_run",
    "slug",
]
