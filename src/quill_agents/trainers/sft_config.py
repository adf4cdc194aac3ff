"""Configuration of supervised fine-tuning on verified rewrites (:mod:`.sft_trainer`)."""

from __future__ import annotations

from dataclasses import dataclass

from quill_agents.trainers.common import TrainConfig, config_field


@dataclass
class SFTTrainConfig(TrainConfig):
    """Supervised fine-tuning on the exported verified set (or the suites' seed set).

    The loss covers the completion tokens only (TRL's ``completion_only_loss``): the model
    learns to write the rewrite, not to reproduce the schema and plan of the prompt.
    Fields beyond :class:`TrainConfig`:
    """

    output_dir: str = config_field(
        "Where the adapter, tokenizer and training report are written.", "outputs/quill-sft"
    )
    num_train_epochs: float = config_field("Passes over the training set (ignored when max_steps > 0).", 3.0)
    packing: bool = config_field("Pack several short examples into one sequence of max_length tokens.", False)

    algorithm = "sft"

    def trl_config(self) -> object:
        """The ``trl.SFTConfig`` of this run."""
        from trl import SFTConfig

        kwargs = {"max_length": self.max_length, "packing": self.packing, "completion_only_loss": True}
        return SFTConfig(**{**kwargs, **self.trl_kwargs()})
