"""Generate the ``tpch`` suite's tasks: qgen instances of the 22 templates, validated by the environment.

Shipped tasks (``envs/tpch/tasks.jsonl``, a few instances per template so that CI's contract tests
stay short)::

    python scripts/tpch_tasks.py                       # 3 validated instances per template

Training workloads (LLM-R2 style: thousands of instances of the 16 training templates, the 6
held-out templates' instances in the test split), written as a suite directory of their own that
``gym.make("Quill-v1", suite="<dir>")`` and the leaderboard load by path::

    python scripts/tpch_tasks.py --per-template 200 --out runs/tpch-200 --workers 2
    python scripts/tpch_tasks.py --per-template 2000 --out runs/tpch-2000 --no-validate

``--no-validate`` writes the drawn instances without running them (seconds instead of hours; the
environment still refuses at reset a query whose baseline fails). Needs ``pip install "quill-sql[tpch]"``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from quill_env.canonical import fingerprint
from quill_env.tasks import Suite, Task, get_suite, suites_root
from quill_env.tpch import qgen
from quill_env.tpch.dbgen import generator_version
from quill_env.tpch.workload import Outcome, build_task

SEED = 20240601
"""The seed of the shipped instances."""


def _outcome(args: tuple[str, int, int, int, bool]) -> Outcome:
    suite_dir, template, index, seed, references = args
    return build_task(Suite.load(suite_dir), qgen.instance(template, index, seed), references=references)


def main(argv: list[str] | None = None) -> int:
    """Draw, validate and write the tasks; print a summary per template."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-template", type=int, default=3, help="tasks kept per template")
    parser.add_argument("--max-draws", type=int, default=0, help="instances drawn per template (default 3x)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--out", type=Path, help="a suite directory to write (default: the shipped envs/tpch)"
    )
    parser.add_argument("--templates", default="", help="comma-separated template numbers (default: all 22)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-references", action="store_true", help="validate the queries only")
    parser.add_argument("--no-validate", action="store_true", help="write the drawn instances unvalidated")
    args = parser.parse_args(argv)
    shipped = suites_root() / "tpch"
    out = args.out or shipped
    if out != shipped:
        out.mkdir(parents=True, exist_ok=True)
        spec = json.loads((shipped / "suite.json").read_text())
        spec["description"] += (
            f" Generated workload: {args.per_template} instances per template, seed {args.seed}."
        )
        (out / "suite.json").write_text(json.dumps(spec, indent=2) + "\n")
    suite = get_suite(shipped)
    templates = [int(t) for t in args.templates.split(",") if t] or sorted(qgen.DRAW)
    draws = args.max_draws or 3 * args.per_template
    start = time.perf_counter()
    kept: list[Task] = []
    report: dict[str, dict] = {}
    seen: set[str] = set()
    with ProcessPoolExecutor(args.workers) if args.workers > 1 else _Inline() as pool:
        for q in templates:
            todo = [(str(shipped), q, i, args.seed, not args.no_references) for i in range(draws)]
            if args.no_validate:
                outcomes = [_unvalidated(suite, qgen.instance(q, i, args.seed)) for _, _, i, _, _ in todo]
            else:
                outcomes = list(pool.map(_outcome, todo))
            mine, dropped, references = [], {}, {}
            for o in outcomes:
                if len(mine) == args.per_template:
                    break
                if o.task is None:
                    dropped[o.instance.name] = o.why
                    continue
                fp = fingerprint(o.task.query)
                if fp in seen:
                    dropped[o.instance.name] = "the same query as an earlier instance"
                    continue
                seen.add(fp)
                mine.append(o.task)
                references[o.instance.name] = o.tried
            kept += mine
            report[f"Q{q}"] = {
                "split": qgen.split_of(q),
                "kept": len(mine),
                "with_reference": sum(t.reference is not None for t in mine),
                "reference_speedup_small": [t.reference_speedup.get("small") for t in mine],
                "candidates_tried": references,
                "dropped": dropped,
            }
            print(
                f"Q{q:<2} {qgen.split_of(q):5} kept {len(mine)}/{draws} drawn, "
                f"{report[f'Q{q}']['with_reference']} with a reference; dropped {len(dropped)}",
                file=sys.stderr,
                flush=True,
            )
    (out / "tasks.jsonl").write_text("".join(json.dumps(t.to_dict()) + "\n" for t in kept))
    meta = {
        "generator": generator_version(),
        "seed": args.seed,
        "per_template": args.per_template,
        "draws_per_template": draws,
        "validated": not args.no_validate,
        "validated_at": "small",
        "test_templates": list(qgen.TEST_TEMPLATES),
        "splits": {s: sum(t.split == s for t in kept) for s in ("train", "test")},
        "tasks": len(kept),
        "with_reference": sum(t.reference is not None for t in kept),
        "templates": report,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out != shipped and (shipped / "README.md").exists():
        shutil.copy(shipped / "README.md", out / "README.md")
    print(f"{len(kept)} tasks ({meta['splits']}) in {out}; {meta['seconds']} s", file=sys.stderr)
    return 0


def _unvalidated(suite: Suite, inst: qgen.Instance) -> Outcome:
    task = Task(
        id=f"{suite.name}/{inst.name}", query=inst.sql, suite=suite.name, schema=suite.name,
        split=qgen.split_of(inst.template), notes=f"TPC-H Q{inst.template}, unvalidated qgen instance",
    )  # fmt: skip
    return Outcome(inst, task)


class _Inline:
    """A stand-in for a process pool that maps in this process."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items):
        return map(fn, items)


if __name__ == "__main__":
    raise SystemExit(main())
