"""Supervised fine-tuning (SFT) of a causal LM on verified rewrites, with TRL's ``SFTTrainer``.

The data are conversational prompt-completion rows (``prompt`` = system and user messages of
:func:`quill_env.prompt.build_messages`, ``completion`` = the assistant's fenced rewrite), either
the export of ``quill_agents.export`` or the seed set built from the suites' reference rewrites.
LoRA by default; QLoRA (4-bit nf4 base, Dettmers et al., 2023, "QLoRA: Efficient Finetuning of
Quantized LLMs") with ``load_in_4bit=True``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from quill_agents.trainers.common import TrainerOptions, TrainingReport, build_offline_trainer, run_and_save
from quill_agents.trainers.noise import quiet_third_party_noise
from quill_agents.trainers.sft_config import SFTTrainConfig

if TYPE_CHECKING:
    from typing_extensions import Unpack


def build_sft_trainer(
    config: SFTTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[TrainerOptions],
) -> tuple[Any, Any, int]:
    """A ready ``trl.SFTTrainer``, its tokenizer and the number of training rows.

    Args:
        config: the run's configuration.
        rows: prompt-completion rows; the config's dataset (or seed set) when None.
        **options: ``model``, ``tokenizer`` and ``callbacks`` (see
            :class:`~quill_agents.trainers.common.TrainerOptions`).
    """
    quiet_third_party_noise()
    from trl import SFTTrainer

    return build_offline_trainer(SFTTrainer, config, "sft", rows, **options)


def train_sft(
    config: SFTTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **options: Unpack[TrainerOptions],
) -> TrainingReport:
    """Fine-tune on verified rewrites; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: prompt-completion rows; the config's dataset (or seed set) when None.
        **options: ``model``, ``tokenizer`` and ``callbacks``, as for :func:`build_sft_trainer`.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``).
    """
    trainer, tokenizer, n = build_sft_trainer(config, rows, **options)
    return run_and_save(config, trainer, tokenizer, n)
