"""The ``quill`` command line: ``quill demo``, ``quill evaluate`` and ``quill tasks``.

Output written to a pipe or a file is plain text: no colours or other terminal codes, and no
wrapping or truncation at 80 columns (scripts can copy every identifier). Error messages go to
standard error. Exit codes: 0 success, 1 the command ran but its outcome is negative (e.g. a
candidate that is not correct), 2 a usage error (bad argument, unknown name, unreadable file),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from quill_env.errors import ConfigError, QuillError, UnknownNameError
from quill_env.tasks import SCALES

PIPE_WIDTH = 100_000
"""The console width when output is not a terminal: wide enough that no table is ever cut."""
EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""The exit codes of every ``quill`` command (see the module docstring)."""

EVALUATE_EPILOG = """exit codes:
  0  the candidate is correct (verdict improved, no_gain or unchanged)
  1  the candidate is not correct (wrong_result, syntax_error, rejected, timeout, runtime_error)
  2  usage error: bad arguments, unreadable @file, database that cannot be opened, or a slow
     query that itself fails
130  interrupted (Ctrl-C)"""


def make_console(*, stderr: bool = False) -> Console:
    """A console for standard output (or error): rich on a terminal, plain text otherwise.

    When the stream is not a terminal, the console writes no terminal codes (even with
    ``FORCE_COLOR`` set), never wraps a line and is wide enough that tables keep every cell whole.

    Args:
        stderr: write to standard error instead of standard output.

    Returns:
        The console.
    """
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, force_terminal=False, no_color=True, width=PIPE_WIDTH, soft_wrap=True)


def print_error(message: str) -> None:
    """Print ``error: message`` to standard error (in red on a terminal, plain when piped)."""
    make_console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False)


def print_warning(message: str) -> None:
    """Print ``warning: message`` to standard error (in yellow on a terminal, plain when piped)."""
    make_console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def _sql_arg(text: str, option: str) -> str:
    """SQL given inline, or ``@path`` to read it from a file.

    Raises:
        ConfigError: the file cannot be read.
    """
    if not text.startswith("@"):
        return text
    path = Path(text[1:])
    try:
        return path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read {option} file {str(path)!r}: {err.strerror or err}") from None


def scale_list(text: str) -> str:
    """An argparse type: comma-separated scale tiers, each one of :data:`SCALES`."""
    for part in (p.strip() for p in text.split(",")):
        if part not in SCALES:
            raise argparse.ArgumentTypeError(
                f"invalid scale {part!r} (choose from {', '.join(map(repr, SCALES))})"
            )
    return text


def _format_cost(value: float, unit: str) -> str:
    """A cost for people: work units as whole numbers, seconds with a sensible unit.

    >>> _format_cost(123456.0, "vm_steps")
    '123,456 vm_steps'
    >>> _format_cost(0.00042, "seconds")
    '420 µs'
    >>> _format_cost(0.0123, "seconds")
    '12.3 ms'
    >>> _format_cost(2.5, "seconds")
    '2.50 s'
    """
    if unit != "seconds":
        return f"{value:,.0f} {unit}"
    if abs(value) >= 1.0:
        return f"{value:.2f} s"
    for scale, suffix in ((1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value * 1e9:.3g} ns"


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    """Run ``Quill-v1`` episodes with the identity action and the reference rewrite."""
    import gymnasium as gym

    env = gym.make("Quill-v1", suite=args.suite, split=args.split, scale=args.scale, cost=args.cost)
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
    """Score one rewrite of a slow query on a database; exit 0 only when it is correct."""
    from quill_env.evaluator import evaluate

    slow, candidate = _sql_arg(args.slow, "--slow"), _sql_arg(args.candidate, "--candidate")
    options = {"cost": args.cost, "num_variants": args.variants, "budget_factor": args.budget_factor}
    result = evaluate(
        args.database,
        slow,
        candidate,
        output_columns=args.output_columns.split(",") if args.output_columns else None,
        **options,
    )
    code = EXIT_OK if result.correct else EXIT_NEGATIVE
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return code
    table = Table(show_header=False, title=f"{result.engine}, cost={result.cost_mode}")
    table.add_row("verdict", f"[bold]{result.verdict.value}[/]")
    table.add_row("correct", str(result.correct))
    table.add_row("reward", f"{result.reward:+.3f}")
    if result.speedup is not None:
        table.add_row("speedup", f"{result.speedup:.2f}x (raw {result.speedup_raw:.2f}x)")
    if result.baseline_cost is not None:
        table.add_row("baseline cost", _format_cost(result.baseline_cost, result.cost_unit))
    if result.candidate_cost is not None:
        table.add_row("candidate cost", _format_cost(result.candidate_cost, result.cost_unit))
    table.add_row("reward terms", ", ".join(f"{k}={v:+.3f}" for k, v in result.reward_terms.items()))
    table.add_row("variants", variants_cell(result.variants))
    if result.error:
        table.add_row("error", escape(result.error))
    console.print(table)
    return code


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


def cmd_tasks(args: argparse.Namespace, console: Console) -> int:
    """List, show or export the shipped tasks, or build their databases."""
    from quill_env.tasks import get_suite, list_suites

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
        if not args.out:
            raise ConfigError("quill tasks export needs --out FILE.jsonl")
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
        console.print(f"wrote {count} tasks to {args.out}", highlight=False, markup=False)
    elif args.action == "build":
        with _progress(console) as progress:
            scales = [args.scale] if args.scale else None
            jobs = [(s, sc) for s in suites for sc in (scales or s.scales)]
            job = progress.add_task("building databases", total=len(jobs))
            for suite, scale in jobs:
                start = time.perf_counter()
                path = suite.database(scale, rebuild=args.rebuild)
                console.print(
                    f"{suite.name}/{scale}: {path} ({time.perf_counter() - start:.2f}s)",
                    highlight=False,
                    markup=False,
                )
                progress.advance(job)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``quill``."""
    parser = argparse.ArgumentParser(
        prog="quill",
        description="Quill: verified SQL optimization for language models.",
        epilog="exit codes: 0 success, 1 negative outcome (see each command), 2 usage error, 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run Quill-v1 episodes with identity and reference actions")
    demo.add_argument("--suite", default=None, help="suite name (default: every shipped suite)")
    demo.add_argument("--split", default="all", choices=["train", "test", "all"])
    demo.add_argument("--scale", default=None, choices=SCALES, help="default: each suite's (medium)")
    demo.add_argument("--cost", default="work", choices=["work", "wall"])
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
        "--candidate", required=True, help="the rewrite (with optional CREATE INDEX), or @file.sql"
    )
    ev.add_argument("--output-columns", default=None, help="comma-separated columns the application reads")
    ev.add_argument("--cost", default="work", choices=["work", "wall"])
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
    tasks.add_argument("--out", default=None, help="output JSONL file (for export)")
    tasks.add_argument("--json", action="store_true", help="list: print the tasks as a JSON array")
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
    """Entry point of the ``quill`` command.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 1 a negative outcome, 2 a usage error, 130 interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, make_console()) or 0)
    except QuillError as err:
        print_error(str(err))
        return EXIT_USAGE
    except BrokenPipeError:  # the reader went away (``quill tasks list | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_NEGATIVE
    except OSError as err:
        where = f": {err.filename}" if err.filename else ""
        print_error(f"{err.strerror or err}{where}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
