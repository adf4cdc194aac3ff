"""The ``quill`` command line: ``quill demo``, ``quill evaluate`` and ``quill tasks``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from quill_env.errors import QuillError


def _sql_arg(text: str) -> str:
    """SQL given inline, or ``@path`` to read it from a file."""
    if text.startswith("@"):
        return Path(text[1:]).read_text()
    return text


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """Run ``Quill-v0`` episodes with the identity action and the reference rewrite."""
    import gymnasium as gym

    env = gym.make("Quill-v0", suite=args.suite, split=args.split, scale=args.scale, cost=args.cost)
    base = env.unwrapped
    tasks = base.tasks[: args.limit] if args.limit else base.tasks
    rows = []
    start = time.perf_counter()
    with _progress(console) as progress:
        job = progress.add_task(
            f"{args.suite or 'all suites'} / {args.split} / {args.scale or 'default'}", total=len(tasks)
        )
        for task in tasks:
            for agent, action in (("identity", task.query), ("reference", task.reference)):
                if action is None:
                    continue
                env.reset(options={"task_id": task.id})
                _, reward, _, _, info = env.step(action)
                rows.append(
                    {
                        "task_id": task.id,
                        "agent": agent,
                        "patterns": list(task.patterns),
                        "verdict": info["verdict"],
                        "speedup": info["speedup"],
                        "speedup_raw": info["speedup_raw"],
                        "reward": reward,
                        "error": info["error"],
                    }
                )
            progress.advance(job)
    env.close()
    table = Table(title=f"Quill demo ({args.cost} cost, {time.perf_counter() - start:.1f}s)")
    for col in ("task", "agent", "verdict", "speedup", "reward"):
        table.add_column(col, justify="right" if col in ("speedup", "reward") else "left")
    for r in rows:
        speed = f"{r['speedup']:.1f}x" if r["speedup"] else "-"
        color = "green" if r["reward"] > 0 else "red" if r["reward"] < 0 else "white"
        table.add_row(r["task_id"], r["agent"], r["verdict"], speed, f"[{color}]{r['reward']:+.3f}[/]")
    console.print(table)
    ref = [r for r in rows if r["agent"] == "reference"]
    ok = sum(r["verdict"] == "improved" for r in ref)
    mean = sum(r["reward"] for r in ref) / max(len(ref), 1)
    console.print(f"reference rewrites improved: {ok}/{len(ref)}; mean reward {mean:+.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        console.print(f"wrote {args.json}")
    return 0 if ok == len(ref) else 1


def cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    """Score one rewrite of a slow query on a database."""
    from quill_env.evaluator import evaluate

    options = {"cost": args.cost, "num_variants": args.variants, "budget_factor": args.budget_factor}
    result = evaluate(
        args.database,
        _sql_arg(args.slow),
        _sql_arg(args.candidate),
        output_columns=args.output_columns.split(",") if args.output_columns else None,
        **options,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    table = Table(show_header=False, title=f"{result.engine}, cost={result.cost_mode}")
    table.add_row("verdict", f"[bold]{result.verdict.value}[/]")
    table.add_row("correct", str(result.correct))
    table.add_row("reward", f"{result.reward:+.3f}")
    if result.speedup is not None:
        table.add_row("speedup", f"{result.speedup:.2f}x (raw {result.speedup_raw:.2f}x)")
    if result.baseline_cost is not None:
        table.add_row("baseline cost", f"{result.baseline_cost:,.0f} {result.cost_unit}")
    if result.candidate_cost is not None:
        table.add_row("candidate cost", f"{result.candidate_cost:,.0f} {result.cost_unit}")
    table.add_row("reward terms", ", ".join(f"{k}={v:+.3f}" for k, v in result.reward_terms.items()))
    table.add_row("variants", " ".join(f"{v.name}:{v.status}" for v in result.variants) or "-")
    if result.error:
        table.add_row("error", result.error)
    console.print(table)
    return 0


def cmd_tasks(args: argparse.Namespace, console: Console) -> int:
    """List, show or export the shipped tasks, or build their databases."""
    from quill_env.tasks import get_suite, list_suites

    suites = [get_suite(n) for n in ([args.suite] if args.suite else list_suites())]
    if args.action == "list":
        table = Table(title="Quill tasks")
        for col in ("id", "split", "patterns", "measured speedup"):
            table.add_column(col)
        for suite in suites:
            for t in suite.tasks:
                speed = ", ".join(f"{k}={v:.0f}x" for k, v in t.reference_speedup.items())
                table.add_row(t.id, t.split, " ".join(t.patterns), speed)
        console.print(table)
    elif args.action == "show":
        task = next((s.task(args.id) for s in suites if args.id.split("/")[0] == s.name), None)
        if task is None:
            task = suites[0].task(args.id)
        console.print_json(json.dumps(task.to_dict()))
    elif args.action == "export":
        if not args.out:
            console.print("[red]quill tasks export needs --out FILE.jsonl[/]")
            return 2
        split = args.split or "all"
        count = 0
        with open(args.out, "w") as fh, _progress(console) as progress:
            job = progress.add_task(f"exporting {split} tasks", total=len(suites))
            for suite in suites:
                tasks = suite.split(split)
                if tasks:
                    extra = {
                        "database": str(suite.database(args.scale)),
                        "scale": args.scale or suite.default_scale,
                    }
                    for t in tasks:
                        fh.write(json.dumps({**t.to_dict(), **extra}) + "\n")
                        count += 1
                progress.advance(job)
        console.print(f"wrote {count} tasks to {args.out}")
    elif args.action == "build":
        with _progress(console) as progress:
            scales = [args.scale] if args.scale else None
            jobs = [(s, sc) for s in suites for sc in (scales or s.scales)]
            job = progress.add_task("building databases", total=len(jobs))
            for suite, scale in jobs:
                start = time.perf_counter()
                path = suite.database(scale, rebuild=args.rebuild)
                console.print(f"{suite.name}/{scale}: {path} ({time.perf_counter() - start:.2f}s)")
                progress.advance(job)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``quill``."""
    parser = argparse.ArgumentParser(
        prog="quill", description="Quill: verified SQL optimization for language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run Quill-v0 episodes with identity and reference actions")
    demo.add_argument("--suite", default=None, help="suite name (default: every shipped suite)")
    demo.add_argument("--split", default="all", choices=["train", "test", "all"])
    demo.add_argument("--scale", default=None, help="small, medium or large (default: the suite's)")
    demo.add_argument("--cost", default="work", choices=["work", "wall"])
    demo.add_argument("--limit", type=int, default=None, help="run only the first N tasks")
    demo.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    demo.set_defaults(func=cmd_demo)

    ev = sub.add_parser("evaluate", help="score a rewrite of a slow query on a SQLite database")
    ev.add_argument("database", help="SQLite file (never modified)")
    ev.add_argument("--slow", required=True, help="the original query, or @file.sql")
    ev.add_argument(
        "--candidate", required=True, help="the rewrite (with optional CREATE INDEX), or @file.sql"
    )
    ev.add_argument("--output-columns", default=None, help="comma-separated columns the application reads")
    ev.add_argument("--cost", default="work", choices=["work", "wall"])
    ev.add_argument("--variants", type=int, default=8, help="variant databases to verify on (0-8)")
    ev.add_argument(
        "--budget-factor", type=float, default=2.0, help="stop the candidate at this x baseline cost"
    )
    ev.add_argument("--json", action="store_true", help="print the full result as JSON")
    ev.set_defaults(func=cmd_evaluate)

    tasks = sub.add_parser("tasks", help="list, show, build or export the shipped tasks")
    tasks.add_argument("action", choices=["list", "show", "build", "export"])
    tasks.add_argument("id", nargs="?", help="task id (for show)")
    tasks.add_argument("--suite", default=None)
    tasks.add_argument("--scale", default=None)
    tasks.add_argument("--rebuild", action="store_true", help="regenerate even when cached")
    tasks.add_argument("--split", default=None, choices=["train", "test", "all"], help="for export")
    tasks.add_argument("--out", default=None, help="output JSONL file (for export)")
    tasks.set_defaults(func=cmd_tasks)
    _register_plugins(sub)
    return parser


PLUGINS = ("quill_agents.cli_generate", "quill_agents.cli_bench", "quill_agents.cli_train")
"""Modules that add subcommands (``register(subparsers)``); imported only to build the parser."""


def _register_plugins(sub: argparse._SubParsersAction) -> None:
    import importlib

    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        module.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quill`` command."""
    args = build_parser().parse_args(argv)
    console = Console()
    if getattr(args, "action", None) == "show" and not args.id:
        console.print("[red]quill tasks show needs a task id[/]")
        return 2
    try:
        return int(args.func(args, console) or 0)
    except QuillError as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
