"""The fingerprint every result carries: what was measured, with what, on what machine."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

from quill_env._version import __version__
from quill_env.backends import DEFAULT_ENGINE, get_backend
from quill_env.measure import CostMode
from quill_env.tasks import Suite


def machine_summary() -> dict[str, Any]:
    """Python, OS, CPU and memory of this machine (memory only when psutil is installed)."""
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        import psutil

        out["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return out


def engine_version(engine: str = DEFAULT_ENGINE) -> str:
    """The database engine that scores actions, with its version (e.g. ``SQLite 3.54.1``)."""
    backend = get_backend(engine).empty()
    try:
        return backend.engine_version()
    finally:
        backend.close()


def fingerprint(
    suites: Sequence[Suite],
    *,
    scale: str | None,
    cost: CostMode | str,
    split: str,
    engine: str = DEFAULT_ENGINE,
) -> dict[str, Any]:
    """The fingerprint of a run.

    Args:
        suites: the suites the tasks come from.
        scale: the data scale (``None``: each suite's default, resolved here).
        cost: the cost mode (a :class:`~quill_env.measure.CostMode` or its name).
        split: the split scored.
        engine: the backend that scored (``sqlite`` or ``duckdb``).

    Returns:
        ``quill_version``, ``suites`` (name, version, hash, scale), ``engine``, ``cost_mode``,
        ``scale``, ``split``, ``deterministic`` and ``machine``.
    """
    mode = CostMode.parse(cost)
    scales = sorted({scale or s.default_scale for s in suites})
    return {
        "quill_version": __version__,
        "suites": [
            {"name": s.name, "version": s.version, "hash": s.hash, "scale": scale or s.default_scale}
            for s in suites
        ],
        "engine": engine_version(engine),
        "cost_mode": mode.value,
        "scale": scales[0] if len(scales) == 1 else ",".join(scales),
        "split": split,
        "deterministic": mode.deterministic and get_backend(engine).deterministic_work,
        "machine": machine_summary(),
    }


def comparable_key(fp: dict[str, Any]) -> tuple:
    """What must agree for two results to sit on one leaderboard: suites, engine, cost, scale, split."""
    suites = tuple((s["name"], s["version"], s["hash"]) for s in fp.get("suites", []))
    return (suites, fp.get("engine"), fp.get("cost_mode"), fp.get("scale"), fp.get("split"))


__all__ = ["comparable_key", "engine_version", "fingerprint", "machine_summary"]
