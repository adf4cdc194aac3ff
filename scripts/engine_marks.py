"""Mark every shipped task per engine: does the original run there, and does the reference pay?

Suites are written once, in SQLite's dialect, and run ported elsewhere. On another engine a
task's original may not run at all (a construct the port cannot express), and its reference may
not be faster there (the engine's planner already does what it does). Rather than keep such
tasks silently, this script scores each task's original and reference on the engine at the
small scale and writes the marks to ``envs/<suite>/engines.json``::

    {"postgres": {"shop/coupon_lookup": {"original": "runs", "reference": "improved", "speedup": 2.66}}}

``original`` is ``runs`` or ``fails`` (with the engine's data-free ``why``); ``reference`` is
the reference's verdict there. The environment and the leaderboard leave out, on that engine,
the tasks whose original fails (:meth:`quill_env.tasks.Suite.runs_on`); the others stay, marked.

Run (PostgreSQL needs a server: ``QUILL_POSTGRES_URL``)::

    .venv/bin/python scripts/engine_marks.py --engine postgres [--suites shop,hr] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from quill_env import TaskRunner, get_suite, list_suites
from quill_env.errors import BaselineError


def mark_suite(name: str, engine: str, scale: str) -> dict[str, dict]:
    """The marks of one suite's tasks on ``engine``."""
    suite = get_suite(name)
    marks: dict[str, dict] = {}
    for task in suite.tasks:
        entry: dict = {}
        try:
            runner = TaskRunner.from_suite(suite, task, scale, engine=engine)
        except BaselineError as err:
            marks[task.id] = {"original": "fails", "why": str(err).rsplit(": ", 1)[-1][:200]}
            continue
        try:
            _ = runner.baseline
        except BaselineError as err:
            marks[task.id] = {"original": "fails", "why": str(err).rsplit(": ", 1)[-1][:200]}
            runner.close()
            continue
        result = runner.evaluate(task.reference) if task.reference else None
        entry["original"] = "runs"
        if result is not None:
            entry["reference"] = result.verdict.value
            if result.speedup is not None:
                entry["speedup"] = round(result.speedup, 3)
        marks[task.id] = entry
        runner.close()
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--suites", default=",".join(list_suites()))
    parser.add_argument("--scale", default="small")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    names = [n for n in args.suites.split(",") if n]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {name: pool.submit(mark_suite, name, args.engine, args.scale) for name in names}
        for name, future in futures.items():
            marks = future.result()
            path = get_suite(name).path / "engines.json"
            existing = json.loads(path.read_text()) if path.exists() else {}
            existing[args.engine] = dict(sorted(marks.items()))
            path.write_text(json.dumps(existing, indent=1, sort_keys=True) + "\n")
            runs = sum(m["original"] == "runs" for m in marks.values())
            paid = sum(m.get("reference") == "improved" for m in marks.values())
            print(
                f"{name}: {len(marks)} tasks, original runs on {runs}, reference improved on {paid} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
