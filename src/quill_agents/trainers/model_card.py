"""The model card of a trained adapter: what it was trained on, and how it scores on Quill.

PEFT saves a blank template as ``README.md``; Quill writes its own card in its place. It is
rendered from two files of the model's directory: ``training_report.json`` (written by every
trainer) and ``quill_results.json`` (one entry per leaderboard run of this model, added by
``quill bench --agent policy:DIR`` through :func:`add_leaderboard_result`). The card is
rendered again whenever either changes, so it always shows every result the model has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
RESULTS_NAME = "quill_results.json"
"""The leaderboard results of the model, beside its adapter (a JSON list)."""
REPORT_NAME = "training_report.json"
"""The training report every trainer writes beside its outputs."""
CARD_TAGS = ("quill", "sql", "query-optimization", "text-to-sql", "trl")


def leaderboard_entry(fingerprint: Mapping[str, Any], summary: Mapping[str, Any], run: str) -> dict[str, Any]:
    """One leaderboard result of a model, as the card shows it.

    >>> fp = {"suites": [{"name": "shop"}], "split": "test", "scale": "small",
    ...       "engine": "SQLite 3.54.1", "cost_mode": "work"}
    >>> s = {"tasks": 2, "correct": 1.0, "mean_reward": 0.5, "improved": 0.5,
    ...      "geomean_speedup": 3.0, "fast_p": {"2": 0.5}}
    >>> entry = leaderboard_entry(fp, s, "r1")
    >>> entry["suites"], entry["fast_2"]
    ('shop', 0.5)
    """
    return {
        "run": run,
        "suites": ", ".join(s["name"] for s in fingerprint.get("suites", [])),
        "split": fingerprint.get("split"),
        "scale": fingerprint.get("scale"),
        "engine": fingerprint.get("engine"),
        "cost_mode": fingerprint.get("cost_mode"),
        "tasks": summary.get("tasks"),
        "correct": summary.get("correct"),
        "mean_reward": summary.get("mean_reward"),
        "improved": summary.get("improved"),
        "geomean_speedup": summary.get("geomean_speedup"),
        "fast_2": (summary.get("fast_p") or {}).get("2"),  # the key metrics.p_key(2) gives
    }


def add_leaderboard_result(model_dir: str | os.PathLike[str], entry: Mapping[str, Any]) -> Path:
    """Record one leaderboard result of the model in ``model_dir`` and render its card again.

    A result of the same run replaces the earlier one. Returns the card's path.
    """
    model_dir = Path(model_dir)
    path = model_dir / RESULTS_NAME
    results = json.loads(path.read_text()) if path.exists() else []
    results = [r for r in results if r.get("run") != entry.get("run")] + [dict(entry)]
    path.write_text(json.dumps(results, indent=2) + "\n")
    return write_model_card(model_dir)


def write_model_card(model_dir: str | os.PathLike[str]) -> Path:
    """Render ``README.md`` of ``model_dir`` from its training report and leaderboard results."""
    model_dir = Path(model_dir)
    report_path, results_path = model_dir / REPORT_NAME, model_dir / RESULTS_NAME
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    card = model_dir / CARD_NAME
    card.write_text(model_card(report, results, name=model_dir.name))
    return card


def model_card(report: Mapping[str, Any], results: list[Mapping[str, Any]], *, name: str = "model") -> str:
    """The card's markdown (YAML front matter first) from a training report and results."""
    config = dict(report.get("config") or {})
    base = config.get("model")
    algorithm = report.get("algorithm", "")
    lines = ["---"]
    if base:
        lines.append(f"base_model: {base}")
    lines += ["library_name: peft" if config.get("use_lora", True) else "library_name: transformers"]
    lines += ["tags:", *(f"- {t}" for t in (*CARD_TAGS, algorithm) if t), "---", ""]
    lines += [f"# {name}", ""]
    trained = f"trained with Quill's `{algorithm}` trainer" if algorithm else "trained with Quill"
    lines += [f"A SQL query optimizer, {trained}" + (f" from `{base}`." if base else "."), ""]
    lines += ["## Leaderboard results", ""]
    if results:
        lines += [
            "Scored by Quill: a rewrite counts only when execution shows it returns the same results "
            "on the task's database and its adversarial variants; `fast_2` is the share of tasks "
            "correct and at least 2x faster.",
            "",
            "| suites | split | scale | engine | cost | tasks | correct | mean reward | improved "
            "| geomean speedup | fast_2 | run |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results:
            lines.append(
                f"| {r.get('suites')} | {r.get('split')} | {r.get('scale')} | {r.get('engine')} "
                f"| {r.get('cost_mode')} | {r.get('tasks')} | {_pct(r.get('correct'))} "
                f"| {_num(r.get('mean_reward'), '+.3f')} | {_pct(r.get('improved'))} "
                f"| {_num(r.get('geomean_speedup'), '.2f', 'x')} | {_pct(r.get('fast_2'))} | {r.get('run')} |"
            )
    else:
        lines.append(
            f"Not benchmarked yet: `quill bench --agent policy:{name}` scores it and adds the results here."
        )
    lines += ["", "## Training", ""]
    if report:
        lines += [
            f"- algorithm: {algorithm}",
            f"- steps: {report.get('steps')}",
            f"- examples: {report.get('examples')}",
            f"- seconds: {report.get('train_seconds')}",
        ]
        losses = report.get("losses") or []
        if losses:
            first, last = losses[0], losses[-1]
            lines.append(
                f"- loss: {first['loss']:.4f} at step {first['step']}, "
                f"{last['loss']:.4f} at step {last['step']}"
            )
        rewards = report.get("rewards") or []
        if rewards:
            lines.append(f"- mean reward of the last logged step: {rewards[-1]['reward']:.3f}")
        for key in ("dataset", "suites", "scale", "learning_rate", "lora_r", "load_in_4bit"):
            value = config.get(key)
            if value not in (None, "", []):
                shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
                lines.append(f"- {key}: {shown}")
    else:
        lines.append("No training report was found beside the model.")
    return "\n".join(lines) + "\n"


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _num(x: Any, spec: str, suffix: str = "") -> str:
    return "-" if x is None else f"{format(float(x), spec)}{suffix}"


__all__ = [
    "REPORT_NAME",
    "RESULTS_NAME",
    "add_leaderboard_result",
    "leaderboard_entry",
    "model_card",
    "write_model_card",
]
