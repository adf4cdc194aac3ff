"""REINFORCE Leave-One-Out against the Quill environment, with TRL's ``RLOOTrainer``.

Ahmadian et al., 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs": each completion's baseline is the mean reward of the other completions of
its prompt; TRL's implementation adds PPO's clipped objective (``epsilon``, ``num_iterations``).
The reward is the environment's, and the build-and-run path is GRPO's (:mod:`.online`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from quill_agents.trainers.common import TrainingReport
from quill_agents.trainers.noise import quiet_third_party_noise
from quill_agents.trainers.online import OnlineOptions, OnlineTrainer, build_online_trainer, train_online
from quill_agents.trainers.rloo_config import RLOOTrainConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack


def build_rloo_trainer(
    config: RLOOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[OnlineOptions],
) -> OnlineTrainer:
    """A ready ``trl.RLOOTrainer``, its tokenizer, the number of prompts and its reward.

    Args:
        config: the run's configuration.
        rows: ``{"prompt", "task_id"}`` rows; the config's suite tasks when None.
        **options: ``model``, ``tokenizer``, ``reward`` and ``callbacks`` (see
            :class:`~quill_agents.trainers.online.OnlineOptions`).
    """
    quiet_third_party_noise()
    from trl import RLOOTrainer

    return build_online_trainer(RLOOTrainer, config, rows, **options)


def train_rloo(
    config: RLOOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[OnlineOptions],
) -> TrainingReport:
    """Train with RLOO against the environment; save the adapter and ``training_report.json``.

    Args:
        config: the RLOO run's configuration; ``output_dir`` receives the outputs.
        rows: as for :func:`build_rloo_trainer`.
        **options: as for :func:`build_rloo_trainer` (a reward built here is closed at the end).

    Returns:
        The :class:`TrainingReport` of the run, as :func:`~quill_agents.trainers.online.train_online`
        writes it.
    """
    return train_online(build_rloo_trainer, config, rows, **options)
