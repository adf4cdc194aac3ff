"""Environment ids, registered in Gymnasium's own registry on ``import quill_env``."""

from __future__ import annotations

import gymnasium as gym

from quill_env.measure import CostMode
from quill_env.tasks import list_suites

ENTRY_POINT = "quill_env.env:SQLOptEnv"
VECTOR_ENTRY_POINT = "quill_env.vector:make_vec"

REGISTERED: dict[str, dict] = {
    "Quill-v1": {"kwargs": {"split": "train", "cost": CostMode.WORK}},
    "Quill-test-v1": {"kwargs": {"split": "test", "cost": CostMode.WORK}},
    "Quill-wall-v1": {"kwargs": {"split": "train", "cost": "wall"}, "nondeterministic": True},
    "Quill-test-wall-v1": {"kwargs": {"split": "test", "cost": "wall"}, "nondeterministic": True},
}
"""Every id Quill registers (per-suite ids are added by :func:`register_all`)."""


def register_all() -> list[str]:
    """Register Quill's ids (idempotent); one ``Quill-<suite>-v1`` per shipped suite as well."""
    for name in list_suites(benchmarks=True):
        REGISTERED.setdefault(
            f"Quill-{name}-v1", {"kwargs": {"suite": name, "split": "all", "cost": CostMode.WORK}}
        )
    for env_id, spec in REGISTERED.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                kwargs=dict(spec["kwargs"]),
                nondeterministic=spec.get("nondeterministic", False),
            )
    return list(REGISTERED)
