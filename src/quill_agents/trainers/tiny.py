"""A tiny random model for smoke tests and benchmarks, no download.

:func:`build_tiny_model` trains a small byte-level BPE tokenizer on a suite's SQL (and the system
prompt), gives it Qwen2.5's chat template (tool calls included) and saves it, with a randomly
initialized Qwen2 model, to a directory that every trainer accepts as ``model``::

    from quill_agents.trainers import SFTTrainConfig, train_sft
    from quill_agents.trainers.tiny import build_tiny_model

    path = build_tiny_model("/tmp/tiny-qwen2")  # 2 layers, 64 wide: trains on a CPU in seconds
    train_sft(SFTTrainConfig(model=path, use_cpu=True, max_steps=2))

The weights are random, so the model writes garbage: it measures the cost of training steps and
exercises the code paths, nothing more. Pass ``shape`` (``Qwen2Config`` fields) for the cost of
larger models. Like the rest of :mod:`quill_agents.trainers`, importing this module loads none of
torch, transformers or tokenizers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from quill_env.prompt import SYSTEM_PROMPT
from quill_env.tasks import get_suite

TINY_SHAPE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
"""``Qwen2Config`` fields of the tiny model (its ``vocab_size`` is the tokenizer's)."""

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""Qwen2's special tokens: padding, and the chat template's turn delimiters (``<|im_end|>`` = EOS)."""


def tiny_corpus(suite: Any = "shop", extra_texts: Iterable[str] = ()) -> list[str]:
    """The tokenizer's training texts: the system prompt, ``extra_texts`` and a suite's SQL.

    Args:
        suite: a :class:`quill_env.tasks.Suite`, or the name (or directory) of one.
        extra_texts: more texts the tokenizer should encode compactly (tool instructions,
            tool schemas, ...), placed after the system prompt.

    Returns:
        The system prompt, ``extra_texts``, the suite's DDL, then each task's query and reference.
    """
    if isinstance(suite, (str, os.PathLike)):
        suite = get_suite(str(suite))
    corpus = [SYSTEM_PROMPT, *extra_texts, *suite.ddl]
    return corpus + [text for task in suite.tasks for text in (task.query, task.reference or "")]


def build_tiny_tokenizer(corpus: Iterable[str], vocab_size: int = 800) -> Any:
    """A byte-level BPE tokenizer trained on ``corpus``, with Qwen2.5's chat template.

    Args:
        corpus: the training texts (:func:`tiny_corpus`); they are seen three times.
        vocab_size: the BPE vocabulary size, special tokens included.

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` whose EOS is ``<|im_end|>`` and padding
        ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import qwen2_5_chat_template

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        list(corpus) * 3,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    suite: Any = "shop",
    extra_texts: Iterable[str] = (),
    shape: Mapping[str, Any] | None = None,
    dtype: Any = None,
    seed: int = 0,
) -> str:
    """Save a randomly initialized Qwen2 model and its tokenizer to ``path``.

    Args:
        path: the directory to write (created if missing).
        suite: the suite (or its name) whose SQL trains the tokenizer (:func:`tiny_corpus`).
        extra_texts: more tokenizer training texts (:func:`tiny_corpus`).
        shape: ``Qwen2Config`` fields; default :data:`TINY_SHAPE` with the tokenizer's vocabulary.
            A shape without ``vocab_size`` gets the tokenizer's.
        dtype: the weights' torch dtype (default ``torch.float32``).
        seed: the torch seed of the random initialization.

    Returns:
        ``path`` as a string, ready to pass as a trainer config's ``model``.
    """
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    tokenizer = build_tiny_tokenizer(tiny_corpus(suite, extra_texts))
    fields = {"vocab_size": len(tokenizer), **(TINY_SHAPE if shape is None else shape)}
    config = Qwen2Config(**fields, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32 if dtype is None else dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


__all__ = ["SPECIAL_TOKENS", "TINY_SHAPE", "build_tiny_model", "build_tiny_tokenizer", "tiny_corpus"]
