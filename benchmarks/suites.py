"""Task-suite benchmark: the shape of the task distribution and how fast its data builds.

Writes benchmarks/results/suites.json: tasks per schema, split and pattern; the measured speedup
mix of the reference rewrites (recorded by the environment at the medium scale) against the
50/30/20 target; build time of every schema at every tier (fresh cache, so nothing is reused).

Run: .venv/bin/python benchmarks/suites.py [--tiers small,medium,large]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import quill_env
from quill_env import fingerprint, get_suite, list_suites
from quill_env.authoring.taskgen import TARGET_MIX, mix

OUT = Path(__file__).resolve().parent / "results" / "suites.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiers", default="small,medium,large")
    args = parser.parse_args()
    suites = [get_suite(n) for n in list_suites()]
    tasks = [t for s in suites for t in s.tasks]
    per_schema = {s.name: dict(Counter(t.split for t in s.tasks)) for s in suites}
    patterns = Counter(p for t in tasks for p in t.patterns)
    measured = mix(tasks, "medium")
    builds: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["QUILL_CACHE"] = cache
        for suite in suites:
            builds[suite.name] = {}
            for tier in args.tiers.split(","):
                start = time.perf_counter()
                path = suite.database(tier, rebuild=True)
                builds[suite.name][tier] = round(time.perf_counter() - start, 3)
                builds[suite.name][f"{tier}_mb"] = round(path.stat().st_size / 2**20, 1)
                path.unlink()
            print(
                f"{suite.name:10} " + "  ".join(f"{k}={v}" for k, v in builds[suite.name].items()), flush=True
            )
    result = {
        "quill_version": quill_env.__version__,
        "tasks": len(tasks),
        "splits": dict(Counter(t.split for t in tasks)),
        "per_schema": per_schema,
        "test_only_schemas": sorted(
            {t.schema for t in tasks if t.split == "test"} - {t.schema for t in tasks if t.split == "train"}
        ),
        "unique_canonical_share": len({fingerprint(t.query) for t in tasks}) / max(len(tasks), 1),
        "patterns": dict(patterns.most_common()),
        "mix_medium": measured,
        "mix_target": TARGET_MIX,
        "mix_within_10_points": all(abs(measured[b] - s) <= 0.10 for b, s in TARGET_MIX.items()),
        "build_seconds": builds,
        "medium_under_2s": all(b.get("medium", 0) < 2.0 for b in builds.values()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("build_seconds", "patterns", "per_schema")},
            indent=1,
        )
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
