"""Loading causal LMs and their tokenizers (the ``train`` extra), for the trainers and ``PolicyAgent``.

Importing this module imports none of torch, transformers, peft or bitsandbytes; each function
imports what it needs and :func:`require_train_extra` names the extra to install when one is absent.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from quill_env.errors import ConfigError, MissingExtraError


def require_train_extra(qlora: bool = False) -> None:
    """Raise a :class:`MissingExtraError` naming the extra when a training dependency is absent."""
    needed = ["torch", "transformers", "trl", "peft", "datasets", "accelerate"]
    if qlora:
        needed.append("bitsandbytes")
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(module, "qlora" if module == "bitsandbytes" else "train")


def compute_dtype(bf16: bool) -> Any:
    """The torch dtype of weights and 4-bit compute (bfloat16 when training in bf16, else float32)."""
    import torch

    return torch.bfloat16 if bf16 else torch.float32


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a model, with a pad token (the EOS token when the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise ConfigError(
            f"the tokenizer of {name_or_path!r} has no chat template; Quill's prompts are chat messages "
            "(use an instruction-tuned model or set tokenizer.chat_template)"
        )
    return tokenizer


def quantization_config(bf16: bool) -> Any:
    """The QLoRA quantization: 4-bit nf4 with double quantization (Dettmers et al., 2023)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(bf16),
    )


def load_model(
    name_or_path: str,
    *,
    load_in_4bit: bool = False,
    bf16: bool = False,
    trust_remote_code: bool = False,
    device: str | None = None,
    for_training: bool = True,
    gradient_checkpointing: bool = False,
) -> Any:
    """Load a causal LM (any hub id or local path), optionally quantized to 4-bit nf4.

    Args:
        name_or_path: a Hugging Face model id or a local directory.
        load_in_4bit: QLoRA's 4-bit nf4 weights through bitsandbytes.
        bf16: load the weights in bfloat16 (else float32).
        trust_remote_code: allow custom model code from the hub.
        device: where to place the model (a 4-bit model goes to the first GPU if there is one).
        for_training: prepare a 4-bit model for k-bit training (peft).
        gradient_checkpointing: let that preparation enable gradient checkpointing.

    Returns:
        A ``transformers`` ``PreTrainedModel``.
    """
    require_train_extra(qlora=load_in_4bit)
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": compute_dtype(bf16), "trust_remote_code": trust_remote_code}
    if load_in_4bit:
        kwargs["quantization_config"] = quantization_config(bf16)
        if device is None and torch.cuda.is_available():
            kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    if load_in_4bit and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif device is not None:
        model = model.to(device)
    return model
