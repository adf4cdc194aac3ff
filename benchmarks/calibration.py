"""Calibration of the work-mode cost against wall time, over every shipped reference.

For every task of every suite at one scale, this measures side by side, in one run:

- the engine counters of the slow query and of its reference rewrite on the main database
  (VM steps, b-tree pages fetched, rows and values returned, sorts, ...), which is what
  ``work`` mode sees;
- their wall-clock times with bare APSW (no sandbox, no budget), interleaved A B A B with the
  rewrite's indexes built on a private copy, as the truth ``work`` mode must track.

The points go to ``benchmarks/results/calibration_points.jsonl`` (one task per line, so an
interrupted run resumes where it stopped). :func:`fit` then fits the constants of
:func:`quill_env.measure.calibrated` and the page weight of the backend, and :func:`report`
gives Spearman's rho and the tier agreement (exact and within one tier) of the calibrated work
speedup against the wall speedup, overall and per pattern family. ``benchmarks/core.py`` prints
and stores the report.

Run: .venv/bin/python benchmarks/calibration.py [--scale medium] [--suites shop,hr] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import apsw
import numpy as np
from scipy.optimize import least_squares
from scipy.stats import spearmanr

from quill_env import EvalOptions, TaskRunner, WallOptions, get_suite, list_suites
from quill_env.action_policy import SchemaView, parse_action
from quill_env.backends.base import Budget
from quill_env.backends.sqlite import SQLiteBackend, loop_shares
from quill_env.measure import calibrated, interleaved
from quill_env.reward import DEFAULT_TIERS
from quill_env.runners import shared_backend

RESULTS = Path(__file__).resolve().parent / "results"
POINTS = RESULTS / "calibration_points.jsonl"
WALL = WallOptions(warmup=1, min_pairs=5, max_pairs=21, time_budget=3.0, target_halfwidth=0.04)


def tier_index(speedup: float) -> int:
    """The reward tier a speedup falls in: 0 below 1.5x, then one per anchor of the tier table."""
    anchors = [s for s, _ in DEFAULT_TIERS[1:]]
    return sum(speedup >= a for a in anchors)


def _bare(conn: apsw.Connection, sql: str) -> float:
    start = time.perf_counter()
    rows = conn.execute(sql).fetchall()
    seconds = time.perf_counter() - start
    del rows
    return seconds


def measure_task(suite_name: str, task_id: str, scale: str) -> dict:
    """Counters and interleaved bare wall times of one task's original and reference."""
    suite = get_suite(suite_name)
    task = suite.task(task_id)
    runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(num_variants=0, num_twins=0))
    base = runner.baseline.main
    act = runner.parse_action(task.reference)
    backend = runner.backend
    with backend.scratch_indexes(act.indexes):
        cand = backend.execute(act.query_sql, Budget(max_seconds=600))
    clone = SQLiteBackend.from_bytes(backend.serialize())
    clone_conn = clone.connection
    clone_conn.execute("SAVEPOINT calib")
    for i, spec in enumerate(act.indexes):
        clone_conn.execute(spec.to_sql(f"calib_{i}"))
    main_conn = backend.connection
    wall = interleaved(lambda: _bare(main_conn, task.query), lambda: _bare(clone_conn, act.query_sql), WALL)
    clone.close()
    runner.close()
    return {
        "task": task.id,
        "suite": suite_name,
        "patterns": list(task.patterns),
        "scale": scale,
        "rows": len(base.rows),
        "base": base.counters,
        "cand": cand.counters,
        "cand_ok": cand.ok,
        "wall_ratio": wall.speedup,
        "wall_lower": wall.lower,
        "wall_upper": wall.upper,
        "wall_pairs": wall.pairs,
        "base_seconds": wall.baseline_seconds,
        "cand_seconds": wall.candidate_seconds,
    }


def collect(scale: str, suites: list[str], fresh: bool = False) -> list[dict]:
    """Measure every task (resuming from the points file unless ``fresh``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if fresh and POINTS.exists():
        POINTS.unlink()
    done = {}
    if POINTS.exists():
        for line in POINTS.read_text().splitlines():
            if line.strip():
                point = json.loads(line)
                if point["scale"] == scale:
                    done[point["task"]] = point
    if fill_loop_opcodes(list(done.values())):
        POINTS.write_text("".join(json.dumps(p) + "\n" for p in done.values()))
    todo = [(s, t.id) for s in suites for t in get_suite(s).tasks if t.id not in done and t.reference]
    started = time.perf_counter()
    with POINTS.open("a") as out:
        for n, (suite_name, task_id) in enumerate(todo, 1):
            point = measure_task(suite_name, task_id, scale)
            done[task_id] = point
            out.write(json.dumps(point) + "\n")
            out.flush()
            if n % 25 == 0 or n == len(todo):
                rate = (time.perf_counter() - started) / n
                print(f"  {n}/{len(todo)} measured ({rate:.1f} s per task)", file=sys.stderr, flush=True)
    wanted = {t.id for s in suites for t in get_suite(s).tasks}
    return [p for p in done.values() if p["task"] in wanted]


def fill_loop_opcodes(points: list[dict]) -> int:
    """Add the ``loop_opcodes`` counter to points measured before the backend reported it.

    It depends only on the compiled programs (``EXPLAIN`` under the reference's indexes), so no
    timing is repeated. Returns how many points were filled.
    """
    filled = 0
    for point in points:
        if "loop_opcodes" in point["base"] and "loop_opcodes" in point["cand"]:
            continue
        suite = get_suite(point["suite"])
        if point["task"] not in {t.id for t in suite.tasks}:
            continue  # a reference dropped from the suite (see scripts/retime_references.py)
        task = suite.task(point["task"])
        backend = shared_backend(str(suite.database(point["scale"])))
        view = SchemaView({k: [c.name.lower() for c in t.columns] for k, t in backend.tables().items()})
        act = parse_action(task.reference, view, rules=backend.sandbox_rules, dialect=backend.dialect)
        point["base"]["loop_opcodes"] = backend.loop_opcodes(task.query)
        with backend.scratch_indexes(act.indexes):
            point["cand"]["loop_opcodes"] = backend.loop_opcodes(act.query_sql)
        filled += 1
    return filled


# --- the model -----------------------------------------------------------------------------

CONSTANTS = ("statement_work", "page_work", "function_work", "column_work", "value_work")


def work(counters: dict, constants: dict, reference: dict | None = None) -> float:
    """The backend's work formula (see ``SQLiteBackend.work_of``) under the given constants.

    ``reference`` is the original's counters: a rewrite's shares are capped as the backend caps
    a candidate's (:func:`quill_env.backends.sqlite.loop_shares`).
    """
    functions, columns = loop_shares(counters, reference)
    return (
        counters.get("vm_step", 0)
        * (1 + constants["function_work"] * functions + constants["column_work"] * columns)
        + constants["page_work"] * counters.get("pages", 0)
        + constants["value_work"] * counters.get("values", 0)
    )


def predicted(point: dict, constants: dict) -> float:
    """The calibrated work speedup of one point under the given constants."""
    return calibrated(
        work(point["base"], constants),
        work(point["cand"], constants, reference=point["base"]),
        alpha=constants["alpha"],
        statement_work=constants["statement_work"],
    )


def fit(points: list[dict]) -> dict:
    """Least squares of the log wall ratio on the calibrated log work ratio (positive constants).

    Only references that are truly faster (conservative wall bound >= 1.5x) are fitted: the
    others are dropped from the suites.
    """
    fitted = [p for p in points if p["wall_lower"] >= 1.5 and p["cand_ok"]]
    ys = np.log([p["wall_ratio"] for p in fitted])

    def residuals(v: np.ndarray) -> np.ndarray:
        constants = dict(zip(CONSTANTS, np.exp(v[:-1])), alpha=v[-1])
        return np.log([predicted(p, constants) for p in fitted]) - ys

    start = np.concatenate([np.log([300.0, 8.0, 50.0, 2.0, 5.0]), [0.9]])
    solution = least_squares(residuals, start)
    constants = dict(zip(CONSTANTS, (float(x) for x in np.exp(solution.x[:-1]))), alpha=float(solution.x[-1]))
    constants["sse"] = float(np.sum(solution.fun**2))
    constants["fitted_on"] = len(fitted)
    return constants


def report(points: list[dict], constants: dict) -> dict:
    """Spearman and tier agreement of the calibrated work speedup against wall, overall and per family."""
    for p in points:
        p["work_speedup"] = predicted(p, constants)
        p["tier_work"] = tier_index(p["work_speedup"])
        p["tier_wall"] = tier_index(p["wall_ratio"])

    def summary(group: list[dict]) -> dict:
        if not group:
            return {}
        diffs = [p["tier_work"] - p["tier_wall"] for p in group]
        rho = (
            spearmanr([p["work_speedup"] for p in group], [p["wall_ratio"] for p in group]).statistic
            if len(group) > 2
            else float("nan")
        )
        ratio = [p["work_speedup"] / p["wall_ratio"] for p in group]
        return {
            "n": len(group),
            "spearman": rho,
            "tier_exact": sum(d == 0 for d in diffs) / len(group),
            "tier_within_one": sum(abs(d) <= 1 for d in diffs) / len(group),
            "work_above_wall_tier": sum(d > 0 for d in diffs) / len(group),
            "work_below_wall_tier": sum(d < 0 for d in diffs) / len(group),
            "median_work_over_wall": statistics.median(ratio),
            "wall_below_1_5x": sum(p["wall_ratio"] < 1.5 for p in group),
        }

    families: dict[str, list[dict]] = defaultdict(list)
    for p in points:
        families[p["patterns"][0] if p["patterns"] else "none"].append(p)
    return {
        "constants": constants,
        "overall": summary(points),
        "per_family": {k: summary(v) for k, v in sorted(families.items())},
        "targets": {"spearman": 0.95, "tier_exact": 0.80, "tier_within_one": 0.97},
    }


def backend_constants() -> dict:
    """The constants the SQLite backend ships with."""
    b = SQLiteBackend
    return {
        "statement_work": b.calibration_statement_work,
        "page_work": b.page_work,
        "function_work": b.function_work,
        "column_work": b.column_work,
        "value_work": b.value_work,
        "alpha": b.calibration_alpha,
    }


def run(scale: str, suites: list[str], fresh: bool = False) -> dict:
    """Collect (or resume), fit, and report with both the fitted and the shipped constants."""
    points = collect(scale, suites, fresh)
    kept = [p for p in points if p["wall_lower"] >= 1.5 and p["cand_ok"]]
    result = {
        "scale": scale,
        "references": len(points),
        "truly_faster": len(kept),
        "below_1_5x_wall": sorted(p["task"] for p in points if p not in kept),
        "fitted": fit(points),
        "with_backend": report(kept, backend_constants()),
        "with_backend_all_references": report(points, backend_constants())["overall"],
    }
    result["with_fitted"] = report(kept, result["fitted"])["overall"]
    (RESULTS / "calibration.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--suites", default=",".join(list_suites()))
    parser.add_argument("--fresh", action="store_true", help="forget earlier points and measure again")
    args = parser.parse_args()
    result = run(args.scale, args.suites.split(","), args.fresh)
    o = result["with_backend"]["overall"]
    print(
        f"{result['references']} references at {args.scale}, {result['truly_faster']} truly faster; "
        f"fitted {result['fitted']}; with the backend's constants: spearman {o['spearman']:.3f} (>= 0.95), "
        f"tier exact {o['tier_exact']:.0%} (>= 80%), within one {o['tier_within_one']:.0%} (>= 97%)"
    )


if __name__ == "__main__":
    main()
