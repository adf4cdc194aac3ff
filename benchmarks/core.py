"""Core environment benchmark (issues: core environment, reward integrity), side by side in one run.

On ``--engine`` (SQLite by default; every section goes through the Backend interface, and the
shop suite's SQL, written in the suite dialect, is ported to the engine's). Writes
benchmarks/results/core.json (SQLite) or core-<engine>.json with:
- step overhead: median ``env.step`` time in work mode over bare execution of the same
  candidate through the backend (index build + query on the main database, its twin and every
  variant, nothing else), per task and the median ratio; and the cost of the twin: step time
  with the twin over step time without it (``num_twins=0``), both measured interleaved;
- determinism: (task, action) pairs scored in two fresh processes (work mode) must agree
  exactly; the std of the reward over 10 repeats in wall mode;
- calibration: on SQLite ``benchmarks/calibration.py`` over every shipped reference (fitted
  constants, Spearman, exact and within-one tier agreement with the backend's constants, per
  family); on another engine the calibration of ``benchmarks/engines.py`` (its
  ``engines-<engine>.json``, which this run does not redo);
- padding corpus: candidates that do hidden work (function padding, sorts, non-covering
  index seeks, string builders), each scored in work mode and timed on the clock; the worst
  overpayment (work-mode reward minus the reward its wall speedup earns) must not be positive;
- bombs: heap and time bombs, the wall time of each evaluation against the deadline;
- a candidate ~1000x slower than its baseline: step time / baseline time.

- variant build: the time to create one task's variants (sampling the images, loading them into
  the engine).

Run: .venv/bin/python benchmarks/core.py [--engine sqlite|duckdb|postgres] [--scale medium] [--repeats 5]
     [--skip-calibration] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym

import calibration
import quill_env
from common import bare_seconds, json_in_fresh_processes, shipped_calibration
from quill_env import EvalOptions, TaskRunner, WallOptions, get_suite
from quill_env.backends import Backend, get_backend
from quill_env.dialect import SUITE_DIALECT
from quill_env.measure import interleaved
from quill_env.reward import tier_reward
from quill_env.runners import variants_for
from quill_env.variants import VariantBuilder

RESULTS = Path(__file__).resolve().parent / "results"


def out_path(engine: str) -> Path:
    """Where a run on ``engine`` writes its figures."""
    return RESULTS / ("core.json" if engine == "sqlite" else f"core-{engine}.json")


@functools.cache
def empty(engine: str) -> Backend:
    """An empty database of ``engine``, opened once: what porting SQL and the version need."""
    return get_backend(engine).empty()


def port(engine: str, sql: str) -> str:
    """``sql``, written in the suite dialect, in ``engine``'s."""
    return empty(engine).port(sql, SUITE_DIALECT)


def step_overhead(scale: str, repeats: int, engine: str) -> dict:
    suite = get_suite("shop")
    make = {"suite": "shop", "split": "all", "scale": scale, "engine": engine}
    with_twin = gym.make("Quill-v1", **make).unwrapped
    no_twin = gym.make("Quill-v1", **make, num_twins=0).unwrapped
    per_task = {}
    for task in suite.tasks:
        runner = with_twin.runner(task)
        _ = runner.baseline, no_twin.runner(task).baseline
        reference = runner.task.reference  # in the engine's dialect
        steps, steps_no_twin, bares, bares_no_twin = [], [], [], []
        for _ in range(repeats):  # interleaved, so machine noise hits every figure alike
            for env, out in ((with_twin, steps), (no_twin, steps_no_twin)):
                env.reset(options={"task_id": task.id})
                start = time.perf_counter()
                env.step(reference)
                out.append(time.perf_counter() - start)
            bares.append(bare_seconds(runner, reference))
            bares_no_twin.append(bare_seconds(runner, reference, twins=False))
        step, step0 = statistics.median(steps), statistics.median(steps_no_twin)
        bare, bare0 = statistics.median(bares), statistics.median(bares_no_twin)
        per_task[task.id] = {
            "step_s": step,
            "step_without_twin_s": step0,
            "bare_s": bare,
            "bare_without_twin_s": bare0,
            "ratio": step / bare,
            "twin_cost": step / step0,
        }
    total = {k: sum(v[k] for v in per_task.values()) for k in ("step_s", "step_without_twin_s", "bare_s")}
    return {
        "median_ratio": statistics.median(v["ratio"] for v in per_task.values()),
        "aggregate_ratio": total["step_s"] / total["bare_s"],
        "target": 1.3,
        "twin_cost_median": statistics.median(v["twin_cost"] for v in per_task.values()),
        "twin_cost_aggregate": total["step_s"] / total["step_without_twin_s"],
        "per_task": per_task,
    }


DETERMINISM_TASKS = ("shop/spend_per_kiwi_user", "shop/icelandic_orders", "shop/orders_in_2023")


def determinism(scale: str, engine: str) -> dict:
    suite = get_suite("shop")
    pairs = [(t, port(engine, suite.task(t).reference)) for t in DETERMINISM_TASKS]
    pairs.append(
        (
            "shop/icelandic_orders",
            port(engine, "CREATE INDEX i ON orders(status);\n" + suite.task("shop/icelandic_orders").query),
        )
    )
    code = f"""
import json, sys
import gymnasium as gym
import quill_env
env = gym.make("Quill-v1", suite="shop", split="all", scale={scale!r}, engine={engine!r})
out = []
for task_id, action in json.loads(sys.argv[1]):
    env.reset(options={{"task_id": task_id}})
    _, reward, _, _, info = env.step(action)
    out.append([reward, info["speedup"], info["speedup_raw"], info["candidate_cost"], info["verdict"]])
print(json.dumps(out))
"""
    outs = json_in_fresh_processes(code, pairs)
    task = suite.task(DETERMINISM_TASKS[0])
    runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(cost="wall"), engine=engine)
    rewards = [runner.evaluate(runner.task.reference).reward for _ in range(10)]
    return {
        "pairs": [p[0] for p in pairs],
        "work_process_a": outs[0],
        "work_process_b": outs[1],
        "work_identical": outs[0] == outs[1],
        "wall_rewards": rewards,
        "wall_reward_std": statistics.pstdev(rewards),
        "wall_target_std": 0.02,
    }


# --- padding: hidden work a policy could move its cost into ---------------------------------

PADDING = [
    # (name, slow query, candidate): each candidate does the original's work plus hidden work,
    # or trades cheap VM steps for expensive ones.
    ("non-covering index, a fifth of the rows", "SELECT id, total, created_at FROM orders WHERE status = 'delivered'",
     "CREATE INDEX i ON orders(status);\nSELECT id, total, created_at FROM orders WHERE status = 'delivered'"),
    ("non-covering index, two values", "SELECT id, email, name FROM users WHERE is_active = 1",
     "CREATE INDEX i ON users(is_active);\nSELECT id, email, name FROM users WHERE is_active = 1"),
    ("sort inside IN", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT id, total FROM orders WHERE id IN (SELECT id FROM orders WHERE status = 'delivered' ORDER BY created_at, total)"),
    ("extra function calls per row", "SELECT id, email FROM users WHERE lower(country) = 'nz'",
     "SELECT id, email FROM users WHERE lower(country) = 'nz' AND upper(lower(email)) = upper(email)"),
    ("redundant self-join", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT o.id, o.total FROM orders o JOIN orders o2 ON o2.id = o.id WHERE o.status = 'delivered'"),
    ("printf width", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT id, total FROM orders WHERE status = 'delivered' AND length(printf('%.*c', 300000, 'x')) > 0"),
    ("replace on a built string", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT id, total FROM orders WHERE status = 'delivered' AND (SELECT length(replace(group_concat(notes), 'a', 'aaaa')) FROM orders) >= 0"),
    ("long needle", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT id, total FROM orders WHERE status = 'delivered' AND instr(notes, (SELECT group_concat(email) FROM users)) >= 0"),
    ("sorter on long keys", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT id, total FROM orders WHERE status = 'delivered' AND id IN (SELECT id FROM orders ORDER BY notes || notes || notes)"),
    ("LIKE on a built string", "SELECT id, total FROM orders WHERE status = 'delivered'",
     "SELECT id, total FROM orders WHERE status = 'delivered' AND (SELECT group_concat(notes) FROM orders) LIKE '%' || status || '%'"),
]  # fmt: skip


def padding(scale: str, engine: str) -> dict:
    path = str(get_suite("shop").database(scale, engine=engine))
    rows = []
    for name, slow, candidate in PADDING:
        slow, candidate = port(engine, slow), port(engine, candidate)
        result = quill_env.evaluate(path, slow, candidate)
        wall = None
        if result.correct:
            runner = TaskRunner.for_database(path, slow, EvalOptions(num_variants=0, num_twins=0))
            act = runner.parse_action(candidate)
            clone = runner.backend.clone()
            for i, spec in enumerate(act.indexes):
                clone.query(spec.to_sql(f"pad_{i}", clone.dialect))
            main = runner.backend
            wall = interleaved(
                lambda main=main, slow=slow: _bare(main, slow),
                lambda clone=clone, act=act: _bare(clone, act.query_sql),
                WallOptions(min_pairs=5, max_pairs=21, time_budget=3.0),
            ).speedup
            clone.close()
            runner.close()
        earned = tier_reward(wall) if wall else None
        paid = result.reward
        rows.append(
            {
                "name": name,
                "candidate": candidate,
                "verdict": result.verdict.value,
                "reward": paid,
                "work_speedup": result.speedup,
                "wall_speedup": wall,
                "wall_earns": earned,
                "overpayment": (paid - earned) if earned is not None and paid > 0 else min(paid, 0.0),
            }
        )
    return {
        "candidates": rows,
        "worst_overpayment": max(r["overpayment"] for r in rows),
        "target": "<= 0 (no candidate paid more than its wall speedup earns)",
    }


def _bare(backend: Backend, sql: str) -> float:
    start = time.perf_counter()
    backend.query(sql)
    return time.perf_counter() - start


BOMBS = {
    "cartesian": "SELECT id, total FROM orders o WHERE status = 'delivered' AND "
    "(SELECT COUNT(*) FROM orders a, orders b, orders c WHERE a.id < b.id) >= 0",
    "huge ephemeral": "SELECT id, total FROM orders WHERE status = 'delivered' AND id NOT IN "
    "(SELECT a.id * b.id FROM orders a, orders b)",
    "recursive fan-out": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r, users WHERE n < 50) "
    "SELECT id, total FROM orders WHERE status = 'delivered' AND id IN (SELECT n FROM r)",
}


def bombs(scale: str, engine: str) -> dict:
    path = str(get_suite("shop").database(scale, engine=engine))
    slow = port(engine, "SELECT id, total FROM orders WHERE status = 'delivered'")
    out = {}
    for name, bomb in BOMBS.items():
        bomb = port(engine, bomb)
        for label, options in (
            ("default", {}),
            ("budget off, literals off", {"budget_factor": 1e9, "literals": "any"}),
        ):
            start = time.perf_counter()
            result = quill_env.evaluate(path, slow, bomb, **options)
            out[f"{name} ({label})"] = {
                "verdict": result.verdict.value,
                "seconds": time.perf_counter() - start,
                "error": result.error,
            }
    return {
        "evaluations": out,
        "max_seconds": max(v["seconds"] for v in out.values()),
        "deadline_s": EvalOptions().max_seconds,
    }


def slow_candidate(scale: str, engine: str) -> dict:
    suite = get_suite("shop")
    task = suite.task("shop/coupon_lookup")
    # the literal rule off: this measures the budget, and the bomb's 20 is a constant of its own
    env = gym.make("Quill-v1", suite="shop", split="all", scale=scale, literals="any", engine=engine)
    env.reset(options={"task_id": task.id})
    runner = env.unwrapped.runner(task)
    # a correlated scan of orders x 20 users per matching row: about 1000x the baseline's wall time
    bomb = port(
        engine,
        "SELECT id, user_id, total FROM orders o WHERE coupon_code = 'SAVE-amber' "
        "AND (SELECT COUNT(*) FROM orders o2, users u2 WHERE o2.total >= 0 * o.total AND u2.id <= 20) > 0",
    )
    base = statistics.median(runner.backend.execute(runner.task.query).seconds for _ in range(5))
    # an equivalent rewrite that is not the identity (which is recognised and not run): its step
    # pays the same fixed costs as the bomb's and runs the query on every database
    plain = port(engine, "SELECT o.id, o.user_id, o.total FROM orders o WHERE o.coupon_code = 'SAVE-amber'")
    times, plain_times, verdicts = [], [], []
    for _ in range(5):  # interleaved
        for action, into in ((bomb, times), (plain, plain_times)):
            env.reset(options={"task_id": task.id})
            start = time.perf_counter()
            _, _, _, _, info = env.step(action)
            into.append(time.perf_counter() - start)
            if action is bomb:
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
        "equivalent_step_s": statistics.median(plain_times),
        "step_over_equivalent_step": statistics.median(times) / statistics.median(plain_times),
        "verdicts": verdicts,
        "target": 3.0,
        "target_of": "step_over_equivalent_step: the bomb is stopped at budget_factor (2) times the "
        "baseline's work, so its step costs at most about 3 steps of an equivalent rewrite; "
        "step_over_baseline also "
        "counts the fixed per-step costs (parsing, policy, 13 variants), which on a 2 ms query are "
        "larger than the query",
    }


def variant_build(engine: str, tasks: int = 5) -> dict:
    """Time to create the variants of one task: images sampled from the variant tier, then loaded
    into the engine (on PostgreSQL: schemas of the scratch database); seed 7, which no other section
    uses, so no image comes from the cache."""
    suite = get_suite("shop")
    source = str(suite.database("variant", engine=engine))
    images_s, load_s, counts = [], [], []
    for task in suite.tasks[:tasks]:
        query = port(engine, task.query)
        start = time.perf_counter()
        images = variants_for(source, query, count=len(VariantBuilder.MUTATIONS), rows_per_table=40, seed=7)
        images_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        loaded = [image.load(type(empty(engine))) for image in images]
        load_s.append(time.perf_counter() - start)
        counts.append(len(loaded))
        for db in loaded:
            db.close()
    return {
        "tasks": tasks,
        "variants_per_task": statistics.median(counts),
        "build_images_s_median": statistics.median(images_s),
        "load_s_median": statistics.median(load_s),
        "total_s_median": statistics.median(a + b for a, b in zip(images_s, load_s)),
    }


def calibration_of(engine: str, scale: str, skip: bool) -> dict:
    """The calibration figures: SQLite's from ``calibration.py`` (rerun unless ``skip``), another
    engine's from the last ``benchmarks/engines.py`` run on it."""
    if engine != "sqlite":
        source = RESULTS / f"engines-{engine}.json"
        if not source.exists():
            raise SystemExit(f"no {source.name}: run benchmarks/engines.py --engine {engine} first")
        ran = json.loads(source.read_text())
        cal = ran["calibration"]
        backend = get_backend(engine)
        shipped = shipped_calibration(backend)
        if cal["shipped"] != shipped:
            raise SystemExit(
                f"{source.name} scored other constants than {engine}'s ({cal['shipped']} != {shipped}): "
                f"rerun benchmarks/engines.py --engine {engine} (it reuses its measured points)"
            )
        return {
            "source": source.name,
            "scale": ran["scale"],
            "truly_faster": cal["with_shipped"]["n"],
            "fitted": cal["fitted"],
            "with_fitted": cal["with_fitted"],
            "with_backend": cal["with_shipped"],
        }
    calib = (
        json.loads((calibration.RESULTS / "calibration.json").read_text())
        if skip
        else calibration.run(scale, quill_env.list_suites())
    )
    return {k: v for k, v in calib.items() if k != "with_backend"} | {
        "with_backend": calib["with_backend"]["overall"],
        "per_family": calib["with_backend"]["per_family"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine", default="sqlite", help="sqlite (default), duckdb or postgres (on $QUILL_POSTGRES_URL)"
    )
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-calibration", action="store_true", help="reuse calibration.json as it is")
    parser.add_argument(
        "--out", type=Path, help="where to write the figures (default results/core[-ENGINE].json)"
    )
    args = parser.parse_args()
    engine = get_backend(args.engine).name
    out = args.out or out_path(engine)
    started = time.time()
    calib = calibration_of(engine, args.scale, args.skip_calibration)
    result = {
        "quill_version": quill_env.__version__,
        "engine": empty(engine).engine_version(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "scale": args.scale,
        "step_overhead": step_overhead(args.scale, args.repeats, engine),
        "determinism": determinism(args.scale, engine),
        "calibration": calib,
        "padding": padding(args.scale, engine),
        "bombs": bombs(args.scale, engine),
        "slow_candidate": slow_candidate(args.scale, engine),
        "variant_build": variant_build(engine),
    }
    result["seconds"] = time.time() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    so, de, ca, pa, bo, sc = (
        result[k]
        for k in ("step_overhead", "determinism", "calibration", "padding", "bombs", "slow_candidate")
    )
    print(
        f"step overhead: median ratio {so['median_ratio']:.2f} (aggregate {so['aggregate_ratio']:.2f}, target <= 1.3); "
        f"the twins cost {so['twin_cost_median']:.2f}x per step (aggregate {so['twin_cost_aggregate']:.2f}x)"
    )
    print(
        f"determinism: work identical across processes = {de['work_identical']}; wall reward std {de['wall_reward_std']:.4f} (target <= 0.02)"
    )
    wb = ca["with_backend"]
    print(
        f"{result['engine']}: calibration over {ca['truly_faster']} references: spearman {wb['spearman']:.3f} (>= 0.95), "
        f"tier exact {wb['tier_exact']:.0%} (>= 80%), within one {wb['tier_within_one']:.0%} (>= 97%)"
    )
    print(f"padding corpus: worst overpayment {pa['worst_overpayment']:+.3f} (target <= 0)")
    print(
        f"bombs: slowest evaluation {bo['max_seconds']:.1f} s (deadline {bo['deadline_s']:.0f} s per phase, "
        f"so at most {3 * bo['deadline_s']:.0f} s)"
    )
    print(
        f"1000x-slower candidate: slowdown {sc['slowdown_unbounded']:.0f}x unbounded; step/equivalent step {sc['step_over_equivalent_step']:.2f} (<= 3), step/baseline query {sc['step_over_baseline']:.2f}; {sc['verdicts']}"
    )
    vb = result["variant_build"]
    print(
        f"variants of one task: {vb['variants_per_task']:.0f} built in {vb['total_s_median']:.2f} s "
        f"(sampling {vb['build_images_s_median']:.2f} s, loading {vb['load_s_median']:.2f} s; median of {vb['tasks']})"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
