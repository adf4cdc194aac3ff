"""Variant coverage benchmark: on how many variant databases does each task's original return rows?

A variant can only catch a wrong rewrite when the original returns something on it (DESIGN §10:
"the original returns non-empty, varied results on most of them"). For every shipped task, the
variants are built from the suite's ``variant`` tier as the evaluator builds them (default
options) and the original is run on each; the script reports how many tasks have ``n`` non-empty
variants, the tasks below the target, and the variant-building time per task.

Writes benchmarks/results/variant_coverage.json.

Run: .venv/bin/python benchmarks/variant_coverage.py [--suites shop,hr] [--target 6]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import quill_env
from quill_env import EvalOptions, get_suite, list_suites
from quill_env.backends.base import Budget
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.tasks import Task
from quill_env.variants import VariantBuilder

OUT = Path(__file__).resolve().parent / "results" / "variant_coverage.json"


@dataclass(frozen=True)
class TaskCoverage:
    """How one task's original fares on its variants."""

    task_id: str
    split: str
    nonempty: tuple[str, ...]
    """Names of the variants on which the original returns at least one row."""
    failed: tuple[str, ...]
    """Names of the variants on which the original does not run to completion."""
    variants: int
    build_seconds: float


def task_coverage(builder: VariantBuilder, task: Task, *, max_rows: int = 1_000_000) -> TaskCoverage:
    """Build ``task``'s variants with ``builder`` and run the original on each.

    Args:
        builder: a builder over the suite's variant tier.
        task: the task.
        max_rows: the row cap of one run (as the evaluator's baseline).

    Returns:
        The task's coverage record.
    """
    start = time.perf_counter()
    variants = builder.build(task.query)
    seconds = time.perf_counter() - start
    nonempty, failed = [], []
    for variant in variants:
        backend = variant.load(SQLiteBackend)
        try:
            result = backend.execute(task.query, Budget(max_seconds=60.0, max_rows=max_rows))
        finally:
            backend.close()
        if not result.ok:
            failed.append(variant.name)
        elif result.rows:
            nonempty.append(variant.name)
    return TaskCoverage(task.id, task.split, tuple(nonempty), tuple(failed), len(variants), seconds)


def suite_coverage(name: str, options: EvalOptions | None = None) -> list[TaskCoverage]:
    """Coverage of every task of suite ``name`` under the evaluator's variant options.

    Args:
        name: a shipped suite.
        options: the evaluator options whose ``variant_rows`` and ``seed`` are used.

    Returns:
        One record per task, in the suite's order.
    """
    options = options or EvalOptions()
    suite = get_suite(name)
    source = SQLiteBackend.open(suite.database("variant"))
    try:
        builder = VariantBuilder(source, rows_per_table=options.variant_rows, seed=options.seed)
        return [task_coverage(builder, task) for task in suite.tasks]
    finally:
        source.close()


def distribution(records: Iterable[TaskCoverage]) -> dict[int, int]:
    """Tasks by number of variants with a non-empty result, ``{n: tasks}`` sorted by ``n``.

    >>> r = TaskCoverage("a", "train", ("x",), (), 2, 0.0)
    >>> distribution([r, r])
    {1: 2}
    """
    counts = Counter(len(r.nonempty) for r in records)
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suites", default=",".join(list_suites()))
    parser.add_argument("--target", type=int, default=6, help="non-empty variants wanted per task")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    records: list[TaskCoverage] = []
    per_suite: dict[str, dict] = {}
    for name in args.suites.split(","):
        start = time.perf_counter()
        rows = suite_coverage(name)
        records += rows
        per_suite[name] = {
            "tasks": len(rows),
            "distribution": distribution(rows),
            "below_target": sum(len(r.nonempty) < args.target for r in rows),
            "seconds": round(time.perf_counter() - start, 2),
        }
        print(f"{name:10} {per_suite[name]}", flush=True)
    build = [r.build_seconds for r in records]
    below = [r for r in records if len(r.nonempty) < args.target]
    train = [r for r in records if r.split == "train"]
    result = {
        "quill_version": quill_env.__version__,
        "mutations": list(VariantBuilder.MUTATIONS),
        "target": args.target,
        "tasks": len(records),
        "distribution": distribution(records),
        "below_target": len(below),
        "all_empty": sum(not r.nonempty for r in records),
        "train_all_empty": sum(not r.nonempty for r in train),
        "train_tasks": len(train),
        "original_failed": sum(bool(r.failed) for r in records),
        "nonempty_by_mutation": dict(Counter(n for r in records for n in r.nonempty)),
        "build_seconds_per_task": {
            "mean": round(sum(build) / max(len(build), 1), 4),
            "max": round(max(build, default=0.0), 4),
            "total": round(sum(build), 2),
        },
        "per_suite": per_suite,
        "below_target_tasks": [
            {"task": r.task_id, "nonempty": list(r.nonempty), "failed": list(r.failed)} for r in below
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("per_suite", "below_target_tasks")}, indent=1
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
