"""Configuration of ReST-EM self-training (:mod:`.restem_trainer`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from quill_agents.trainers.common import config_field
from quill_agents.trainers.sft_config import SFTTrainConfig
from quill_env.errors import ConfigError
from quill_env.measure import CostMode


@dataclass
class ReSTEMConfig(SFTTrainConfig):
    """ReST-EM: sample, keep what the environment accepts, fine-tune from the base, repeat.

    The M-step is supervised fine-tuning with the inherited SFT fields (each iteration writes
    its adapter to ``<output_dir>/iter_<i>``). Fields beyond :class:`SFTTrainConfig`:
    """

    output_dir: str = config_field(
        "Where the per-iteration adapters and the report are written.", "outputs/quill-restem"
    )
    iterations: int = config_field("Most E-step/M-step iterations.", 3)
    samples_per_task: int = config_field("Rewrites sampled per training task in each E-step (k).", 8)
    threshold: float = config_field("Keep sampled rewrites whose environment reward is at least this.", 0.25)
    sample_temperature: float = config_field("Sampling temperature of the E-step.", 0.7)
    max_new_tokens: int = config_field("Most new tokens per sampled rewrite.", 512)
    generation_batch_size: int = config_field("Prompts per generate call.", 8)
    include_seed: bool = config_field("Train each M-step on the kept samples plus the seed set.", True)
    test_split: str = config_field("Split evaluated (greedy) after each iteration.", "test")
    patience: int = config_field("Stop after this many iterations without a better test reward.", 1)
    min_delta: float = config_field("Smallest gain of the mean test reward that counts as better.", 0.0)
    eval_base: bool = config_field("Evaluate the base model first, so iteration 1 must beat it.", True)
    reward_workers: int = config_field("Worker processes that evaluate rewrites (0: in this process).", 4)
    reward_ray: str | None = config_field(
        "Ray cluster whose actors are the reward's workers ('local', 'auto', 'host:port'; None: processes).",
        None,
    )
    num_variants: int | None = config_field(
        "Variant databases each rewrite must also match (None: every mutation, 0 disables them).", None
    )
    cost: CostMode = config_field("Cost mode of the reward: 'work' (deterministic) or 'wall'.", CostMode.WORK)

    algorithm = "restem"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.cost = CostMode.parse(self.cost)
        if self.iterations < 1 or self.samples_per_task < 1 or self.patience < 1:
            raise ConfigError("iterations, samples_per_task and patience must be >= 1")
        if self.sample_temperature <= 0:
            raise ConfigError("sample_temperature must be positive (the E-step samples)")
        if self.test_split not in ("train", "test", "all"):
            raise ConfigError(f"test_split must be train, test or all, got {self.test_split!r}")

    def eval_options(self) -> dict[str, Any]:
        """The :class:`quill_env.EvalOptions` fields of the reward."""
        return {"num_variants": self.num_variants, "cost": self.cost}

    def m_step_config(self, iteration: int) -> SFTTrainConfig:
        """The SFT config of the M-step of ``iteration`` (outputs in ``iter_<iteration>``)."""
        names = {f.name for f in dataclasses.fields(SFTTrainConfig)}
        values = {k: v for k, v in dataclasses.asdict(self).items() if k in names}
        values["output_dir"] = f"{self.output_dir.rstrip('/')}/iter_{iteration}"
        return SFTTrainConfig(**values)
