"""Quill: a Gymnasium environment for SQL query optimization by language models.

>>> import gymnasium as gym, quill_env
>>> "Quill-v1" in gym.registry
True

Importing ``quill_env`` registers the environments; it never imports torch, trl, duckdb,
psycopg or ray.
"""

from quill_env._version import __version__
from quill_env.canonical import canonical_sql, fingerprint
from quill_env.compare import OrderPolicy, compare_rows
from quill_env.env import SQLOptEnv
from quill_env.errors import (
    BaselineError,
    ConfigError,
    DatabaseError,
    EnvStateError,
    IndexBuildError,
    MissingExtraError,
    QuillError,
    ServeError,
    StoreError,
    SuiteError,
    UnknownNameError,
)
from quill_env.evaluator import EvalOptions, EvalResult, TaskRunner, evaluate
from quill_env.measure import CostMode, WallOptions
from quill_env.registration import register_all
from quill_env.reward import RewardConfig, Verdict, tier_reward
from quill_env.reward_functions import compute_score, reward_fn
from quill_env.tasks import Suite, Task, get_suite, list_suites

register_all()

__all__ = [
    # environment
    "SQLOptEnv",
    # one-call scoring
    "EvalOptions",
    "EvalResult",
    "TaskRunner",
    "evaluate",
    # the reward as a function (TRL, verl and anything else)
    "compute_score",
    "reward_fn",
    # reward and measurement
    "CostMode",
    "RewardConfig",
    "Verdict",
    "WallOptions",
    "tier_reward",
    # verification
    "OrderPolicy",
    "canonical_sql",
    "compare_rows",
    "fingerprint",
    # tasks
    "Suite",
    "Task",
    "get_suite",
    "list_suites",
    # errors
    "BaselineError",
    "ConfigError",
    "DatabaseError",
    "EnvStateError",
    "IndexBuildError",
    "MissingExtraError",
    "QuillError",
    "ServeError",
    "StoreError",
    "SuiteError",
    "UnknownNameError",
    "__version__",
]
