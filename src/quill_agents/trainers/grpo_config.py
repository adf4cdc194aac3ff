"""Configuration of online RL against the environment: GRPO (:mod:`.grpo_trainer`) and RLOO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quill_agents.trainers.common import TrainConfig, config_field
from quill_env.errors import ConfigError
from quill_env.measure import CostMode


@dataclass
class OnlineRLConfig(TrainConfig):
    """Fields shared by the online RL trainers (GRPO, RLOO): sampling and the environment reward.

    Prompts come from the suites' tasks (``task_id`` travels as a dataset column so the reward
    function knows which task each completion answers).
    """

    learning_rate: float = config_field("Peak learning rate.", 1e-5)
    per_device_train_batch_size: int = config_field(
        "Completions per device per forward pass (a multiple of num_generations per generation batch).", 8
    )
    gradient_accumulation_steps: int = config_field("Forward passes per optimizer step.", 4)
    num_generations: int = config_field("Completions sampled per prompt (the group of the baseline).", 8)
    max_completion_length: int = config_field("Most new tokens per completion.", 512)
    temperature: float = config_field("Sampling temperature of the rollouts.", 1.0)
    beta: float = config_field("KL coefficient against the reference policy (0 disables the reference).", 0.0)
    epsilon: float = config_field("PPO clipping range of the policy ratio.", 0.2)
    num_iterations: int = config_field("PPO epochs over each generation batch (mu).", 1)
    reward_workers: int = config_field(
        "Worker processes that evaluate completions in parallel (0: in the training process).", 4
    )
    reward_ray: str | None = config_field(
        "Ray cluster whose actors are the reward's workers ('local', 'auto', 'host:port'; None: processes).",
        None,
    )
    num_variants: int | None = config_field(
        "Variant databases each rewrite must also match (None: every mutation, 0 disables them).", None
    )
    cost: CostMode = config_field("Cost mode of the reward: 'work' (deterministic) or 'wall'.", CostMode.WORK)
    log_completions: bool = config_field("Log a table of sampled completions with their rewards.", False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.cost = CostMode.parse(self.cost)
        if self.num_generations < 2:
            raise ConfigError("num_generations must be >= 2 (the baseline is the group's other samples)")
        if self.max_completion_length < 1 or self.num_iterations < 1:
            raise ConfigError("max_completion_length and num_iterations must be >= 1")
        if self.temperature <= 0 or self.epsilon <= 0 or self.beta < 0:
            raise ConfigError("temperature and epsilon must be positive, beta non-negative")
        if self.reward_workers < 0:
            raise ConfigError("reward_workers must be >= 0")
        if self.reward_ray is not None and self.reward_workers == 0:
            raise ConfigError("reward_ray needs reward_workers >= 1 (the number of actors)")
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ConfigError(
                f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be a multiple "
                f"of num_generations ({self.num_generations})"
            )

    def eval_options(self) -> dict[str, Any]:
        """The :class:`quill_env.EvalOptions` fields of the reward."""
        return {"num_variants": self.num_variants, "cost": self.cost}

    def rl_kwargs(self) -> dict[str, Any]:
        """TRL config fields shared by ``GRPOConfig`` and ``RLOOConfig``."""
        return {
            "num_generations": self.num_generations,
            "max_completion_length": self.max_completion_length,
            "temperature": self.temperature,
            "beta": self.beta,
            "epsilon": self.epsilon,
            "num_iterations": self.num_iterations,
            "log_completions": self.log_completions,
        }


@dataclass
class GRPOTrainConfig(OnlineRLConfig):
    """GRPO (Shao et al., 2024) with the environment's reward; optionally multi-turn with tools.

    Fields beyond :class:`OnlineRLConfig`:
    """

    output_dir: str = config_field(
        "Where the adapter, tokenizer and training report are written.", "outputs/quill-grpo"
    )
    multi_turn: bool = config_field(
        "Let the model call tools (query_plan, dry_run, submit) through TRL's environment_factory; "
        "the environment's get_reward scores the submitted rewrite.",
        False,
    )
    max_tool_calling_iterations: int = config_field("Most tool-calling rounds per multi-turn rollout.", 4)
    loss_type: str | None = config_field(
        "TRL GRPO loss ('dapo', 'grpo', 'dr_grpo', ...); TRL's default if unset."
    )

    algorithm = "grpo"

    def trl_config(self) -> object:
        """The ``trl.GRPOConfig`` of this run."""
        from trl import GRPOConfig

        kwargs = self.rl_kwargs()
        if self.loss_type:
            kwargs["loss_type"] = self.loss_type
        if self.multi_turn:
            kwargs["max_tool_calling_iterations"] = self.max_tool_calling_iterations
            kwargs["reward_weights"] = [0.0]  # ToolEpisodeMetrics only logs; get_reward is the reward
        return GRPOConfig(**{**kwargs, **self.trl_kwargs()})
