"""Configuration of DPO on preference pairs ranked by verified reward (:mod:`.dpo_trainer`)."""

from __future__ import annotations

from dataclasses import dataclass

from quill_agents.trainers.common import TrainConfig, config_field
from quill_env.errors import ConfigError


@dataclass
class DPOTrainConfig(TrainConfig):
    """Direct Preference Optimization on the exported pairs (or the suites' seed pairs).

    Seed pairs prefer each task's reference rewrite over the slow query itself. Fields beyond
    :class:`TrainConfig`:
    """

    output_dir: str = config_field(
        "Where the adapter, tokenizer and training report are written.", "outputs/quill-dpo"
    )
    learning_rate: float = config_field("Peak learning rate.", 5e-5)
    beta: float = config_field("DPO temperature: how far the policy may move from the reference.", 0.1)
    loss_type: str = config_field(
        "TRL DPO loss ('sigmoid' is the paper's; also 'ipo', 'hinge', ...).", "sigmoid"
    )

    algorithm = "dpo"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")

    def trl_config(self) -> object:
        """The ``trl.DPOConfig`` of this run."""
        from trl import DPOConfig

        kwargs = {"max_length": self.max_length, "beta": self.beta, "loss_type": [self.loss_type]}
        return DPOConfig(**{**kwargs, **self.trl_kwargs()})
