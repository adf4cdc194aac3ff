"""``quill train {sft,dpo,grpo,rloo,restem}``: the trainers from the command line.

The options of each subcommand are generated from its config dataclass (one ``--flag`` per
field, with the field's help text); ``--config FILE.json`` supplies values from a file, and flags
given on the command line override them. Heavy libraries (torch, transformers, trl, peft) are
imported only when a subcommand runs, so building the ``quill`` parser stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import types
import typing
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quill_agents import trainers
from quill_agents.trainers import CONFIGS
from quill_cli.console import enum_arg
from quill_env.errors import ConfigError, UnknownNameError

DESCRIPTIONS = {
    "sft": "supervised fine-tuning on verified rewrites (TRL SFTTrainer, completion-only loss)",
    "dpo": "DPO on preference pairs ranked by verified reward (TRL DPOTrainer)",
    "grpo": "GRPO against the environment's reward, optionally multi-turn with tools (TRL GRPOTrainer)",
    "rloo": "RLOO against the environment's reward (TRL RLOOTrainer)",
    "restem": "ReST-EM self-training: sample, keep reward >= threshold, fine-tune, repeat",
}


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _base_type(annotation: Any) -> Any:
    """``int`` for ``int | None``, ``list`` for ``list[str] | None``, and so on."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return origin or annotation


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One ``--flag`` per dataclass field, with the field's help text (defaults suppressed)."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, type=_parse_bool, metavar="BOOL", default=argparse.SUPPRESS, help=text)
        elif kind is dict:
            parser.add_argument(
                flag,
                type=_key_value,
                action="append",
                metavar="KEY=VALUE",
                default=argparse.SUPPRESS,
                help=text,
            )
        elif kind is list:
            parser.add_argument(flag, nargs="+", default=argparse.SUPPRESS, help=text)
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            parse, choices = enum_arg(kind), tuple(kind)
            parser.add_argument(flag, type=parse, choices=choices, default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=text)


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    """The config of a parsed command line: ``--config`` file values, overridden by flags."""
    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            values.update(json.loads(Path(args.config).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read --config {args.config}: {err}") from None
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UnknownNameError(f"{config_cls.__name__} field", unknown[0], names)
    for name in names:
        if hasattr(args, name):
            value = getattr(args, name)
            values[name] = dict(value) if name == "trl_args" else value
    return config_cls(**values)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    """Run one trainer and print a summary of its report."""
    config = config_from_args(CONFIGS[args.algorithm], args)
    console.print(f"[bold]quill train {args.algorithm}[/]: {config.model} -> {config.output_dir}")
    report = trainers.TRAINERS[args.algorithm](config)
    table = Table(show_header=False, title=f"{args.algorithm} training report")
    table.add_row("steps", str(report.steps))
    table.add_row("examples", str(report.examples))
    table.add_row("time", f"{report.train_seconds:.1f}s")
    if report.tokens_per_second:
        table.add_row("tokens/s", f"{report.tokens_per_second:,.0f}")
    table.add_row("peak memory", f"{report.peak_memory_bytes / 2**30:.2f} GiB ({report.peak_memory_kind})")
    if report.losses:
        table.add_row("loss", f"{report.losses[0]['loss']:.4f} -> {report.losses[-1]['loss']:.4f}")
    if report.rewards:
        table.add_row("reward", f"{report.rewards[0]['reward']:+.3f} -> {report.rewards[-1]['reward']:+.3f}")
    if "best_test_reward" in report.extra:
        table.add_row("best test reward", str(report.extra["best_test_reward"]))
        table.add_row("best adapter", str(report.extra["best_adapter"]))
    table.add_row("report", str(Path(report.output_dir) / "training_report.json"))
    console.print(table)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``quill train {sft,dpo,grpo,rloo,restem}`` to the ``quill`` parser."""
    train = subparsers.add_parser("train", help="train a model on Quill (SFT, DPO, GRPO, RLOO, ReST-EM)")
    algorithms = train.add_subparsers(dest="algorithm", required=True)
    for name, config_cls in CONFIGS.items():
        sub = algorithms.add_parser(name, help=DESCRIPTIONS[name], description=DESCRIPTIONS[name])
        sub.add_argument("--config", default=None, help="JSON file of config values (flags override it)")
        add_config_arguments(sub, config_cls)
        sub.set_defaults(func=cmd_train)


__all__ = ["add_config_arguments", "config_from_args", "register"]
