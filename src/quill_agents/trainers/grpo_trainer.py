"""GRPO against the Quill environment, with TRL's ``GRPOTrainer``.

Shao et al., 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models" (Group Relative Policy Optimization): PPO's clipped surrogate objective, with the
advantage of each completion measured against the other completions sampled for the same prompt
instead of a learned value network. The reward is the environment's: every completion is
executed and verified by :class:`~quill_agents.trainers.rewards.EnvironmentReward` in worker
processes. With ``multi_turn=True`` the model may call tools (query plan, dry run) before it
submits, through TRL's ``environment_factory``, and the environment's ``get_reward`` scores it;
with ``reward_workers > 0`` the tools are coroutines whose work runs in the reward's worker
processes, and a batch's episodes are scored together, in parallel. The build-and-run path is
shared with RLOO (:mod:`.online`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from quill_agents.trainers.common import TrainingReport
from quill_agents.trainers.grpo_config import GRPOTrainConfig
from quill_agents.trainers.noise import quiet_third_party_noise
from quill_agents.trainers.online import (  # noqa: F401  (rl_prompt_rows ... run_online lived here)
    OnlineOptions,
    OnlineTrainer,
    build_online_trainer,
    environment_reward,
    rl_prompt_rows,
    run_online,
    train_online,
)
from quill_agents.trainers.rewards import tool_environment_factory

if TYPE_CHECKING:
    from typing_extensions import Unpack


def build_grpo_trainer(
    config: GRPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[OnlineOptions],
) -> OnlineTrainer:
    """A ready ``trl.GRPOTrainer``, its tokenizer, the number of prompts and its reward.

    With ``config.multi_turn`` the model calls the environment's tools through TRL's
    ``environment_factory`` (the tokenizer's chat template must support tools) and the
    environment's ``get_reward`` is the reward. With ``config.reward_workers > 0`` the tools
    run in the workers of the returned (or given) reward without blocking the trainer
    (:class:`~quill_agents.trainers.rewards.AsyncSQLToolEnvironment`); with 0 they run in this
    process and the returned reward is None.

    Args:
        config: the run's configuration.
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        **options: ``model``, ``tokenizer``, ``reward`` and ``callbacks`` (see
            :class:`~quill_agents.trainers.online.OnlineOptions`).
    """
    quiet_third_party_noise()
    from trl import GRPOTrainer

    if config.multi_turn:
        reward = options.get("reward")
        if reward is None and config.reward_workers > 0:
            reward = options["reward"] = environment_reward(config)
        options["environment_factory"] = tool_environment_factory(  # type: ignore[typeddict-unknown-key]
            config.suites, config.scale, config.eval_options(), reward=reward
        )
    return build_online_trainer(GRPOTrainer, config, rows, **options)


def train_grpo(
    config: GRPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[OnlineOptions],
) -> TrainingReport:
    """Train with GRPO against the environment; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        **options: ``model``, ``tokenizer``, ``reward`` and ``callbacks``, as for
            :func:`build_grpo_trainer`; a reward built here is closed at the end.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``), whose ``rewards`` are the
        environment's rewards and verdict shares per logging step.
    """
    return train_online(build_grpo_trainer, config, rows, **options)
