"""Every shipped task on one engine, side by side in one run (issue: one architecture for every engine).

For each task of each suite (or every ``--every``-th), on ``--engine`` at ``--scale``, through
the Backend interface only (nothing here knows an engine):

- the reference scored as a policy's action (work mode, every variant and twin): verdict, tier,
  whether every variant matched, and the step's wall time;
- the identity (the original itself) scored: it must be ``unchanged``;
- the work of the original and of the reference on the main database, and their bare wall times
  (the harness's own unsandboxed path, the reference on a private clone holding its indexes),
  interleaved A B A B: the truth the work counter must track;
- per pattern: how many references pay (improved, at or above the acceptance tier), which is
  what the engine's planner leaves to a rewrite.

Then it fits the three calibration constants of :func:`quill_env.measure.calibrated` (alpha,
statement work, row work) of the log wall ratio on the log work ratio over every measured pair,
and reports Spearman's rho and the tier agreement with the fitted and with the backend's shipped
constants; and it scores a few (task, reference) pairs in two fresh processes: the work must be
identical.

Writes ``benchmarks/results/engines-<engine>.json`` (points in ``engines-<engine>-points.jsonl``,
one task per line, so an interrupted run resumes).

Run: .venv/bin/python benchmarks/engines.py --engine duckdb [--scale small] [--every 1] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import spearmanr

import quill_env
from common import json_in_fresh_processes, shipped_calibration
from quill_env import EvalOptions, TaskRunner, Verdict, WallOptions, get_suite, list_suites
from quill_env.backends import get_backend
from quill_env.backends.base import Budget
from quill_env.measure import calibrated, interleaved
from quill_env.reward import DEFAULT_TIERS, RewardConfig

RESULTS = Path(__file__).resolve().parent / "results"
WALL = WallOptions(warmup=1, min_pairs=5, max_pairs=15, time_budget=2.0, target_halfwidth=0.05)
ACCEPTANCE = RewardConfig().acceptance


def tier_index(speedup: float) -> int:
    """The reward tier a speedup falls in: 0 below the first anchor, then one per anchor."""
    return sum(speedup >= s for s, _ in DEFAULT_TIERS[1:])


def _timed(backend, sql: str) -> float:
    start = time.perf_counter()
    backend.query(sql)
    return time.perf_counter() - start


def measure_task(suite_name: str, task_id: str, scale: str, engine: str) -> dict:
    """One task: the reference and the identity scored, and the bare interleaved wall ratio."""
    suite = get_suite(suite_name)
    task = suite.task(task_id)
    runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(), engine=engine)
    try:
        reference = runner.task.reference  # ported to the engine's dialect
        _ = runner.baseline
        start = time.perf_counter()
        scored = runner.evaluate(reference)
        step_s = time.perf_counter() - start
        identity = runner.evaluate(runner.task.query)
        backend = runner.backend
        base = runner.baseline.main
        act = runner.parse_action(reference)
        with backend.scratch_indexes(act.indexes):
            cand = backend.execute(act.query_sql, Budget(max_seconds=600))
        cand_work = backend.work_of(cand.counters, reference=base.counters)
        clone = backend.clone()
        try:
            for i, spec in enumerate(act.indexes):
                clone.query(spec.to_sql(f"calib_{i}", backend.dialect))
            bare_s = _timed(clone, act.query_sql)
            wall = interleaved(
                lambda: _timed(backend, runner.task.query), lambda: _timed(clone, act.query_sql), WALL
            )
        finally:
            clone.close()
    finally:
        runner.close()
    return {
        "task": task.id,
        "suite": suite_name,
        "patterns": list(task.patterns),
        "verdict": scored.verdict.value,
        "tier": scored.reward_terms.get("tier", 0.0),
        "reward": scored.reward,
        "speedup": scored.speedup,
        "variants_match": all(v.status == "match" for v in scored.variants),
        "n_variants": len(scored.variants),
        "identity": identity.verdict.value,
        "step_s": step_s,
        "bare_candidate_s": bare_s,
        "rows": len(base.rows),
        "base_work": base.work,
        "cand_work": cand_work,
        "cand_ok": cand.ok,
        "wall_ratio": wall.speedup,
        "wall_lower": wall.lower,
        "wall_upper": wall.upper,
        "wall_pairs": wall.pairs,
    }


def collect(engine: str, scale: str, every: int, fresh: bool, points_file: Path) -> list[dict]:
    """Measure the tasks, resuming from ``points_file`` unless ``fresh``."""
    done: dict[str, dict] = {}
    if points_file.exists() and not fresh:
        for line in points_file.read_text().splitlines():
            point = json.loads(line)
            done[point["task"]] = point
    elif points_file.exists():
        points_file.unlink()
    todo = [(s, t.id) for s in list_suites() for t in get_suite(s).tasks][::every]
    started = time.time()
    with points_file.open("a") as out:
        for n, (suite_name, task_id) in enumerate(todo, 1):
            if task_id in done:
                continue
            try:
                point = measure_task(suite_name, task_id, scale, engine)
            except Exception as err:  # a task that cannot be measured is a finding, not a crash
                point = {"task": task_id, "suite": suite_name, "error": f"{type(err).__name__}: {err}"}
            done[task_id] = point
            out.write(json.dumps(point) + "\n")
            out.flush()
            elapsed = time.time() - started
            print(
                f"[{n}/{len(todo)}] {task_id}: {point.get('verdict', point.get('error'))} ({elapsed:.0f} s)",
                file=sys.stderr,
            )
    return [done[t] for _, t in todo if t in done]


CONSTANTS = ("statement_work", "row_work")


def _predicted(p: dict, c: dict) -> float:
    return calibrated(
        p["base_work"],
        p["cand_work"],
        p["rows"],
        alpha=c["alpha"],
        statement_work=c["statement_work"],
        row_work=c["row_work"],
    )


def fit(points: list[dict]) -> dict:
    """Least squares of the log wall ratio on the calibrated log work ratio (positive constants)."""
    ys = np.log([p["wall_ratio"] for p in points])

    def constants_of(v: np.ndarray) -> dict:
        return dict(zip(CONSTANTS, (float(x) for x in np.exp(v[:-1]))), alpha=float(v[-1]))

    def residuals(v: np.ndarray) -> np.ndarray:
        return np.log([max(_predicted(p, constants_of(v)), 1e-9) for p in points]) - ys

    solution = least_squares(residuals, np.array([np.log(100.0), np.log(1.0), 0.8]))
    constants = constants_of(solution.x)
    constants["sse"] = float(np.sum(solution.fun**2))
    constants["fitted_on"] = len(points)
    return constants


def agreement(points: list[dict], constants: dict) -> dict:
    """Spearman and tier agreement of the calibrated work speedup against the wall ratio."""
    work = [_predicted(p, constants) for p in points]
    wall = [p["wall_ratio"] for p in points]
    diffs = [tier_index(w) - tier_index(t) for w, t in zip(work, wall)]
    return {
        "n": len(points),
        "spearman": float(spearmanr(work, wall).statistic) if len(points) > 2 else float("nan"),
        "tier_exact": sum(d == 0 for d in diffs) / len(points),
        "tier_within_one": sum(abs(d) <= 1 for d in diffs) / len(points),
        "work_above_wall_tier": sum(d > 0 for d in diffs) / len(points),
    }


def determinism(engine: str, scale: str, pairs: list[tuple[str, str]]) -> dict:
    """The same (task, reference) pairs scored in two fresh processes: work and reward must agree."""
    code = f"""
import json, sys
from quill_env import TaskRunner, get_suite
out = []
for suite_name, task_id in json.loads(sys.argv[1]):
    suite = get_suite(suite_name)
    runner = TaskRunner.from_suite(suite, suite.task(task_id), {scale!r}, engine={engine!r})
    r = runner.evaluate(runner.task.reference)
    out.append([task_id, r.candidate_cost, r.baseline_cost, r.reward, r.verdict.value])
    runner.close()
print(json.dumps(out))
"""
    runs = json_in_fresh_processes(code, pairs)
    return {"pairs": pairs, "process_a": runs[0], "process_b": runs[1], "identical": runs[0] == runs[1]}


def per_pattern(points: list[dict]) -> dict:
    """Per first pattern: references that pay (improved at or above acceptance), no gain, and other."""
    out: dict[str, Counter] = defaultdict(Counter)
    for p in points:
        family = p["patterns"][0] if p["patterns"] else "none"
        pays = p["verdict"] == Verdict.IMPROVED.value and p["tier"] >= ACCEPTANCE
        out[family]["pays" if pays else p["verdict"]] += 1
    return {k: dict(v) for k, v in sorted(out.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="duckdb")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--every", type=int, default=1, help="measure every n-th task (1: all)")
    parser.add_argument("--fresh", action="store_true", help="discard the points of an earlier run")
    args = parser.parse_args()
    engine = get_backend(args.engine).name
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    points_file = RESULTS / f"engines-{engine}-points.jsonl"
    points = collect(engine, args.scale, args.every, args.fresh, points_file)
    measured = [p for p in points if "error" not in p]
    timed = [p for p in measured if p["cand_ok"] and p["wall_ratio"] > 0]
    backend = get_backend(engine)
    shipped = shipped_calibration(backend)
    fitted = fit(timed)
    paying = [p for p in measured if p["verdict"] == "improved"][:3]
    result = {
        "quill_version": quill_env.__version__,
        "engine": engine,
        "engine_version": backend.empty().engine_version(),
        "scale": args.scale,
        "tasks": len(points),
        "errors": [p for p in points if "error" in p],
        "verdicts": dict(Counter(p["verdict"] for p in measured)),
        "all_correct": all(Verdict(p["verdict"]).correct for p in measured),
        "all_variants_match": all(p["variants_match"] for p in measured),
        "identity_unchanged": all(p["identity"] == "unchanged" for p in measured),
        "per_pattern": per_pattern(measured),
        "step_s_median": statistics.median(p["step_s"] for p in measured),
        "step_over_bare_candidate_median": statistics.median(
            p["step_s"] / max(p["bare_candidate_s"], 1e-6) for p in measured
        ),
        "calibration": {
            "fitted": fitted,
            "with_fitted": agreement(timed, fitted),
            "with_shipped": agreement(timed, shipped),
            "shipped": shipped,
        },
        "determinism": determinism(engine, args.scale, [(p["suite"], p["task"]) for p in paying]),
    }
    result["seconds"] = time.time() - started
    out = RESULTS / f"engines-{engine}.json"
    out.write_text(json.dumps(result, indent=2))
    cal = result["calibration"]
    print(
        f"{engine} ({result['engine_version']}), {result['tasks']} tasks at {args.scale}: {result['verdicts']}"
    )
    print(
        f"all correct {result['all_correct']}, every variant matched {result['all_variants_match']}, "
        f"identity unchanged {result['identity_unchanged']}, errors {len(result['errors'])}"
    )
    for family, counts in result["per_pattern"].items():
        print(f"  {family:24s} {counts}")
    print(
        f"step {result['step_s_median']:.2f} s median, {result['step_over_bare_candidate_median']:.0f}x one bare run "
        "of the candidate (the step also runs it on every variant and twin, and verifies)"
    )
    for name in ("with_shipped", "with_fitted"):
        a = cal[name]
        print(
            f"calibration {name}: spearman {a['spearman']:.3f}, tier exact {a['tier_exact']:.0%}, "
            f"within one {a['tier_within_one']:.0%} over {a['n']} pairs"
        )
    f = cal["fitted"]
    print(
        f"fitted: alpha {f['alpha']:.3f}, statement_work {f['statement_work']:.0f}, row_work {f['row_work']:.2f}"
    )
    print(f"determinism: identical across two processes = {result['determinism']['identical']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
