"""What the online RL trainers (GRPO, RLOO) share: prompts, the environment reward, build and run.

Both sample completions of suite-task prompts and score them with the environment
(:class:`~quill_agents.trainers.rewards.EnvironmentReward`); they differ only in the TRL trainer
class, its config and, for multi-turn GRPO, the tool environment. :mod:`.grpo_trainer` and
:mod:`.rloo_trainer` pass those to :func:`build_online_trainer` and :func:`train_online`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from quill_agents.trainers.common import (
    TrainerOptions,
    TrainingReport,
    build_trl_trainer,
    prompt_rows,
    resolve_model_and_tokenizer,
    resolve_suites,
    run_and_save,
    select_tasks,
)
from quill_agents.trainers.grpo_config import OnlineRLConfig
from quill_agents.trainers.rewards import EnvironmentReward, ToolEpisodeMetrics

if TYPE_CHECKING:
    from typing_extensions import Unpack

PROMPT_COLUMNS = ("prompt", "task_id")
"""The dataset columns of online RL: the prompt, and the task the reward function evaluates."""

OnlineTrainer = tuple[Any, Any, int, EnvironmentReward | None]
"""What the online builders return: the trainer, its tokenizer, the number of prompts, the reward."""


class OnlineOptions(TrainerOptions, total=False):
    """Keyword arguments of the GRPO and RLOO ``build_*_trainer`` and ``train_*`` functions.

    Those of :class:`~quill_agents.trainers.common.TrainerOptions`, and:

    Attributes:
        reward: the environment reward function; built from the config (and, by ``train_*``,
            closed at the end) when None. In multi-turn mode the environment's ``get_reward`` is
            the reward, and this one's workers run the tools and score the episodes.
    """

    reward: EnvironmentReward | None


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
        ray_address=config.reward_ray,
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
) -> OnlineTrainer:
    """A ready GRPO/RLOO trainer, its tokenizer, the number of prompts and its reward function.

    Args:
        trainer_cls: ``trl.GRPOTrainer`` or ``trl.RLOOTrainer``.
        config: the run's configuration (its ``trl_config()`` gives the trainer's ``args``).
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer (its chat template must support tools in multi-turn mode).
        reward: the reward function (built from the config when None). In multi-turn mode,
            where the environment's ``get_reward`` is the reward, it is the one whose workers
            the tool environment uses (None when the tools run in this process).
        callbacks: extra ``transformers`` callbacks.
        **trainer_kwargs: further arguments of ``trainer_cls``; an ``environment_factory``
            selects multi-turn mode, whose only reward function logs the episodes' metrics.

    Returns:
        ``(trainer, tokenizer, number of prompts, environment reward or None)``.
    """
    rows = list(rows) if rows is not None else rl_prompt_rows(config)
    model, tokenizer = resolve_model_and_tokenizer(config, model, tokenizer)
    if "environment_factory" in trainer_kwargs:
        reward_funcs: list[Any] = [ToolEpisodeMetrics()]  # first: it scores a batch's episodes at once
        env_reward = reward
    else:
        env_reward = reward or environment_reward(config)
        reward_funcs = [env_reward]
    trainer, tokenizer = build_trl_trainer(
        trainer_cls,
        config,
        rows,
        PROMPT_COLUMNS,
        model=model,
        tokenizer=tokenizer,
        callbacks=callbacks,
        reward_funcs=reward_funcs,
        **trainer_kwargs,
    )
    return trainer, tokenizer, len(rows), env_reward


def run_online(
    config: OnlineRLConfig,
    trainer: Any,
    tokenizer: Any,
    n: int,
    reward: EnvironmentReward | None,
    owned: bool,
) -> TrainingReport:
    """Train, save and report; the report's ``extra`` holds the environment's verdict counts.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        trainer: the trainer of :func:`build_online_trainer`.
        tokenizer: its tokenizer (saved with the adapter).
        n: the number of prompts.
        reward: the environment reward whose history gives the verdict counts (None when
            multi-turn tools run in the training process).
        owned: close ``reward`` at the end (it was built for this run).

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``).
    """
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


def train_online(
    build: Callable[..., OnlineTrainer],
    config: OnlineRLConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[OnlineOptions],
) -> TrainingReport:
    """Build a trainer with ``build``, train it against the environment, save and report.

    Args:
        build: :func:`~quill_agents.trainers.grpo_trainer.build_grpo_trainer` or
            :func:`~quill_agents.trainers.rloo_trainer.build_rloo_trainer`.
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        **options: ``model``, ``tokenizer``, ``reward`` and ``callbacks`` (see
            :class:`OnlineOptions`); a reward built here is closed at the end.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``), whose ``rewards`` are the
        environment's rewards and verdict shares per logging step.
    """
    trainer, tokenizer, n, env_reward = build(config, rows, **options)
    return run_online(config, trainer, tokenizer, n, env_reward, owned=options.get("reward") is None)


__all__ = [
    "PROMPT_COLUMNS",
    "OnlineOptions",
    "OnlineTrainer",
    "build_online_trainer",
    "environment_reward",
    "rl_prompt_rows",
    "run_online",
    "train_online",
]
