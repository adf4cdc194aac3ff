"""Direct Preference Optimization on verified preference pairs, with TRL's ``DPOTrainer``.

Rafailov et al., 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model". Pairs share a prompt; ``chosen`` earned a higher verified reward than ``rejected``. With
LoRA (the default) the reference model is the base with its adapter disabled, so no second copy
of the weights is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quill_agents.trainers.common import (
    KIND_COLUMNS,
    TrainingReport,
    load_model_and_tokenizer,
    lora_config,
    run_and_save,
    to_dataset,
    training_rows,
)
from quill_agents.trainers.dpo_config import DPOTrainConfig


def build_dpo_trainer(
    config: DPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    ref_model: Any = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any, int]:
    """A ready ``trl.DPOTrainer``, its tokenizer and the number of pairs.

    Args:
        config: the run's configuration.
        rows: ``prompt``/``chosen``/``rejected`` rows; the config's dataset (or seed pairs) when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer.
        ref_model: the frozen reference; None uses the adapter-disabled base (LoRA) or reloads
            the model from its path (full fine-tuning).
        callbacks: extra ``transformers`` callbacks.
    """
    from trl import DPOTrainer

    rows = list(rows) if rows is not None else training_rows(config, "dpo")
    if model is None or tokenizer is None:
        loaded_model, loaded_tokenizer = load_model_and_tokenizer(config)
        model = model if model is not None else loaded_model
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=config.trl_config(),
        train_dataset=to_dataset(rows, KIND_COLUMNS["dpo"]),
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=list(callbacks),
    )
    return trainer, tokenizer, len(rows)


def train_dpo(
    config: DPOTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    ref_model: Any = None,
    callbacks: Sequence[Any] = (),
) -> TrainingReport:
    """Train on preference pairs; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: preference rows; the config's dataset (or seed pairs) when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer.
        ref_model: the frozen reference model (see :func:`build_dpo_trainer`).
        callbacks: extra ``transformers`` callbacks.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``).
    """
    trainer, tokenizer, n = build_dpo_trainer(
        config, rows, model=model, tokenizer=tokenizer, ref_model=ref_model, callbacks=callbacks
    )
    return run_and_save(config, trainer, tokenizer, n)
