"""What every Quill trainer shares: the base config, model loading, datasets and the report.

Nothing heavy is imported at module level: torch, transformers, peft and datasets load inside
the functions that need them, so ``quill --help`` and ``import quill_agents.trainers`` stay fast.

* :class:`TrainConfig`: model, LoRA/QLoRA, data and optimisation fields common to all trainers
  (each ``<algo>_config.py`` extends it); :meth:`TrainConfig.trl_kwargs` maps it onto TRL's
  ``TrainingArguments`` fields.
* :func:`load_model` (from :mod:`quill_agents.models`): any causal LM id or local path,
  optionally 4-bit nf4 (QLoRA); :func:`lora_config`: the peft ``LoraConfig`` (LoRA is the default).
* :func:`build_trl_trainer`: a TRL trainer of a config (model, TRL config, LoRA, dataset);
  :func:`build_offline_trainer`: the same on SFT or DPO rows (the online RL path is
  :mod:`.online`).
* Datasets: :func:`load_jsonl` reads the export of ``quill_agents.export``; :func:`seed_sft_rows`,
  :func:`seed_dpo_rows` and :func:`prompt_rows` build rows straight from suite tasks.
* :class:`TrainingReport`: steps, losses/rewards, time, tokens/s and peak memory, written as
  ``training_report.json`` next to the adapter.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from quill_agents.heldout import check_schemas, held_out_schemas
from quill_agents.models import load_model, load_tokenizer
from quill_agents.trainers.model_card import REPORT_NAME, write_model_card
from quill_env.errors import ConfigError
from quill_env.evaluator import EvalOptions, TaskRunner
from quill_env.prompt import build_messages, format_completion
from quill_env.tasks import Suite, Task, resolve_suites, select_tasks

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-Coder-7B-Instruct"
"""The default base model: Qwen2.5 7B Coder Instruct (any causal LM id or local path works)."""


def config_field(text: str, default: Any = None, **kw: Any) -> Any:
    """A dataclass field with TRL-style help text."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


@dataclass
class TrainConfig:
    """Fields shared by every Quill trainer (model, adapters, data, optimisation, output).

    Every field carries its help text in ``metadata["help"]``; the CLI is generated from them.
    Fields that TRL's configs expose but Quill does not (warm-up, scheduler, ...) can be set
    through ``trl_args``.
    """

    # --- model -------------------------------------------------------------------------------
    model: str = config_field(
        "Base model: a Hugging Face id or a local path of any causal LM.", DEFAULT_MODEL
    )
    use_lora: bool = config_field("Train a LoRA adapter (default) instead of all weights.", True)
    load_in_4bit: bool = config_field(
        "QLoRA: load the base model in 4-bit nf4 through bitsandbytes (implies use_lora).", False
    )
    lora_r: int = config_field("LoRA rank.", 16)
    lora_alpha: int = config_field("LoRA scaling alpha.", 32)
    lora_dropout: float = config_field("Dropout on the LoRA branch.", 0.05)
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Modules that get LoRA adapters ('all-linear' = every linear layer but the head)."},
    )
    trust_remote_code: bool = config_field("Allow custom model code from the hub.", False)
    # --- data --------------------------------------------------------------------------------
    dataset: str | None = config_field(
        "Exported JSONL (quill_agents.export). Without it the seed set is built from the suites' "
        "reference rewrites.",
        None,
    )
    suites: list[str] | None = field(
        default=None,
        metadata={
            "help": "Suites (names or directories) giving prompts and the seed set; all shipped if unset."
        },
    )
    split: str = config_field("Task split to train on: train, test or all.", "train")
    include_test_schemas: bool = config_field(
        "Train on an exported dataset even when its export.json lists held-out test schemas "
        "(clinic, logistics): refused by default, since such data overlaps the test split.",
        False,
    )
    scale: str | None = config_field(
        "Data scale of the task databases (small/medium/large); suite default if unset."
    )
    task_ids: list[str] | None = field(
        default=None, metadata={"help": "Restrict training to these task ids."}
    )
    max_length: int = config_field(
        "Longest tokenized prompt+completion; longer examples are truncated.", 2048
    )
    # --- optimisation ------------------------------------------------------------------------
    output_dir: str = config_field(
        "Where the adapter, tokenizer and training report are written.", "outputs/quill"
    )
    learning_rate: float = config_field("Peak learning rate.", 2e-4)
    num_train_epochs: float = config_field("Passes over the training set (ignored when max_steps > 0).", 1.0)
    max_steps: int = config_field("Stop after this many optimizer steps (-1: use num_train_epochs).", -1)
    per_device_train_batch_size: int = config_field("Examples per device per forward pass.", 1)
    gradient_accumulation_steps: int = config_field("Forward passes per optimizer step.", 8)
    gradient_checkpointing: bool = config_field(
        "Recompute activations in the backward pass to save memory (TRL's default; off is faster).", True
    )
    logging_steps: int = config_field("Log every this many steps.", 10)
    seed: int = config_field("Random seed.", 42)
    bf16: bool | None = config_field(
        "Train in bfloat16; automatic (on when a CUDA GPU supports it) if unset."
    )
    use_cpu: bool = config_field("Train on the CPU even when a GPU is present.", False)
    report_to: str = config_field(
        "Experiment tracker for TRL/transformers logs ('none', 'wandb', ...).", "none"
    )
    trl_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Extra fields passed verbatim to the TRL config (KEY=VALUE)."}
    )

    algorithm = "train"
    """The algorithm name (set by subclasses)."""

    def __post_init__(self) -> None:
        if self.load_in_4bit:
            self.use_lora = True
        if self.split not in ("train", "test", "all"):
            raise ConfigError(f"split must be train, test or all, got {self.split!r}")
        for name in ("lora_r", "lora_alpha", "max_length", "per_device_train_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gradient_accumulation_steps < 1 or self.logging_steps < 1:
            raise ConfigError("gradient_accumulation_steps and logging_steps must be >= 1")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.max_steps == 0 or (self.max_steps < 0 and self.num_train_epochs <= 0):
            raise ConfigError("set max_steps > 0 or num_train_epochs > 0")
        if isinstance(self.lora_target_modules, str):
            self.lora_target_modules = [self.lora_target_modules]

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-serializable dict."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def resolved_bf16(self) -> bool:
        """Whether training runs in bfloat16 (the automatic choice when ``bf16`` is unset)."""
        if self.bf16 is not None:
            return self.bf16
        import torch

        return (not self.use_cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()

    def trl_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of TRL's config classes that this config sets (plus ``trl_args``)."""
        bf16 = self.resolved_bf16()
        logging_steps = self.logging_steps
        if 0 < self.max_steps < logging_steps:
            logging_steps = self.max_steps  # else a short run never logs a loss
        kwargs: dict[str, Any] = {
            "output_dir": self.output_dir,
            "learning_rate": self.learning_rate,
            "num_train_epochs": self.num_train_epochs,
            "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            _checkpointing_field(): self.gradient_checkpointing,
            "logging_steps": logging_steps,
            "seed": self.seed,
            "bf16": bf16,
            "use_cpu": self.use_cpu,
            "report_to": self.report_to,
            "save_strategy": "no",
            "dataloader_pin_memory": not self.use_cpu and _accelerator_available(),
        }
        kwargs.update(self.trl_args)
        return kwargs


def _checkpointing_field() -> str:
    """``activation_checkpointing`` where transformers has it (5.x), else ``gradient_checkpointing``."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _accelerator_available() -> bool:
    """Whether torch sees an accelerator (pinned memory helps only then)."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return bool(accelerator.is_available())
    return bool(torch.cuda.is_available())


def lora_config(config: TrainConfig) -> Any:
    """The peft ``LoraConfig`` of a training config, or None when training all weights."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    targets: Any = config.lora_target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def load_model_and_tokenizer(config: TrainConfig) -> tuple[Any, Any]:
    """The base model and tokenizer a training config names."""
    tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
    model = load_model(
        config.model,
        load_in_4bit=config.load_in_4bit,
        bf16=config.resolved_bf16(),
        trust_remote_code=config.trust_remote_code,
        gradient_checkpointing=config.gradient_checkpointing,
    )
    return model, tokenizer


def resolve_model_and_tokenizer(
    config: TrainConfig, model: Any = None, tokenizer: Any = None
) -> tuple[Any, Any]:
    """The given model and tokenizer, loading the config's ``model`` when either is None.

    Args:
        config: the run's configuration (its ``model`` is loaded when something is missing).
        model: an already loaded model, or None.
        tokenizer: its tokenizer, or None.

    Returns:
        ``(model, tokenizer)``: the given ones where set, the loaded ones otherwise.
    """
    if model is None or tokenizer is None:
        loaded_model, loaded_tokenizer = load_model_and_tokenizer(config)
        model = model if model is not None else loaded_model
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    return model, tokenizer


def trainable_parameters(model: Any) -> dict[str, int]:
    """Counts of trainable and total parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": int(trainable), "total": int(total)}


# --- tasks and datasets ------------------------------------------------------------------------


def observation_of(suite: Suite, task: Task, scale: str | None = None) -> dict[str, str]:
    """The ``Quill-v1`` observation of a suite task (schema, query, plan) at ``scale``."""
    runner = TaskRunner.from_suite(suite, task, scale, EvalOptions(num_variants=0))
    try:
        return runner.observation()
    finally:
        runner.close()


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def prompt_rows(pairs: Iterable[tuple[Suite, Task]], scale: str | None = None) -> list[dict[str, Any]]:
    """Prompt-only rows for online RL: ``{"prompt": messages, "task_id": id}``."""
    return [{"prompt": build_messages(observation_of(s, t, scale)), "task_id": t.id} for s, t in pairs]


def seed_sft_rows(pairs: Iterable[tuple[Suite, Task]], scale: str | None = None) -> list[dict[str, Any]]:
    """The seed SFT set: each task's prompt with its reference rewrite as the completion."""
    rows = []
    for suite, task in pairs:
        if task.reference:
            rows.append(
                {
                    "prompt": build_messages(observation_of(suite, task, scale)),
                    "completion": _assistant(format_completion(task.reference)),
                    "task_id": task.id,
                }
            )
    return rows


def seed_dpo_rows(pairs: Iterable[tuple[Suite, Task]], scale: str | None = None) -> list[dict[str, Any]]:
    """Seed preference pairs: the reference (improved) is chosen over the slow query itself.

    The slow query scores ``unchanged`` (reward 0.0) and every reference at least the
    acceptance tier, so each pair is ranked by verified reward as DESIGN §1 asks.
    """
    rows = []
    for suite, task in pairs:
        if task.reference:
            rows.append(
                {
                    "prompt": build_messages(observation_of(suite, task, scale)),
                    "chosen": _assistant(format_completion(task.reference)),
                    "rejected": _assistant(format_completion(task.query)),
                    "task_id": task.id,
                }
            )
    return rows


KIND_COLUMNS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}


def load_jsonl(path: str | os.PathLike[str], kind: str) -> list[dict[str, Any]]:
    """Rows of an exported JSONL file (``quill_agents.export``), checked for ``kind``'s columns.

    Args:
        path: the JSONL file.
        kind: ``sft`` (prompt, completion) or ``dpo`` (prompt, chosen, rejected).

    Returns:
        One dict per line, holding the kind's columns and ``task_id`` when the row has one.

    Raises:
        ConfigError: the file is missing, malformed, empty or lacks a column.
    """
    columns = KIND_COLUMNS[kind]
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such dataset file: {path}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{n}: not JSON: {err}") from None
        missing = [c for c in columns if c not in raw]
        if missing:
            raise ConfigError(
                f"{path}:{n}: a {kind} row needs columns {list(columns)}; missing {missing} "
                f"(export it with the {kind} format)"
            )
        row = {c: raw[c] for c in columns}
        if "task_id" in raw:
            row["task_id"] = raw["task_id"]
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path} holds no rows")
    return rows


def to_dataset(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """A ``datasets.Dataset`` holding only ``columns`` of ``rows``."""
    from datasets import Dataset

    return Dataset.from_list([{c: r[c] for c in columns} for r in rows])


def check_dataset_schemas(path: str | os.PathLike[str], include_test_schemas: bool = False) -> None:
    """Refuse an exported dataset whose ``export.json`` (beside it) lists held-out test schemas.

    Args:
        path: the dataset file (``sft.jsonl`` or ``dpo.jsonl`` of ``quill export``).
        include_test_schemas: allow them anyway (a warning is logged).

    Raises:
        ConfigError: the export holds records of a held-out schema and ``include_test_schemas``
            is false, or its ``export.json`` is unreadable.
    """
    summary = Path(path).parent / "export.json"
    if not summary.is_file():
        return  # not written by quill export: nothing to go by
    try:
        schemas = json.loads(summary.read_text()).get("schemas") or {}
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise ConfigError(f"cannot read {summary}: {err}") from None
    check_schemas(schemas, include_test_schemas=include_test_schemas, what="train on")
    held = sorted(set(schemas) & set(held_out_schemas()))
    if held:
        logger.warning("training on records of the held-out test schemas %s", ", ".join(held))


def training_rows(config: TrainConfig, kind: str) -> list[dict[str, Any]]:
    """The SFT or DPO rows a config asks for: the export when given, else the seed set.

    Raises:
        ConfigError: the dataset is unusable, or (see :func:`check_dataset_schemas`) it was
            exported from held-out test schemas and ``config.include_test_schemas`` is false.
    """
    if config.dataset:
        check_dataset_schemas(config.dataset, config.include_test_schemas)
        return load_jsonl(config.dataset, kind)
    pairs = select_tasks(resolve_suites(config.suites), config.split, config.task_ids)
    rows = seed_sft_rows(pairs, config.scale) if kind == "sft" else seed_dpo_rows(pairs, config.scale)
    if not rows:
        raise ConfigError("the selected tasks have no reference rewrites to build a seed set from")
    return rows


# --- trainers ----------------------------------------------------------------------------------


class TrainerOptions(TypedDict, total=False):
    """Keyword arguments that every ``build_<algo>_trainer`` and ``train_<algo>`` function takes.

    Attributes:
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer (loaded from the config's ``model`` when None).
        callbacks: extra ``transformers`` callbacks.
    """

    model: Any
    tokenizer: Any
    callbacks: Sequence[Any]


def build_trl_trainer(
    trainer_cls: Any,
    config: TrainConfig,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    model: Any = None,
    tokenizer: Any = None,
    callbacks: Sequence[Any] = (),
    **trainer_kwargs: Any,
) -> tuple[Any, Any]:
    """A TRL trainer of a config: its TRL config, LoRA adapter and a dataset of ``rows``.

    Args:
        trainer_cls: the TRL trainer class (``SFTTrainer``, ``DPOTrainer``, ``GRPOTrainer``, ...).
        config: the run's configuration (its ``trl_config()`` gives the trainer's ``args``).
        rows: the training rows.
        columns: the columns of ``rows`` that go into the dataset.
        model: an already loaded model (the config's ``model`` is loaded when None).
        tokenizer: its tokenizer (loaded from the config's ``model`` when None).
        callbacks: extra ``transformers`` callbacks.
        **trainer_kwargs: further arguments of ``trainer_cls`` (``ref_model``, ``reward_funcs``, ...).

    Returns:
        ``(trainer, tokenizer)``.
    """
    model, tokenizer = resolve_model_and_tokenizer(config, model, tokenizer)
    trainer = trainer_cls(
        model=model,
        args=config.trl_config(),
        train_dataset=to_dataset(rows, columns),
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=list(callbacks),
        **trainer_kwargs,
    )
    return trainer, tokenizer


def build_offline_trainer(
    trainer_cls: Any,
    config: TrainConfig,
    kind: str,
    rows: Sequence[Mapping[str, Any]] | None = None,
    **trainer_kwargs: Any,
) -> tuple[Any, Any, int]:
    """A TRL trainer on fixed SFT or DPO rows, its tokenizer and the number of rows.

    Args:
        trainer_cls: ``trl.SFTTrainer`` or ``trl.DPOTrainer``.
        config: the run's configuration.
        kind: ``sft`` or ``dpo``: the columns of the rows (:data:`KIND_COLUMNS`).
        rows: the training rows; the config's dataset (or seed set) when None.
        **trainer_kwargs: :class:`TrainerOptions` and further arguments of ``trainer_cls``
            (e.g. DPO's ``ref_model``), as for :func:`build_trl_trainer`.

    Returns:
        ``(trainer, tokenizer, number of rows)``.
    """
    rows = list(rows) if rows is not None else training_rows(config, kind)
    trainer, tokenizer = build_trl_trainer(trainer_cls, config, rows, KIND_COLUMNS[kind], **trainer_kwargs)
    return trainer, tokenizer, len(rows)


# --- the report --------------------------------------------------------------------------------


def peak_memory() -> dict[str, Any]:
    """Peak memory so far: CUDA allocator peak on a GPU, else the process's peak RSS."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated()),
            "peak_memory_kind": "cuda_allocated",
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return {"peak_memory_bytes": int(rss * scale), "peak_memory_kind": "process_peak_rss"}


def reset_peak_memory() -> None:
    """Reset the CUDA peak counter (the RSS peak of a process cannot be reset)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


@dataclass
class TrainingReport:
    """What a training run did, written as ``training_report.json`` next to its outputs."""

    algorithm: str
    config: dict[str, Any]
    output_dir: str
    steps: int = 0
    examples: int = 0
    train_seconds: float = 0.0
    tokens: int | None = None
    tokens_per_second: float | None = None
    peak_memory_bytes: int = 0
    peak_memory_kind: str = ""
    parameters: dict[str, int] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    """``{"step", "loss"}`` per logging step (when no logging step fell inside the run, one entry:
    the run's mean training loss at its last step)."""
    rewards: list[dict[str, float]] = field(default_factory=list)
    """``{"step", "reward", "reward_std", "quill/...": ...}`` per logging step (online RL)."""
    log_history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    """Algorithm-specific results (e.g. ReST-EM iterations)."""

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-serializable dict."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_json_default))

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the report (default: ``<output_dir>/training_report.json``) and return its path."""
        target = Path(path) if path else Path(self.output_dir) / REPORT_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=True))
        return target


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def report_from_trainer(
    config: TrainConfig, trainer: Any, seconds: float, examples: int, tokens: int | None = None
) -> TrainingReport:
    """Build the report of a finished TRL trainer from its log history."""
    history = list(trainer.state.log_history)
    losses = [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h]
    if not losses:  # no logging step fell inside the run: the mean loss transformers reports at the end
        final = [h for h in history if "train_loss" in h]
        if final:
            step = final[-1].get("step", trainer.state.global_step)
            losses = [{"step": step, "loss": final[-1]["train_loss"]}]
    rewards = []
    for h in history:
        if "reward" in h:
            entry = {"step": h["step"], "reward": h["reward"], "reward_std": h.get("reward_std")}
            entry.update({k: v for k, v in h.items() if k.startswith(("quill/", "rewards/"))})
            rewards.append(entry)
    if tokens is None:
        counted = [h["num_tokens"] for h in history if "num_tokens" in h]
        tokens = int(counted[-1]) if counted else None
        seen = getattr(trainer.state, "num_input_tokens_seen", 0)
        if tokens is None and seen:
            tokens = int(seen)
    report = TrainingReport(
        algorithm=config.algorithm,
        config=config.to_dict(),
        output_dir=config.output_dir,
        steps=int(trainer.state.global_step),
        examples=examples,
        train_seconds=round(seconds, 3),
        tokens=tokens,
        tokens_per_second=round(tokens / seconds, 2) if tokens and seconds > 0 else None,
        parameters=trainable_parameters(trainer.model),
        losses=losses,
        rewards=rewards,
        log_history=history,
    )
    for key, value in peak_memory().items():
        setattr(report, key, value)
    return report


def run_and_save(config: TrainConfig, trainer: Any, tokenizer: Any, examples: int) -> TrainingReport:
    """Train, save the adapter (or model) and tokenizer to ``output_dir``, write the report."""
    reset_peak_memory()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    report = report_from_trainer(config, trainer, seconds, examples)
    save_outputs(trainer, tokenizer, config.output_dir)
    report.write()
    write_model_card(config.output_dir)  # in place of PEFT's blank template
    logger.info(
        "%s: %d steps in %.1fs; report in %s", config.algorithm, report.steps, seconds, config.output_dir
    )
    return report


def save_outputs(trainer: Any, tokenizer: Any, output_dir: str) -> None:
    """Save the trained adapter (LoRA) or model, and the tokenizer, to ``output_dir``."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    trainer.save_model(output_dir)
    tokenizer.save_pretrained(output_dir)


__all__ = [
    "DEFAULT_MODEL",
    "REPORT_NAME",
    "TrainConfig",
    "TrainerOptions",
    "TrainingReport",
    "build_offline_trainer",
    "build_trl_trainer",
    "check_dataset_schemas",
    "load_jsonl",
    "load_model_and_tokenizer",
    "lora_config",
    "observation_of",
    "prompt_rows",
    "resolve_model_and_tokenizer",
    "resolve_suites",
    "seed_dpo_rows",
    "seed_sft_rows",
    "select_tasks",
    "training_rows",
]
