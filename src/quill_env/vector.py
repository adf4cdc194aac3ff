"""Vector environments built the way Quill's episodes need (the ids' ``vector_entry_point``).

``gym.make_vec("Quill-v1", num_envs=8)`` comes here: worker processes (``AsyncVectorEnv``, one
database copy per process) or, with ``asynchronous=False``, one process; in both the
``SAME_STEP`` autoreset mode, because Quill's episodes usually last one step and Gymnasium's
default ``NEXT_STEP`` would spend every second step on a reset. Text observations travel
through shared memory unchanged (see :mod:`quill_env.spaces`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from quill_env.env import SQLOptEnv
from quill_env.errors import ConfigError


def make_vec(
    num_envs: int = 1, *, asynchronous: bool = True, context: str | None = None, **kwargs: Any
) -> VectorEnv:
    """``num_envs`` Quill environments with the same arguments, stepped together.

    Args:
        num_envs: how many environments.
        asynchronous: one worker process per environment (``AsyncVectorEnv``); ``False`` runs
            them in this process (``SyncVectorEnv``).
        context: the multiprocessing start method of the workers (``spawn``, ``fork`` ...).
        **kwargs: arguments of :class:`~quill_env.env.SQLOptEnv` (``suite``, ``split``,
            ``cost``, ``max_attempts`` ...).

    Returns:
        A Gymnasium vector environment in ``SAME_STEP`` autoreset mode.

    Raises:
        ConfigError: ``num_envs`` is below 1.

    Example::

        envs = gym.make_vec("Quill-v1", num_envs=4, suite="shop")
        obs, infos = envs.reset(seed=0)
        obs, rewards, terminated, truncated, infos = envs.step(list(obs["query"]))
    """
    if num_envs < 1:
        raise ConfigError("num_envs must be >= 1")
    kwargs.pop("max_episode_steps", None)

    def one() -> gym.Env:
        return SQLOptEnv(**kwargs)

    fns = [one] * num_envs
    if asynchronous:
        return AsyncVectorEnv(fns, context=context, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


__all__ = ["make_vec"]
