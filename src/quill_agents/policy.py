"""``PolicyAgent``: rewrites from a causal LM (optionally with a LoRA adapter), batched.

The agent renders each observation with :func:`quill_env.prompt.build_messages` and the model's
chat template, generates in left-padded batches, and takes the SQL out of each completion with
:func:`quill_env.prompt.extract_sql`, so a model trained by :mod:`quill_agents.trainers` sees at
evaluation exactly the format it was trained on. The leaderboard loads it for
``--agent policy:PATH``, where PATH is a model (id or directory) or a trained adapter directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quill_agents.models import load_model, load_tokenizer, require_train_extra
from quill_agents.protocol import BaseAgent, Observation
from quill_env.errors import ConfigError
from quill_env.prompt import build_messages, extract_sql


def _adapter_base(path: str) -> str | None:
    """The base model of a peft adapter directory, or None when ``path`` is not one."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{config} names no base_model_name_or_path; pass the base model explicitly")
    return str(base)


class PolicyAgent(BaseAgent):
    """An agent whose actions are sampled from a causal language model.

    Args:
        model: a model id or directory, a trained adapter directory (its base model is read from
            ``adapter_config.json``), or an already loaded ``transformers`` model.
        adapter: a peft adapter directory to apply on top of ``model``.
        tokenizer: a loaded tokenizer (default: the adapter's, else the model's).
        max_new_tokens: most tokens generated per completion.
        temperature: 0 for greedy decoding, else the sampling temperature.
        top_p: nucleus sampling mass (when sampling).
        batch_size: observations per ``generate`` call.
        max_indexes: the number of ``CREATE INDEX`` statements the prompt allows.
        load_in_4bit: load the base model in 4-bit nf4 (bitsandbytes).
        device: where to run (default: the first GPU if there is one, else the CPU).
        name: the agent's name on the leaderboard.
    """

    def __init__(
        self,
        model: Any,
        adapter: str | None = None,
        *,
        tokenizer: Any = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        batch_size: int = 8,
        max_indexes: int = 3,
        load_in_4bit: bool = False,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        if max_new_tokens < 1 or batch_size < 1 or temperature < 0:
            raise ConfigError("max_new_tokens and batch_size must be >= 1, temperature >= 0")

        require_train_extra(qlora=load_in_4bit)
        import torch

        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.batch_size = batch_size
        self.max_indexes = max_indexes
        if isinstance(model, (str, Path)):
            model = str(model)
            base = _adapter_base(model)
            if base is not None:
                if adapter is not None:
                    raise ConfigError(f"{model} is an adapter directory; pass the base model with adapter=")
                model, adapter = base, model
            self.name = name or f"policy:{adapter or model}"
            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
            if tokenizer is None:
                tokenizer = load_tokenizer(adapter if _has_tokenizer(adapter) else model)
            model = load_model(
                model,
                load_in_4bit=load_in_4bit,
                bf16=bf16,
                device=None if load_in_4bit else device,
                for_training=False,
            )
        else:
            if tokenizer is None:
                raise ConfigError("pass the tokenizer with an already loaded model")
            self.name = name or f"policy:{getattr(model.config, '_name_or_path', 'model')}"
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # --- generation ------------------------------------------------------------------------

    def prompt_text(self, observation: Observation) -> str:
        """The chat-templated prompt of one observation, ending with the assistant's turn."""
        messages = build_messages(observation, max_indexes=self.max_indexes)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(
        self, observations: Sequence[Observation], num_samples: int = 1, temperature: float | None = None
    ) -> list[list[str]]:
        """Raw completions: ``num_samples`` per observation, in order.

        Args:
            observations: ``Quill-v1`` observations.
            num_samples: completions per observation (sampling needs ``temperature > 0``).
            temperature: overrides the agent's temperature for this call.
        """
        import torch

        temperature = self.temperature if temperature is None else temperature
        if num_samples > 1 and temperature == 0:
            raise ConfigError("num_samples > 1 needs temperature > 0 (greedy decoding repeats itself)")
        out: list[list[str]] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(observations), self.batch_size):
            chunk = observations[start : start + self.batch_size]
            texts = [self.prompt_text(o) for o in chunk]
            batch = self.tokenizer(
                texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
            ).to(device)
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "num_return_sequences": num_samples,
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=self.top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                generated = self.model.generate(**batch, **kwargs)
            new = generated[:, batch["input_ids"].shape[1] :]
            decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            out.extend(decoded[i : i + num_samples] for i in range(0, len(decoded), num_samples))
        return out

    def act_batch(self, observations: Sequence[Observation]) -> list[str]:
        """One action per observation: the SQL of the model's (greedy by default) completion."""
        return [extract_sql(samples[0]) for samples in self.generate(observations)]

    def act(self, observation: Observation) -> str:
        """One action for one observation."""
        return self.act_batch([observation])[0]


def _has_tokenizer(path: str | None) -> bool:
    return path is not None and any(
        (Path(path) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
    )


__all__ = ["PolicyAgent"]
