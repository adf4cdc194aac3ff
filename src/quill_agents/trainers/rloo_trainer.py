"""REINFORCE Leave-One-Out against the Quill environment, with TRL's ``RLOOTrainer``.

Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs": each completion's baseline is the mean reward of the other completions of
its prompt; TRL's implementation adds PPO's clipped objective (``epsilon``, ``num_iterations``).
The reward is the environment's, as for GRPO (:mod:`.grpo_trainer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quill_agents.trainers.common import TrainingReport
from quill_agents.trainers.grpo_trainer import build_online_trainer, run_online
from quill_agents.trainers.rewards import EnvironmentReward
from quill_agents.trainers.rloo_config import RLOOTrainConfig


def build_rloo_trainer(
    config: RLOOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    reward: EnvironmentReward | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any, int, EnvironmentReward | None]:
    """A ready ``trl.RLOOTrainer``, its tokenizer, the number of prompts and its reward.

    Args:
        config: the run's configuration.
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer.
        reward: the reward function (built from the config when None).
        callbacks: extra ``transformers`` callbacks.
    """
    from trl import RLOOTrainer

    return build_online_trainer(
        RLOOTrainer, config, rows, model=model, tokenizer=tokenizer, reward=reward, callbacks=callbacks
    )


def train_rloo(
    config: RLOOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    reward: EnvironmentReward | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainingReport:
    """Train with RLOO against the environment; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer.
        reward: the reward function (built from the config, and closed at the end, when None).
        callbacks: extra ``transformers`` callbacks.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``).
    """
    trainer, tokenizer, n, env_reward = build_rloo_trainer(
        config, rows, model=model, tokenizer=tokenizer, reward=reward, callbacks=callbacks
    )
    return run_online(config, trainer, tokenizer, n, env_reward, owned=reward is None)
