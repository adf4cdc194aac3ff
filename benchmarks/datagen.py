"""Data-generation benchmark (issue: the ReST-EM data loop), offline.

Writes benchmarks/results/datagen.json with:
- the offline loop (procedural slow queries + heuristic agent) over every shipped schema, for a
  fixed wall-clock budget: verified examples per minute, acceptance rate (kept / scored
  candidates), unique share (distinct slow-query shapes / records), speedup mix vs the target,
  why slow queries were dropped, family and schema coverage;
- the same loop with the reference fallback proposer (the generator's own answers plus mutated
  variants) as an upper line for the offline path;
- the export of the heuristic run: SFT rows (x4 with renamings), DPO pairs, seconds;
- the heuristic agent on the shipped test split (correct %, mean reward, share improved).

Run: .venv/bin/python benchmarks/datagen.py [--minutes 1.5] [--scale medium] [--test-limit N]

``--test-limit N`` evaluates the heuristic agent on only the first N test tasks (in suite order;
default: all of them), for a quick run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from quill_agents.export import ExportConfig, export, load_records
from quill_agents.generate import DataLoop, GenerateConfig, summarize
from quill_agents.proposers import ReferenceProposer, build_proposer
from quill_env import TaskRunner, get_suite, list_suites

OUT = Path(__file__).resolve().parent / "results" / "datagen.json"


class _Budget(Exception):
    pass


def run_loop(name: str, propose, scale: str, minutes: float, target: int, seed: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"quill-datagen-{name}-"))
    cfg = GenerateConfig(out=str(out), target=target, scales=(scale,), seed=seed)
    loop = DataLoop(cfg, propose)
    # warm the databases first so the rate measures the loop, not one-off data generation
    warm = time.perf_counter()
    for suite in loop.suite_names:
        loop.schema(suite, scale).info  # noqa: B018 - opens small/medium/variant databases
    warm = time.perf_counter() - warm
    start = time.perf_counter()

    def stop_at_budget(stats) -> None:
        if time.perf_counter() - start > minutes * 60:
            raise _Budget

    try:
        stats = loop.run(stop_at_budget)
    except _Budget:
        stats = loop.stats
    seconds = time.perf_counter() - start
    records = load_records(out)
    summary = summarize(records)
    return {
        "proposer": name,
        "run_dir": str(out),
        "seconds": round(seconds, 1),
        "warmup_seconds": round(warm, 1),
        "records": len(records),
        "verified_per_minute": round(len(records) / (seconds / 60), 1),
        "draws": stats.draws,
        "candidates_scored": stats.candidates,
        "acceptance_rate": round(stats.acceptance_rate, 4),
        "slow_query_valid_rate": round(stats.slow_valid / max(stats.draws, 1), 4),
        "slow_query_rejections": dict(stats.rejected),
        "unique_share": round(stats.unique_share, 4),
        "unique_slow_queries": summary["unique_slow_queries"],
        "mix": summary["mix"],
        "target_mix": summary["target_mix"],
        "median_speedup": round(summary["median_speedup"], 2),
        "mean_reward": summary["mean_reward"],
        "families": summary["families"],
        "schemas": summary["schemas"],
    }


def heuristic_test_split(scale: str, limit: int | None = None) -> dict | None:
    try:
        from quill_agents.heuristic import HeuristicAgent
    except ImportError:
        return None
    rows = []
    for name in list_suites():
        suite = get_suite(name)
        tasks = suite.split("test")
        if limit is not None:
            tasks = tasks[: max(limit - len(rows), 0)]
        if not tasks:
            continue
        agent = HeuristicAgent(database=str(suite.database(scale)))
        for task in tasks:
            runner = TaskRunner.from_suite(suite, task, scale)
            try:
                start = time.perf_counter()
                action = agent.act(runner.observation())
                act_s = time.perf_counter() - start
                result = runner.evaluate(action)
            finally:
                runner.close()
            rows.append(
                {
                    "task_id": task.id,
                    "verdict": result.verdict.value,
                    "reward": round(result.reward, 4),
                    "speedup": result.speedup,
                    "act_seconds": round(act_s, 3),
                }
            )
    n = len(rows)
    if not n:
        return None
    return {
        "scale": scale,
        "test_limit": limit,
        "tasks": n,
        "correct_pct": round(
            100 * sum(r["verdict"] in ("improved", "no_gain", "unchanged") for r in rows) / n, 1
        ),
        "improved_share": round(sum(r["verdict"] == "improved" for r in rows) / n, 4),
        "mean_reward": round(statistics.mean(r["reward"] for r in rows), 4),
        "median_act_seconds": statistics.median(r["act_seconds"] for r in rows),
        "per_task": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=1.5, help="wall-clock budget per loop")
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--target", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate the heuristic on only the first N test tasks (default: all)",
    )
    args = parser.parse_args()
    if args.test_limit is not None and args.test_limit < 0:
        parser.error("--test-limit must be >= 0")
    started = time.time()
    heuristic = run_loop(
        "heuristic", build_proposer(["heuristic"]), args.scale, args.minutes, args.target, args.seed
    )
    reference = run_loop(
        "reference", ReferenceProposer(), args.scale, args.minutes / 2, args.target, args.seed
    )
    t = time.perf_counter()
    report = export(heuristic["run_dir"], Path(heuristic["run_dir"]) / "export", ExportConfig(hf=False))
    export_info = {
        "records": report.records,
        "sft_rows": report.sft_rows,
        "augmented_rows": report.augmented_rows,
        "augment_failures": report.augment_failures,
        "dpo_rows": report.dpo_rows,
        "seconds": round(time.perf_counter() - t, 1),
    }
    result = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "cost_mode": "work",
        "heuristic_loop": heuristic,
        "reference_loop": reference,
        "export": export_info,
        "heuristic_test_split": heuristic_test_split(args.scale, args.test_limit),
        "seconds": round(time.time() - started, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for row in (heuristic, reference):
        print(
            f"{row['proposer']}: {row['records']} verified in {row['seconds']}s = {row['verified_per_minute']}/min; "
            f"acceptance {row['acceptance_rate']:.0%}; unique {row['unique_share']:.0%}; mix {row['mix']}"
        )
    print(f"export: {export_info}")
    ht = result["heuristic_test_split"]
    if ht:
        print(
            f"heuristic test split ({ht['tasks']} tasks): correct {ht['correct_pct']}%, "
            f"mean reward {ht['mean_reward']:+.3f}, improved {ht['improved_share']:.0%}"
        )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
