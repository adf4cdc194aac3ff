"""Building a suite's tasks: generate candidates, validate them with the environment, select.

A candidate from :mod:`quill_env.authoring.querygen` is kept only if the environment itself says so, at
every scale it is validated on: the slow query runs within a time cap, the reference verifies on
the main database and on all variants, and it reaches at least the acceptance tier (and at least
``min_speedup`` at the default scale). Kept candidates are de-duplicated by canonical fingerprint
and selected toward the target speedup mix (DESIGN §1: 50% 2-10x, 30% 10-100x, 20% 100x+).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quill_env.authoring.querygen import FAMILIES, Candidate, SchemaInfo, generate
from quill_env.canonical import fingerprint
from quill_env.errors import BaselineError
from quill_env.evaluator import EvalOptions, TaskRunner
from quill_env.reward import Verdict
from quill_env.tasks import Suite, Task
from quill_env.workers import make_pool

BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("2-10x", 2.0, 10.0),
    ("10-100x", 10.0, 100.0),
    ("100x+", 100.0, float("inf")),
)
TARGET_MIX = {"2-10x": 0.5, "10-100x": 0.3, "100x+": 0.2}


def bucket(speedup: float) -> str | None:
    """The mix bucket of a speedup (``None`` below 2x).

    >>> bucket(3.0), bucket(50.0), bucket(400.0), bucket(1.7)
    ('2-10x', '10-100x', '100x+', None)
    """
    for name, lo, hi in BUCKETS:
        if lo <= speedup < hi:
            return name
    return None


@dataclass(frozen=True)
class Validated:
    """A candidate the environment accepted, with its measured speedups per scale."""

    candidate: Candidate
    fingerprint: str
    speedup: dict[str, float]
    baseline_seconds: float


def validate(
    suite: Suite,
    cand: Candidate,
    scales: Iterable[str] = ("small", "medium"),
    *,
    max_baseline_seconds: float = 3.0,
    acceptance: float = 0.25,
) -> Validated | None:
    """Validate one candidate with the environment at every scale; ``None`` when rejected."""
    task = Task(
        id=f"{suite.name}/candidate", query=cand.query, reference=cand.reference,
        output_columns=cand.output_columns, suite=suite.name, schema=suite.name,
    )  # fmt: skip
    speedups, base_seconds = {}, 0.0
    for scale in scales:
        runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(max_seconds=max_baseline_seconds * 2))
        try:
            baseline = runner.baseline
            if baseline.main.seconds > max_baseline_seconds or not baseline.main.rows:
                return None
            result = runner.evaluate(cand.reference)
        except BaselineError:
            return None
        finally:
            runner.close()
        if result.verdict is not Verdict.IMPROVED or result.reward_terms.get("tier", 0) < acceptance:
            return None
        speedups[scale] = round(float(result.speedup), 3)
        base_seconds = baseline.main.seconds
    return Validated(cand, fingerprint(cand.query), speedups, base_seconds)


def _worker_validate(args: tuple[str, Candidate]) -> Validated | None:
    path, cand = args
    return validate(Suite.load(path), cand)


def candidates(suite: Suite, n: int, seed: int) -> list[Candidate]:
    """``n`` draws spread evenly over the families, de-duplicated by fingerprint."""
    info = SchemaInfo(suite)
    rng = np.random.default_rng(seed)
    names = list(FAMILIES)
    seen: set[str] = set()
    out: list[Candidate] = []
    for i in range(n):
        cand = generate(info, rng, names[i % len(names)])
        if cand is None:
            continue
        fp = fingerprint(cand.query)
        if fp not in seen:
            seen.add(fp)
            out.append(cand)
    info.close()
    return out


def validate_all(
    suite: Suite,
    cands: list[Candidate],
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    *,
    ray: str | None = None,
) -> list[Validated]:
    """Validate candidates in worker processes (each owns its database connections).

    Args:
        suite: a suite loaded from a directory (workers load it by path).
        cands: the candidates.
        workers: worker processes (or Ray actors).
        progress: called with (validated so far, total).
        ray: validate on Ray actors on this cluster (see :func:`~quill_env.workers.make_pool`).

    Returns:
        The accepted candidates, in the order of ``cands``.

    Raises:
        ValueError: the suite has no directory.
    """
    if suite.path is None:
        raise ValueError("validate_all needs a suite loaded from a directory")
    jobs = [(str(suite.path), c) for c in cands]
    out: list[Validated] = []
    with make_pool(workers, ray=ray) as pool:
        for i, res in enumerate(pool.map(_worker_validate, jobs), 1):
            if res is not None:
                out.append(res)
            if progress:
                progress(i, len(jobs))
    return out


def _round_robin(items: list[Validated], rng: np.random.Generator) -> list[Validated]:
    """Shuffle, then interleave families so a quota takes a spread of patterns."""
    by_family: dict[str, list[Validated]] = {}
    for i in rng.permutation(len(items)):
        by_family.setdefault(items[int(i)].candidate.family, []).append(items[int(i)])
    queues = list(by_family.values())
    out: list[Validated] = []
    while queues:
        out += [q.pop(0) for q in queues]
        queues = [q for q in queues if q]
    return out


def select(pool: list[Validated], n: int, rng: np.random.Generator, scale: str = "medium") -> list[Validated]:
    """Pick ``n`` validated tasks toward the target mix, spreading families within buckets."""
    by_bucket: dict[str, list[Validated]] = {b: [] for b in TARGET_MIX}
    for v in pool:
        b = bucket(v.speedup.get(scale, 0.0))
        if b:
            by_bucket[b].append(v)
    chosen: list[Validated] = []
    leftovers: list[Validated] = []
    for b, items in by_bucket.items():
        ranked = _round_robin(items, rng)
        quota = round(n * TARGET_MIX[b])
        chosen += ranked[:quota]
        leftovers += ranked[quota:]
    chosen += _round_robin(leftovers, rng)[: max(0, n - len(chosen))]
    return chosen[:n]


def to_tasks(suite_name: str, chosen: list[Validated], split_of: Callable[[int], str]) -> list[Task]:
    """Tasks with ids, splits and measured speedups."""
    out = []
    for i, v in enumerate(chosen):
        c = v.candidate
        out.append(
            Task(
                id=f"{suite_name}/{c.family}_{i:03d}",
                query=c.query,
                reference=c.reference,
                patterns=c.patterns,
                split=split_of(i),
                suite=suite_name,
                schema=suite_name,
                output_columns=c.output_columns,
                reference_speedup=v.speedup,
                notes=f"family={c.family}",
            )
        )
    return out


def mix(tasks: Iterable[Task], scale: str = "medium") -> dict[str, float]:
    """The measured speedup mix of tasks (shares of the three buckets; below 2x counted apart)."""
    counts: Counter[str] = Counter(bucket(t.reference_speedup.get(scale, 0.0)) or "<2x" for t in tasks)
    total = sum(counts.values()) or 1
    return {b: round(counts.get(b, 0) / total, 4) for b in (*TARGET_MIX, "<2x")}


def write_tasks(path: Path, tasks: list[Task], meta: dict) -> None:
    """Write ``tasks.jsonl`` and ``meta.json`` of a suite directory."""
    (path / "tasks.jsonl").write_text("".join(json.dumps(t.to_dict()) + "\n" for t in tasks))
    (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


__all__ = [
    "BUCKETS",
    "TARGET_MIX",
    "Validated",
    "bucket",
    "candidates",
    "mix",
    "select",
    "to_tasks",
    "validate",
    "validate_all",
    "write_tasks",
]
