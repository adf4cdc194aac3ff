"""Direct Preference Optimization on verified preference pairs, with TRL's ``DPOTrainer``.

Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model". Pairs share a prompt; ``chosen`` earned a higher verified reward than ``rejected``. With
LoRA (the default) the reference model is the base with its adapter disabled, so no second copy
of the weights is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from quill_agents.trainers.common import TrainerOptions, TrainingReport, build_offline_trainer, run_and_save
from quill_agents.trainers.dpo_config import DPOTrainConfig
from quill_agents.trainers.noise import quiet_third_party_noise

if TYPE_CHECKING:
    from typing_extensions import Unpack


class DPOOptions(TrainerOptions, total=False):
    """Keyword arguments of :func:`build_dpo_trainer` and :func:`train_dpo`.

    Those of :class:`~quill_agents.trainers.common.TrainerOptions`, and:

    Attributes:
        ref_model: the frozen reference; None uses the adapter-disabled base (LoRA) or reloads
            the model from its path (full fine-tuning).
    """

    ref_model: Any


def build_dpo_trainer(
    config: DPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[DPOOptions],
) -> tuple[Any, Any, int]:
    """A ready ``trl.DPOTrainer``, its tokenizer and the number of pairs.

    Args:
        config: the run's configuration.
        rows: ``prompt``/``chosen``/``rejected`` rows; the config's dataset (or seed pairs) when None.
        **options: ``model``, ``tokenizer``, ``ref_model`` and ``callbacks`` (see
            :class:`DPOOptions`).
    """
    quiet_third_party_noise()
    from trl import DPOTrainer

    options.setdefault("ref_model", None)
    return build_offline_trainer(DPOTrainer, config, "dpo", rows, **options)


def train_dpo(
    config: DPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[DPOOptions],
) -> TrainingReport:
    """Train on preference pairs; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: preference rows; the config's dataset (or seed pairs) when None.
        **options: ``model``, ``tokenizer``, ``ref_model`` and ``callbacks``, as for
            :func:`build_dpo_trainer`.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``).
    """
    trainer, tokenizer, n = build_dpo_trainer(config, rows, **options)
    return run_and_save(config, trainer, tokenizer, n)
