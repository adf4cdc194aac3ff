"""Supervised fine-tuning (SFT) of a causal LM on verified rewrites, with TRL's ``SFTTrainer``.

The data are conversational prompt-completion rows (``prompt`` = system and user messages of
:func:`quill_env.prompt.build_messages`, ``completion`` = the assistant's fenced rewrite), either
the export of ``quill_agents.export`` or the seed set built from the suites' reference rewrites.
LoRA by default; QLoRA (4-bit nf4 base, Dettmers et al., 2023, "QLoRA: Efficient Finetuning of
Quantized LLMs") with ``load_in_4bit=True``.
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
from quill_agents.trainers.sft_config import SFTTrainConfig


def build_sft_trainer(
    config: SFTTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any, int]:
    """A ready ``trl.SFTTrainer``, its tokenizer and the number of training rows.

    Args:
        config: the run's configuration.
        rows: prompt-completion rows; the config's dataset (or seed set) when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer (loaded from the config's ``model`` when None).
        callbacks: extra ``transformers`` callbacks.
    """
    from trl import SFTTrainer

    rows = list(rows) if rows is not None else training_rows(config, "sft")
    if model is None or tokenizer is None:
        loaded_model, loaded_tokenizer = load_model_and_tokenizer(config)
        model = model if model is not None else loaded_model
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    trainer = SFTTrainer(
        model=model,
        args=config.trl_config(),
        train_dataset=to_dataset(rows, KIND_COLUMNS["sft"]),
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=list(callbacks),
    )
    return trainer, tokenizer, len(rows)


def train_sft(
    config: SFTTrainConfig,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: Sequence[Any] = (),
) -> TrainingReport:
    """Fine-tune on verified rewrites; save the adapter and ``training_report.json``.

    Args:
        config: the run's configuration (``output_dir`` receives the outputs).
        rows: prompt-completion rows; the config's dataset (or seed set) when None.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer.
        callbacks: extra ``transformers`` callbacks.

    Returns:
        The :class:`TrainingReport` (also written to ``output_dir``).
    """
    trainer, tokenizer, n = build_sft_trainer(
        config, rows, model=model, tokenizer=tokenizer, callbacks=callbacks
    )
    return run_and_save(config, trainer, tokenizer, n)
