"""Environment ids, registered in Gymnasium's own registry on ``import quill_env``."""

from __future__ import annotations

import gymnasium as gym

ENTRY_POINT = "quill_env.env:SQLOptEnv"

REGISTERED: dict[str, dict] = {
    "Quill-v0": {"kwargs": {"split": "train", "cost": "work"}},
    "Quill-test-v0": {"kwargs": {"split": "test", "cost": "work"}},
    "Quill-wall-v0": {"kwargs": {"split": "train", "cost": "wall"}, "nondeterministic": True},
    "Quill-test-wall-v0": {"kwargs": {"split": "test", "cost": "wall"}, "nondeterministic": True},
}
"""Every id Quill registers (per-suite ids are added by :func:`register_all`)."""


def register_all() -> list[str]:
    """Register Quill's ids (idempotent); one ``Quill-<suite>-v0`` per shipped suite as well."""
    from quill_env.tasks import list_suites

    for name in list_suites():
        REGISTERED.setdefault(f"Quill-{name}-v0", {"kwargs": {"suite": name, "split": "all", "cost": "work"}})
    for env_id, spec in REGISTERED.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=ENTRY_POINT,
                kwargs=dict(spec["kwargs"]),
                nondeterministic=spec.get("nondeterministic", False),
            )
    return list(REGISTERED)
