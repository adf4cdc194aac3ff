"""Generate, validate and select the tasks of the procedurally generated suites.

Writes envs/<schema>/tasks.jsonl and envs/<schema>/meta.json (measured mix, counts, seeds).
Usage: python scripts/generate_tasks.py [--schemas a,b] [--draws 300] [--per-schema 90]
Schemas in TEST_ONLY appear only in the test split; the others hold out every 10th task for test.
"""

import argparse
import json
import sys
import time

import numpy as np

from quill_env.authoring.taskgen import candidates, mix, select, to_tasks, validate_all, write_tasks
from quill_env.tasks import Suite, suites_root

GENERATED = ["ecommerce", "hr", "social", "saas", "school", "banking", "clinic", "logistics"]
TEST_ONLY = {"clinic", "logistics"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schemas", default=",".join(GENERATED))
    parser.add_argument("--draws", type=int, default=380)
    parser.add_argument("--per-schema", type=int, default=100)
    parser.add_argument("--test-per-schema", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for name in args.schemas.split(","):
        start = time.time()
        path = suites_root() / name
        suite = Suite.load(path)
        seed = suite.seed + 7
        cands = candidates(suite, args.draws, seed)

        def progress(i, n, name=name):
            if i % 25 == 0 or i == n:
                print(f"  {name}: validated {i}/{n}", file=sys.stderr, flush=True)

        pool = validate_all(suite, cands, args.workers, progress)
        n = args.test_per_schema if name in TEST_ONLY else args.per_schema
        chosen = select(pool, n, np.random.default_rng(seed))
        split = (lambda i: "test") if name in TEST_ONLY else (lambda i: "test" if i % 10 == 9 else "train")
        order = np.random.default_rng(seed + 1).permutation(len(chosen))
        chosen = [chosen[i] for i in order]
        tasks = to_tasks(name, chosen, split)
        meta = {
            "generator_seed": seed,
            "draws": args.draws,
            "candidates": len(cands),
            "validated": len(pool),
            "selected": len(tasks),
            "splits": {s: sum(t.split == s for t in tasks) for s in ("train", "test")},
            "measured_mix_medium": mix(tasks, "medium"),
            "pool_mix_medium": mix(to_tasks(name, pool, lambda i: "train"), "medium"),
            "families": dict(
                sorted(
                    {
                        f: sum(t.notes == f"family={f}" for t in tasks) for f in {t.notes[7:] for t in tasks}
                    }.items()
                )
            ),
            "seconds": round(time.time() - start, 1),
        }
        write_tasks(path, tasks, meta)
        print(json.dumps({name: meta}, indent=1), flush=True)


if __name__ == "__main__":
    main()
