"""Trainers on Hugging Face TRL: SFT, DPO, GRPO, RLOO and ReST-EM, with LoRA/QLoRA.

Each algorithm pairs a config dataclass (``<algo>_config.py``, help text on every field) with a
``train_<algo>`` function (``<algo>_trainer.py``) that saves an adapter and a training report::

    from quill_agents.trainers import SFTTrainConfig, train_sft

    report = train_sft(SFTTrainConfig(model="Qwen/Qwen2.5-Coder-7B-Instruct", load_in_4bit=True))

Importing this package does not import torch, transformers, trl or peft; they load when a
trainer runs (install them with ``pip install "quill-sql[train]"``, plus ``[qlora]`` for 4-bit).
"""

from quill_agents.trainers.common import DEFAULT_MODEL, TrainConfig, TrainingReport
from quill_agents.trainers.dpo_config import DPOTrainConfig
from quill_agents.trainers.dpo_trainer import build_dpo_trainer, train_dpo
from quill_agents.trainers.grpo_config import GRPOTrainConfig, OnlineRLConfig
from quill_agents.trainers.grpo_trainer import build_grpo_trainer, train_grpo
from quill_agents.trainers.restem_config import ReSTEMConfig
from quill_agents.trainers.restem_trainer import train_restem
from quill_agents.trainers.rewards import EnvironmentReward, SQLToolEnvironment, tool_environment_factory
from quill_agents.trainers.rloo_config import RLOOTrainConfig
from quill_agents.trainers.rloo_trainer import build_rloo_trainer, train_rloo
from quill_agents.trainers.sft_config import SFTTrainConfig
from quill_agents.trainers.sft_trainer import build_sft_trainer, train_sft

CONFIGS = {
    "sft": SFTTrainConfig,
    "dpo": DPOTrainConfig,
    "grpo": GRPOTrainConfig,
    "rloo": RLOOTrainConfig,
    "restem": ReSTEMConfig,
}
"""Config class of each algorithm (what ``quill train <algo>`` builds)."""

TRAINERS = {
    "sft": train_sft,
    "dpo": train_dpo,
    "grpo": train_grpo,
    "rloo": train_rloo,
    "restem": train_restem,
}
"""Training entry point of each algorithm."""

__all__ = [
    "CONFIGS",
    "DEFAULT_MODEL",
    "TRAINERS",
    # configs
    "DPOTrainConfig",
    "GRPOTrainConfig",
    "OnlineRLConfig",
    "RLOOTrainConfig",
    "ReSTEMConfig",
    "SFTTrainConfig",
    "TrainConfig",
    # trainers
    "build_dpo_trainer",
    "build_grpo_trainer",
    "build_rloo_trainer",
    "build_sft_trainer",
    "train_dpo",
    "train_grpo",
    "train_restem",
    "train_rloo",
    "train_sft",
    # environment reward
    "EnvironmentReward",
    "SQLToolEnvironment",
    "tool_environment_factory",
    # results
    "TrainingReport",
]
