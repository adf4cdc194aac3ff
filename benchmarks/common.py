"""Shared pieces of the benchmarks (imported as a sibling module: run them as scripts)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import apsw

from quill_env import TaskRunner
from quill_env.twins import applied as twin_applied


def bare_seconds(runner: TaskRunner, action: str, *, twins: bool = True) -> float:
    """The bare-execution limit: the same candidate run with plain APSW (indexes in a savepoint,
    the query, rollback) on the main database, on every twin (applied in a savepoint, as the
    environment does), on every variant and on every one-table-emptied copy, with no other Quill
    machinery."""
    act = runner.parse_action(action)
    index_sql = [spec.to_sql(f"bare_{i}") for i, spec in enumerate(act.indexes)]
    total = 0.0
    for backend in [runner.backend, *runner.variant_backends, *runner.emptied_backends]:
        conn: apsw.Connection = backend.connection
        start = time.perf_counter()
        conn.execute("SAVEPOINT bare")
        for stmt in index_sql:
            conn.execute(stmt)
        rows = list(conn.execute(act.query_sql))
        if twins and backend is runner.backend:
            for twin in runner.twins:
                with twin_applied(backend, twin):
                    rows = list(conn.execute(act.query_sql))
        conn.execute("ROLLBACK TO bare")
        conn.execute("RELEASE bare")
        total += time.perf_counter() - start
        del rows
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
