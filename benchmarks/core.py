"""Core environment benchmark (issue: core environment), measured side by side in one run.

Writes benchmarks/results/core.json with:
- step overhead: median env.step time in work mode / bare APSW execution of the same candidate
  (index build + query on the main database and every variant), per task and the median ratio;
- determinism: (task, action) in two fresh processes (work mode) and the std of the reward over
  10 repeats in wall mode;
- calibration: fitted alpha (log wall ratio ~ alpha * log work ratio, through the origin) over
  all reference rewrites, Spearman correlation of calibrated work speedup vs wall speedup, and
  the share of rewrites whose reward tier agrees;
- a candidate ~1000x slower than its baseline: step time / baseline time.

Run: .venv/bin/python benchmarks/core.py [--scale medium] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import apsw
import gymnasium as gym
from scipy.stats import spearmanr

import quill_env
from common import bare_seconds
from quill_env import EvalOptions, TaskRunner, WallOptions, get_suite
from quill_env.measure import calibrated, interleaved
from quill_env.policy import parse_action
from quill_env.reward import tier_reward

OUT = Path(__file__).resolve().parent / "results" / "core.json"


def step_overhead(scale: str, repeats: int) -> dict:
    suite = get_suite("shop")
    env = gym.make("Quill-v0", suite="shop", split="all", scale=scale)
    per_task = {}
    for task in suite.tasks:
        runner = env.unwrapped.runner(task)
        _ = runner.baseline
        steps, bares = [], []
        for _ in range(repeats):
            # interleave so machine noise hits both the same way
            env.reset(options={"task_id": task.id})
            start = time.perf_counter()
            env.step(task.reference)
            steps.append(time.perf_counter() - start)
            bares.append(bare_seconds(runner, task.reference))
        per_task[task.id] = {
            "step_s": statistics.median(steps),
            "bare_s": statistics.median(bares),
            "ratio": statistics.median(steps) / statistics.median(bares),
        }
    env.close()
    ratios = [v["ratio"] for v in per_task.values()]
    total_step = sum(v["step_s"] for v in per_task.values())
    total_bare = sum(v["bare_s"] for v in per_task.values())
    return {
        "median_ratio": statistics.median(ratios),
        "aggregate_ratio": total_step / total_bare,
        "target": 1.3,
        "per_task": per_task,
    }


def determinism(scale: str) -> dict:
    suite = get_suite("shop")
    task = suite.task("shop/spend_per_kiwi_user")
    code = (
        "import json, gymnasium as gym, quill_env;"
        f"env = gym.make('Quill-v0', suite='shop', split='all', scale={scale!r});"
        f"env.reset(options={{'task_id': {task.id!r}}});"
        f"_, r, _, _, info = env.step({task.reference!r});"
        "print(json.dumps([r, info['speedup'], info['speedup_raw'], info['candidate_cost']]))"
    )
    outs = [
        json.loads(
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        )
        for _ in range(2)
    ]
    runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(cost="wall"))
    rewards = [runner.evaluate(task.reference).reward for _ in range(10)]
    return {
        "task": task.id,
        "work_process_a": outs[0],
        "work_process_b": outs[1],
        "work_identical": outs[0] == outs[1],
        "wall_rewards": rewards,
        "wall_reward_std": statistics.pstdev(rewards),
        "wall_target_std": 0.02,
    }


def _wall_points(scale: str) -> list[dict]:
    suite = get_suite("shop")
    points = []
    for task in suite.tasks:
        runner = TaskRunner.from_suite(suite, task, scale)
        work = runner.evaluate(task.reference)
        act = parse_action(task.reference, runner.schema_view)
        clone = TaskRunner.from_suite(suite, task, scale).backend
        with clone.scratch_indexes(act.indexes):
            wall = interleaved(
                lambda runner=runner, q=task.query: runner.backend.execute(q).seconds,
                lambda clone=clone, act=act: clone.execute(act.query_sql).seconds,
                WallOptions(min_pairs=5, max_pairs=15, time_budget=3.0),
            )
        points.append(
            {
                "task": task.id,
                "scale": scale,
                "baseline_work": work.baseline_cost,
                "candidate_work": work.candidate_cost,
                "rows": len(runner.baseline.main.rows),
                "work_ratio": work.speedup_raw,
                "wall_ratio": wall.speedup,
            }
        )
    return points


def _fit(points: list[dict]) -> tuple[float, float, float, float]:
    """Least squares of log wall ratio on log calibrated ratio over a grid of fixed costs."""
    best = None
    ys = [math.log(p["wall_ratio"]) for p in points]
    for s0 in [0.0, *[10 ** (k / 4) for k in range(8, 25)]]:
        for per_row in (0.0, 0.5, 1, 2, 5, 10, 20, 50, 100):
            xs = [
                math.log(
                    (p["baseline_work"] + s0 + per_row * p["rows"])
                    / (p["candidate_work"] + s0 + per_row * p["rows"])
                )
                for p in points
            ]
            alpha = sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
            sse = sum((y - alpha * x) ** 2 for x, y in zip(xs, ys))
            if best is None or sse < best[0]:
                best = (sse, alpha, s0, per_row)
    return best


def calibration(scales: list[str]) -> dict:
    points = [p for scale in scales for p in _wall_points(scale)]
    sse, alpha, s0, per_row = _fit(points)
    backend = quill_env.backends.SQLiteBackend
    for p in points:
        p["calibrated_fit"] = calibrated(
            p["baseline_work"],
            p["candidate_work"],
            p["rows"],
            alpha=alpha,
            statement_work=s0,
            row_work=per_row,
        )
        p["calibrated_backend"] = calibrated(
            p["baseline_work"],
            p["candidate_work"],
            p["rows"],
            alpha=backend.calibration_alpha,
            statement_work=backend.calibration_statement_work,
            row_work=backend.calibration_row_work,
        )
        p["tier_wall"] = tier_reward(p["wall_ratio"])

    def summary(key: str) -> dict:
        rho = spearmanr([p[key] for p in points], [p["wall_ratio"] for p in points]).statistic
        agree = [abs(tier_reward(p[key]) - p["tier_wall"]) <= 0.1 for p in points]
        return {"spearman": rho, "tier_agreement": sum(agree) / len(agree)}

    raw_rho = spearmanr([p["work_ratio"] for p in points], [p["wall_ratio"] for p in points]).statistic
    return {
        "scales": scales,
        "fitted": {"alpha": alpha, "statement_work": s0, "row_work": per_row, "sse": sse},
        "in_backend": {
            "alpha": backend.calibration_alpha,
            "statement_work": backend.calibration_statement_work,
            "row_work": backend.calibration_row_work,
        },
        "with_fitted": summary("calibrated_fit"),
        "with_backend": summary("calibrated_backend"),
        "spearman_raw_work_ratio": raw_rho,
        "spearman_target": 0.9,
        "tier_agreement_rule": "calibrated-work tier reward within 0.1 of the wall-clock tier reward",
        "tier_agreement_target": 0.85,
        "points": points,
    }


def slow_candidate(scale: str) -> dict:
    suite = get_suite("shop")
    task = suite.task("shop/coupon_lookup")
    env = gym.make("Quill-v0", suite="shop", split="all", scale=scale)
    env.reset(options={"task_id": task.id})
    runner = env.unwrapped.runner(task)
    # a correlated scan of orders x 20 users per matching row: about 1000x the baseline's wall time
    bomb = (
        "SELECT id, user_id, total FROM orders o WHERE coupon_code = 'SAVE-amber' "
        "AND (SELECT COUNT(*) FROM orders o2, users u2 WHERE o2.total >= 0 * o.total AND u2.id <= 20) > 0"
    )
    base = statistics.median(runner.backend.execute(task.query).seconds for _ in range(5))
    times, verdicts = [], []
    for _ in range(3):
        env.reset(options={"task_id": task.id})
        start = time.perf_counter()
        _, _, _, _, info = env.step(bomb)
        times.append(time.perf_counter() - start)
        verdicts.append(info["verdict"])
    unbounded = runner.backend.execute(bomb).seconds
    env.close()
    return {
        "task": task.id,
        "baseline_s": base,
        "candidate_unbounded_s": unbounded,
        "slowdown_unbounded": unbounded / base,
        "step_s": statistics.median(times),
        "step_over_baseline": statistics.median(times) / base,
        "verdicts": verdicts,
        "target": 3.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    started = time.time()
    result = {
        "quill_version": quill_env.__version__,
        "engine": f"SQLite {apsw.sqlite_lib_version()}",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
        },
        "scale": args.scale,
        "step_overhead": step_overhead(args.scale, args.repeats),
        "determinism": determinism(args.scale),
        "calibration": calibration([args.scale]),
        "slow_candidate": slow_candidate(args.scale),
    }
    result["seconds"] = time.time() - started
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    so, de, ca, sc = (result[k] for k in ("step_overhead", "determinism", "calibration", "slow_candidate"))
    print(
        f"step overhead: median ratio {so['median_ratio']:.2f} (aggregate {so['aggregate_ratio']:.2f}, target <= 1.3)"
    )
    print(
        f"determinism: work identical across processes = {de['work_identical']}; wall reward std {de['wall_reward_std']:.4f} (target <= 0.02)"
    )
    fit, wb = ca["fitted"], ca["with_backend"]
    print(
        f"calibration: fitted alpha {fit['alpha']:.3f}, statement_work {fit['statement_work']:.0f}, row_work {fit['row_work']}; "
        f"with the backend's constants: spearman {wb['spearman']:.3f} (>= 0.9), tier agreement {wb['tier_agreement']:.0%} (>= 85%); "
        f"raw work ratio spearman {ca['spearman_raw_work_ratio']:.3f}"
    )
    print(
        f"1000x-slower candidate: slowdown {sc['slowdown_unbounded']:.0f}x unbounded; step/baseline {sc['step_over_baseline']:.2f} (<= 3); {sc['verdicts']}"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
