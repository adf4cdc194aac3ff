"""``quill demo``, ``quill evaluate`` and ``quill tasks``: the environment's commands."""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quill_agents.verl_data import verl_rows, write_parquet
from quill_cli.console import (
    EXIT_NEGATIVE,
    EXIT_OK,
    add_server_argument,
    apply_server_argument,
    enum_arg,
    format_cost,
    progress_bar,
    sql_arg,
)
from quill_env.backends import BACKENDS, DEFAULT_ENGINE
from quill_env.errors import ConfigError, UnknownNameError
from quill_env.evaluator import evaluate
from quill_env.measure import CostMode
from quill_env.tasks import SCALES, VARIANT_SCALE, get_suite, list_suites

EVALUATE_EPILOG = """exit codes:
  0  the candidate is correct (verdict improved, no_gain or unchanged); with several, every one
  1  the candidate is not correct (wrong_result, syntax_error, rejected, timeout, runtime_error)
  2  usage error: bad arguments, unreadable @file, database that cannot be opened, or a slow
     query that itself fails
130  interrupted (Ctrl-C)"""


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """Run ``Quill-v1`` episodes with the identity action and the reference rewrite."""
    env = gym.make("Quill-v1", suite=args.suite, split=args.split, scale=args.scale, cost=args.cost)
    base = env.unwrapped
    tasks = base.tasks[: args.limit] if args.limit else base.tasks
    rows = []
    start = time.perf_counter()
    with progress_bar(console) as progress:
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
    """Score rewrites of a slow query on a database; exit 0 only when every one is correct.

    One ``--candidate`` prints its result (``--json``: one object); several are each scored on
    the same runner (the baseline and variants are built once) and printed in order
    (``--json``: a list).
    """
    slow = sql_arg(args.slow, "--slow")
    candidates = [sql_arg(c, "--candidate") for c in args.candidate]
    options = {"cost": args.cost, "num_variants": args.variants, "budget_factor": args.budget_factor}
    columns = args.output_columns.split(",") if args.output_columns else None
    results = [evaluate(args.database, slow, c, output_columns=columns, **options) for c in candidates]
    code = EXIT_OK if all(r.correct for r in results) else EXIT_NEGATIVE
    if args.json:
        out = [r.to_dict() for r in results]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2, default=str))
        return code
    for i, result in enumerate(results, 1):
        title = f"{result.engine}, cost={result.cost_mode}"
        if len(results) > 1:
            title = f"candidate {i} of {len(results)}: {title}"
        console.print(result_table(result, title))
    return code


def result_table(result: Any, title: str) -> Table:
    """One result as a two-column table (verdict, reward, speedup, costs, variants, error)."""
    table = Table(show_header=False, title=title)
    table.add_row("verdict", f"[bold]{result.verdict.value}[/]")
    table.add_row("correct", str(result.correct))
    table.add_row("reward", f"{result.reward:+.3f}")
    if result.speedup is not None:
        table.add_row("speedup", f"{result.speedup:.2f}x (raw {result.speedup_raw:.2f}x)")
    if result.baseline_cost is not None:
        table.add_row("baseline cost", format_cost(result.baseline_cost, result.cost_unit))
    if result.candidate_cost is not None:
        table.add_row("candidate cost", format_cost(result.candidate_cost, result.cost_unit))
    table.add_row("reward terms", ", ".join(f"{k}={v:+.3f}" for k, v in result.reward_terms.items()))
    table.add_row("variants", variants_cell(result.variants))
    if result.error:
        table.add_row("error", escape(result.error))
    return table


def variants_cell(variants: Sequence[Any], width: int = 72) -> str:
    """The databases a candidate ran on, grouped by outcome and wrapped (no 200-column rows).

    >>> from types import SimpleNamespace as V
    >>> print(variants_cell([V(name="sample", status="match"), V(name="twin-1", status="mismatch")]))
    match (1 of 2): sample
    mismatch (1 of 2): twin-1
    """
    if not variants:
        return "-"
    groups: dict[str, list[str]] = {}
    for variant in variants:
        groups.setdefault(variant.status, []).append(variant.name)
    lines = [
        textwrap.fill(f"{status} ({len(names)} of {len(variants)}): " + " ".join(names), width)
        for status, names in groups.items()
    ]
    return "\n".join(lines)


def find_task(suites: Sequence[Any], task_id: str) -> Any:
    """The task ``task_id`` among ``suites``: ``suite/name``, or a bare name found in one suite.

    Raises:
        UnknownNameError: no such task (with a did-you-mean over every task id).
        ConfigError: a bare name that several suites have.
    """
    by_id = {t.id: t for s in suites for t in s.tasks}
    if task_id in by_id:
        return by_id[task_id]
    if "/" not in task_id:
        matches = [t for t in by_id.values() if t.id.split("/", 1)[1] == task_id]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ConfigError(f"task {task_id!r} is in several suites: {', '.join(t.id for t in matches)}")
    raise UnknownNameError("task", task_id, by_id)


def _task_row(task: Any) -> tuple[str, str, str, str]:
    speed = ", ".join(f"{k}={v:.0f}x" for k, v in task.reference_speedup.items())
    return task.id, task.split, " ".join(task.patterns), speed


def _export_verl(args: argparse.Namespace, suites: list[Any], console: Console) -> None:
    """Write the tasks of a split as verl RL rows to a parquet file (``--format verl``)."""
    if not args.out:
        raise ConfigError("quill tasks export --format verl needs --out FILE.parquet")
    split = args.split or "all"
    total = sum(len(s.split(split)) for s in suites)
    rows = []
    with progress_bar(console) as progress:
        job = progress.add_task(f"building the {split} prompts", total=total)
        for row in verl_rows(suites, split, args.scale, engine=args.engine):
            rows.append(row)
            progress.advance(job)
    count = write_parquet(rows, args.out)
    console.print(f"wrote {count} verl rows to {args.out}", highlight=False, markup=False)


def cmd_tasks(args: argparse.Namespace, console: Console) -> int:
    """List, show or export the shipped tasks, or build their databases."""
    suites = [get_suite(n) for n in ([args.suite] if args.suite else list_suites())]
    if args.scale:
        for suite in suites:
            if args.scale not in suite.scales:
                raise UnknownNameError(f"scale of suite {suite.name!r}", args.scale, suite.scales)
    if args.action == "list":
        tasks = [t for s in suites for t in s.split(args.split)]
        if args.json:
            print(json.dumps([t.to_dict() for t in tasks], indent=1))
            return EXIT_OK
        table = Table(title=f"Quill tasks ({len(tasks)})")
        table.add_column("id", no_wrap=True, overflow="fold")
        for col in ("split", "patterns", "measured speedup"):
            table.add_column(col, overflow="fold")
        for t in tasks:
            table.add_row(*_task_row(t))
        console.print(table)
    elif args.action == "show":
        if not args.id:
            raise ConfigError("quill tasks show needs a task id, e.g. quill tasks show shop/coupon_lookup")
        console.print_json(json.dumps(find_task(suites, args.id).to_dict()))
    elif args.action == "export":
        if args.format == "verl":
            _export_verl(args, suites, console)
            return EXIT_OK
        if args.engine != DEFAULT_ENGINE:
            raise ConfigError(
                "--engine is for build and --format verl (the JSONL rows name the SQLite database)"
            )
        if not args.out:
            raise ConfigError("quill tasks export needs --out FILE.jsonl")
        split = args.split or "all"
        count = 0
        with open(args.out, "w") as fh, progress_bar(console) as progress:
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
        console.print(f"wrote {count} tasks to {args.out}", highlight=False, markup=False)
    elif args.action == "build":
        apply_server_argument(args)
        with progress_bar(console) as progress:
            scales = [args.scale] if args.scale else None
            jobs = [(s, sc) for s in suites for sc in (*(scales or s.scales), VARIANT_SCALE)]
            job = progress.add_task("building databases", total=len(jobs))
            for suite, scale in jobs:
                start = time.perf_counter()
                path = suite.database(scale, rebuild=args.rebuild, engine=args.engine)
                console.print(
                    f"{suite.name}/{scale}: {path} ({time.perf_counter() - start:.2f}s)",
                    highlight=False,
                    markup=False,
                )
                progress.advance(job)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo``, ``evaluate`` and ``tasks`` to the ``quill`` command's subparsers."""
    demo = sub.add_parser("demo", help="run Quill-v1 episodes with identity and reference actions")
    demo.add_argument("--suite", default=None, help="suite name (default: every shipped suite)")
    demo.add_argument("--split", default="all", choices=["train", "test", "all"])
    demo.add_argument("--scale", default=None, choices=SCALES, help="default: each suite's (medium)")
    demo.add_argument("--cost", type=enum_arg(CostMode), default=CostMode.WORK, choices=tuple(CostMode))
    demo.add_argument("--limit", type=int, default=None, help="run only the first N tasks")
    demo.add_argument("--json", default=None, help="also write the rows as JSON to this path")
    demo.set_defaults(func=cmd_demo)

    ev = sub.add_parser(
        "evaluate",
        help="score a rewrite of a slow query on a SQLite or DuckDB database",
        description="Score a rewrite of a slow query on a SQLite or DuckDB database (never modified).",
        epilog=EVALUATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument(
        "database", help="SQLite or DuckDB file, or a sqlite:/// or duckdb:/// URL (never modified)"
    )
    ev.add_argument("--slow", required=True, help="the original query, or @file.sql")
    ev.add_argument(
        "--candidate",
        required=True,
        action="append",
        help="the rewrite (with optional CREATE INDEX), or @file.sql; repeat it to score several",
    )
    ev.add_argument("--output-columns", default=None, help="comma-separated columns the application reads")
    ev.add_argument("--cost", type=enum_arg(CostMode), default=CostMode.WORK, choices=tuple(CostMode))
    ev.add_argument(
        "--variants", type=int, default=None, help="variant databases to verify on (default: all of them)"
    )
    ev.add_argument(
        "--budget-factor", type=float, default=2.0, help="stop the candidate at this x baseline cost"
    )
    ev.add_argument("--json", action="store_true", help="print the full result as JSON")
    ev.set_defaults(func=cmd_evaluate)

    tasks = sub.add_parser("tasks", help="list, show, build or export the shipped tasks")
    tasks.add_argument("action", choices=["list", "show", "build", "export"])
    tasks.add_argument("id", nargs="?", help="task id, e.g. shop/coupon_lookup (for show)")
    tasks.add_argument("--suite", default=None)
    tasks.add_argument("--scale", default=None, choices=SCALES)
    tasks.add_argument("--rebuild", action="store_true", help="regenerate even when cached")
    tasks.add_argument(
        "--split", default=None, choices=["train", "test", "all"], help="for list and export (default: all)"
    )
    tasks.add_argument(
        "--format",
        default="jsonl",
        choices=["jsonl", "verl"],
        help="export: task JSONL, or verl RL rows (parquet; the prompts, and the task id for the reward)",
    )
    tasks.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=sorted(BACKENDS),
        help="build: the engine (postgres: on the --url server); export --format verl: its backend",
    )
    add_server_argument(tasks)
    tasks.add_argument("--out", default=None, help="output file (for export): FILE.jsonl, or FILE.parquet")
    tasks.add_argument("--json", action="store_true", help="list: print the tasks as a JSON array")
    tasks.set_defaults(func=cmd_tasks)
