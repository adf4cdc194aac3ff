"""Configuration of REINFORCE Leave-One-Out against the environment (:mod:`.rloo_trainer`)."""

from __future__ import annotations

from dataclasses import dataclass

from quill_agents.trainers.common import config_field
from quill_agents.trainers.grpo_config import OnlineRLConfig


@dataclass
class RLOOTrainConfig(OnlineRLConfig):
    """RLOO (Ahmadian et al., 2024) with the environment's reward.

    Fields beyond :class:`OnlineRLConfig`:
    """

    output_dir: str = config_field(
        "Where the adapter, tokenizer and training report are written.", "outputs/quill-rloo"
    )
    beta: float = config_field("KL coefficient against the reference policy (TRL's RLOO default).", 0.05)
    normalize_advantages: bool = config_field("Divide advantages by their standard deviation.", False)

    algorithm = "rloo"

    def trl_config(self) -> object:
        """The ``trl.RLOOConfig`` of this run."""
        from trl import RLOOConfig

        kwargs = {**self.rl_kwargs(), "normalize_advantages": self.normalize_advantages}
        return RLOOConfig(**{**kwargs, **self.trl_kwargs()})
