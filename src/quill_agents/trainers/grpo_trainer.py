"""GRPO against the Quill environment, with TRL's ``GRPOTrainer``.

Shao et al., 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models" (Group Relative Policy Optimization): PPO's clipped surrogate objective, with the
advantage of each completion measured against the other completions sampled for the same prompt
instead of a learned value network. The reward is the environment's: every completion is
executed and verified by :class:`~quill_agents.trainers.rewards.EnvironmentReward` in worker
processes. With ``multi_turn=True`` the model may call tools (query plan, dry run) before it
submits, through TRL's ``environment_factory``, and the environment's ``get_reward`` scores it.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from quill_agents.trainers.common import (
    TrainingReport,
    load_model_and_tokenizer,
    lora_config,
    prompt_rows,
    resolve_suites,
    run_and_save,
    select_tasks,
)
from quill_agents.trainers.grpo_config import GRPOTrainConfig, OnlineRLConfig
from quill_agents.trainers.rewards import EnvironmentReward, ToolEpisodeMetrics, tool_environment_factory


def rl_prompt_rows(config: OnlineRLConfig) -> list[dict[str, Any]]:
    """``{"prompt", "task_id"}`` rows of the config's tasks (suites, split, task ids, scale)."""
    pairs = select_tasks(resolve_suites(config.suites), config.split, config.task_ids)
    return prompt_rows(pairs, config.scale)


def environment_reward(config: OnlineRLConfig) -> EnvironmentReward:
    """The environment reward a config asks for (suites, scale, variants, cost, workers)."""
    return EnvironmentReward(
        suites=config.suites,
        scale=config.scale,
        eval_options=config.eval_options(),
        workers=config.reward_workers,
    )


def build_online_trainer(
    trainer_cls: Any,
    config: OnlineRLConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    reward: EnvironmentReward | None = None,
    callbacks: Sequence[Any] = (),
    **trainer_kwargs: Any,
) -> tuple[Any, Any, int, EnvironmentReward | None]:
    """A ready GRPO/RLOO trainer, its tokenizer, the number of prompts and its reward function."""
    from datasets import Dataset

    rows = list(rows) if rows is not None else rl_prompt_rows(config)
    if model is None or tokenizer is None:
        loaded_model, loaded_tokenizer = load_model_and_tokenizer(config)
        model = model if model is not None else loaded_model
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    if "environment_factory" in trainer_kwargs:
        reward_funcs: list[Any] = [ToolEpisodeMetrics()]
        env_reward = None
    else:
        env_reward = reward or environment_reward(config)
        reward_funcs = [env_reward]
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward_funcs,
        args=config.trl_config(),
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "task_id": r["task_id"]} for r in rows]),
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=list(callbacks),
        **trainer_kwargs,
    )
    return trainer, tokenizer, len(rows), env_reward


def build_grpo_trainer(
    config: GRPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    reward: EnvironmentReward | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any, int, EnvironmentReward | None]:
    """A ready ``trl.GRPOTrainer``, its tokenizer, the number of prompts and its reward.

    Args:
        config: the run's configuration.
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer (its chat template must support tools when ``multi_turn``).
        reward: the reward function (built from the config when None; unused in multi-turn
            mode, where the environment's ``get_reward`` is the reward).
        callbacks: extra ``transformers`` callbacks.
    """
    from trl import GRPOTrainer

    extra: dict[str, Any] = {}
    if config.multi_turn:
        extra["environment_factory"] = tool_environment_factory(
            config.suites, config.scale, config.eval_options()
        )
    return build_online_trainer(
        GRPOTrainer,
        config,
        rows,
        model=model,
        tokenizer=tokenizer,
        reward=reward,
        callbacks=callbacks,
        **extra,
    )


def run_online(
    config: OnlineRLConfig,
    trainer: Any,
    tokenizer: Any,
    n: int,
    reward: EnvironmentReward | None,
    owned: bool,
) -> TrainingReport:
    """Train, save and report; the report's ``extra`` holds the environment's verdict counts."""
    try:
        report = run_and_save(config, trainer, tokenizer, n)
        if reward is not None:
            report.extra["verdict_counts"] = dict(collections.Counter(h["verdict"] for h in reward.history))
            report.extra["completions_scored"] = len(reward.history)
            report.write()
    finally:
        if owned and reward is not None:
            reward.close()
    return report


def train_grpo(
    config: GRPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    reward: EnvironmentReward | None = None,
    callbacks: Sequence[Any] = (),
) -> TrainingReport:
    """Train with GRPO against the environment; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer.
        reward: the reward function (built from the config, and closed at the end, when None).
        callbacks: extra ``transformers`` callbacks.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``), whose ``rewards`` are the
        environment's rewards and verdict shares per logging step.
    """
    trainer, tokenizer, n, env_reward = build_grpo_trainer(
        config, rows, model=model, tokenizer=tokenizer, reward=reward, callbacks=callbacks
    )
    return run_online(config, trainer, tokenizer, n, env_reward, owned=reward is None)
