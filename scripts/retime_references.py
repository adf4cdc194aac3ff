"""Keep only references that are truly faster, and re-measure every reference's speedup.

A reference is kept when both hold:

- on the clock: the conservative (lower) bound of its interleaved wall speedup against the slow
  query at the medium scale, from ``benchmarks/results/calibration_points.jsonl`` (written by
  ``benchmarks/calibration.py``), is at least 1.5x;
- in ``work`` mode: the environment rewards it ``improved`` at the small and medium scales.

Every other task is dropped from its suite's ``tasks.jsonl`` and listed, with its figures, under
``"dropped"`` in ``meta.json`` (and removed from ``scripts/shop_tasks.py`` for the shop suite by
hand: that script prints the shop ids to remove). Kept tasks get their ``reference_speedup``
re-measured at both scales.

Run: .venv/bin/python scripts/retime_references.py [--suites shop,hr]
"""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from quill_env import TaskRunner, list_suites
from quill_env.authoring.taskgen import mix, write_tasks
from quill_env.tasks import Suite, suites_root

POINTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "calibration_points.jsonl"
MIN_WALL = 1.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suites", default=",".join(list_suites()))
    args = parser.parse_args()
    points = {}
    for line in POINTS.read_text().splitlines():
        if line.strip():
            p = json.loads(line)
            if p["scale"] == "medium":
                points[p["task"]] = p
    for name in args.suites.split(","):
        path = suites_root() / name
        suite = Suite.load(path)
        kept, dropped = [], []
        for n, task in enumerate(suite.tasks, 1):
            point = points.get(task.id)
            if point is None:
                sys.exit(f"{task.id}: no calibration point; run benchmarks/calibration.py first")
            reason = None
            if point["wall_lower"] < MIN_WALL:
                reason = f"wall speedup {point['wall_ratio']:.2f}x (lower bound {point['wall_lower']:.2f}x) < {MIN_WALL}x"
            speedups = {}
            if reason is None:
                for scale in ("small", "medium"):
                    result = TaskRunner.from_suite(suite, task, scale).evaluate(task.reference)
                    if result.verdict.value != "improved":
                        reason = f"work mode at {scale}: {result.verdict.value} ({result.speedup or 0:.2f}x)"
                        break
                    speedups[scale] = round(result.speedup, 3)
            if reason is None:
                kept.append(replace(task, reference_speedup=speedups))
            else:
                dropped.append({"id": task.id, "patterns": list(task.patterns), "why": reason})
            if n % 25 == 0:
                print(f"  {name}: {n}/{len(suite.tasks)}", file=sys.stderr, flush=True)
        meta_path = path / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta["splits"] = {s: sum(t.split == s for t in kept) for s in ("train", "test")}
        meta["selected"] = len(kept)
        if "measured_mix_medium" in meta:
            meta["measured_mix_medium"] = mix(kept, "medium")
        if "families" in meta:
            families = sorted(
                {t.notes.removeprefix("family=") for t in kept if t.notes.startswith("family=")}
            )
            meta["families"] = {f: sum(t.notes == f"family={f}" for t in kept) for f in families}
        meta["dropped"] = sorted(meta.get("dropped", []) + dropped, key=lambda d: d["id"])
        meta["retimed"] = {"rule": f"wall lower bound >= {MIN_WALL}x at medium and improved in work mode"}
        write_tasks(path, kept, meta)
        print(f"{name}: kept {len(kept)}, dropped {len(dropped)}: {[d['id'] for d in dropped]}", flush=True)


if __name__ == "__main__":
    main()
