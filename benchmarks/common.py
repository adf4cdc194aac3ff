"""Shared pieces of the benchmarks (imported as a sibling module: run them as scripts)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from quill_env import TaskRunner
from quill_env.backends import Backend
from quill_env.twins import applied as twin_applied
from quill_env.twins import materialized


def bare_seconds(runner: TaskRunner, action: str, *, twins: bool = True) -> float:
    """The bare-execution limit of a step, through the backend interface with no other Quill
    machinery: the candidate (its indexes in the engine's scratch state, then its query) on the
    main database, on every twin, on every variant and on every one-table-emptied copy.

    Twins are applied as the environment applies them: in a transient state of the main
    database where the engine nests one inside the scratch indexes (SQLite's savepoints), else
    on a copy with the twin applied, made before the clock starts (DuckDB).
    """
    act = runner.parse_action(action)
    main = runner.backend
    nested = twins and main.nested_transient
    copies = [] if nested or not twins else [materialized(main, twin) for twin in runner.twins]
    total = 0.0
    try:
        for backend in [main, *copies, *runner.variant_backends, *runner.emptied_backends]:
            start = time.perf_counter()
            with backend.scratch_indexes(act.indexes):
                rows = backend.query(act.query_sql)
                if nested and backend is main:
                    for twin in runner.twins:
                        with twin_applied(backend, twin):
                            rows = backend.query(act.query_sql)
            total += time.perf_counter() - start
            del rows
    finally:
        for copy in copies:
            copy.close()
    return total


def json_in_fresh_processes(code: str, payload: object, times: int = 2) -> list:
    """What ``code`` prints as JSON, run ``times`` in fresh interpreters with ``payload`` as
    JSON in ``sys.argv[1]`` (how determinism across processes is checked)."""
    return [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", code, json.dumps(payload)], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(times)
    ]


def shipped_calibration(backend: type[Backend]) -> dict[str, float]:
    """The calibration constants ``backend`` ships (what a benchmark's agreement is scored with)."""
    return {
        "alpha": backend.calibration_alpha,
        "statement_work": backend.calibration_statement_work,
        "row_work": backend.calibration_row_work,
    }
