"""``quill bench`` and ``quill validate``: the leaderboard's command line.

``quill bench`` runs agents (identity, reference, heuristic; a teacher endpoint or a local model
when named) and submissions on a split, in worker processes, prints the leaderboard table and
writes the results JSON, the plots and one submission per agent under ``--out`` (default
``outputs/leaderboard``, which git ignores), and regenerates the leaderboard page
``<out>/LEADERBOARD.md`` (``--leaderboard PATH`` names another), so a run writes only inside
``--out`` and never changes a tracked file unless told to. The published page is rebuilt with
``--out benchmarks/results/leaderboard --leaderboard benchmarks/LEADERBOARD.md``.
``quill validate FILE`` re-runs a submission from scratch and reports every claim that does not
reproduce, line by line. Heavy imports (the leaderboard, matplotlib) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quill_agents.leaderboard import (
    DEFAULT_AGENTS,
    BenchConfig,
    Unscored,
    available,
    parse_agent,
    regenerate_leaderboard,
    run_bench,
    save_run,
    validate_submission,
)
from quill_agents.leaderboard.agents import require
from quill_cli.console import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_ray_argument,
    add_server_argument,
    apply_server_argument,
    enum_arg,
    print_error,
    progress_bar,
)
from quill_env.backends import BACKENDS, DEFAULT_ENGINE
from quill_env.measure import CostMode
from quill_env.tasks import SCALES

SHOWN_FAST_P = ("1.5", "2", "5", "10", "50", "1000")
DEFAULT_RESULTS = "outputs/leaderboard"
"""Where a run goes without ``--out``: git ignores ``outputs/``, so the main job run from a
checkout leaves the tracked results and ``benchmarks/LEADERBOARD.md`` as they are."""
LEADERBOARD_NAME = "LEADERBOARD.md"
"""The page's name inside ``--out`` when ``--leaderboard`` is not given."""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _agents(args: argparse.Namespace, console: Console) -> list[Any]:
    names: list[str] = []
    for item in args.agents or []:
        names += [n for n in item.split(",") if n.strip()]
    explicit = bool(names)
    if not explicit and not args.submission:
        names = list(DEFAULT_AGENTS)
    specs = []
    for name in names:
        spec = parse_agent(name, base_url=args.base_url, api_key=args.api_key)
        if explicit:
            require(spec)
        elif not available(spec.kind):
            console.print(f"[yellow]skipping agent {spec.label!r}: its module is not installed[/]")
            continue
        specs.append(spec)
    return specs


def _summary_tables(rows: list[tuple[str, dict[str, Any], str]]) -> tuple[Table, Table]:
    """The leaderboard table and the fast_p table (two, so both fit an 80-column terminal).

    Agent labels and statuses fold onto more lines on a narrow terminal, never end in an ellipsis;
    the caller prints the run's title as a line of its own above them.
    """
    main = Table()
    for col in ("agent", "tasks", "correct", "mean reward", "improved", "geomean", "ms/step", "status"):
        left = col in ("agent", "status")
        justify = "left" if left else "right"
        main.add_column(col, justify=justify, no_wrap=not left, overflow="fold" if left else "ellipsis")
    fast = Table(title="fast_p: share of tasks correct and at least p times faster")
    fast.add_column("agent", overflow="fold")
    for p in SHOWN_FAST_P:
        fast.add_column(f"p={p}", justify="right", no_wrap=True)
    for label, s, status in rows:
        geo = s["geomean_speedup"]
        step = s["timing"]["step_mean_s"]
        main.add_row(
            label,
            str(s["tasks"]),
            _pct(s["correct"]),
            f"{s['mean_reward']:+.3f}",
            _pct(s["improved"]),
            "-" if geo is None else f"{geo:.2f}x",
            "-" if step is None else f"{1000 * step:.1f}",
            status,
        )
        fast.add_row(label, *[_pct(s["fast_p"].get(p)) for p in SHOWN_FAST_P])
    return main, fast


def _print_issues(console: Console, issues: list[Any], limit: int = 50) -> None:
    for issue in issues[:limit]:
        console.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
    if len(issues) > limit:
        console.print(f"  ... and {len(issues) - limit} more", markup=False, highlight=False)


def leaderboard_path(out: str | None, leaderboard: str | None) -> tuple[str, str]:
    """``(results directory, leaderboard page)`` of ``--out`` and ``--leaderboard``.

    A run writes nothing outside its results directory unless ``--leaderboard PATH`` says so.

    >>> leaderboard_path(None, None)
    ('outputs/leaderboard', 'outputs/leaderboard/LEADERBOARD.md')
    >>> leaderboard_path("/tmp/run", None)
    ('/tmp/run', '/tmp/run/LEADERBOARD.md')
    >>> leaderboard_path("/tmp/run", "docs/board.md")
    ('/tmp/run', 'docs/board.md')
    """
    out = out or DEFAULT_RESULTS
    return out, leaderboard or str(Path(out) / LEADERBOARD_NAME)


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    """Run agents and submissions on a split; print, save and regenerate the leaderboard."""
    out, page = leaderboard_path(args.out, args.leaderboard)
    if args.regenerate:
        path = regenerate_leaderboard(out, page)
        console.print(f"regenerated {path} from {out}", markup=False, highlight=False)
        return 0
    for sub in args.submission or []:
        if not Path(sub).is_file():
            print_error(f"no such submission file: {sub}")
            return EXIT_USAGE
    apply_server_argument(args)
    config = BenchConfig(
        agents=_agents(args, console),
        submissions=args.submission or [],
        suites=args.suite,
        split=args.split,
        scale=args.scale,
        cost=args.cost,
        engine=args.engine,
        workers=args.workers,
        ray=args.ray,
        task_ids=args.task,
        limit=args.limit,
    )
    state = {"done": 0, "total": 0}

    def advance(done: int, total: int) -> None:
        state.update(done=done, total=total)
        progress.update(job, completed=done, total=total)

    labels = ", ".join([a.label for a in config.agents] + list(config.submissions))
    console.print(
        f"bench: {labels} on the {args.split} split, {_where(args)}; results go to {out}",
        markup=False,
        highlight=False,
    )
    what = f"bench {args.split} / {args.scale or 'default'} / {args.cost}"
    try:
        with progress_bar(console) as progress:
            job = progress.add_task(what, total=None)
            result = run_bench(config, run=args.name, progress=advance)
    except KeyboardInterrupt:
        print_error(
            f"interrupted after {state['done']} of {state['total'] or '?'} steps; nothing was saved "
            "(a bench run writes its results when it finishes). Run the command again to start over, "
            "or a shorter run with --limit N or --task ID"
        )
        return EXIT_INTERRUPTED
    rows = []
    for entry in result.agents:
        status = "ok" if entry.validated else f"NOT VALIDATED ({len(entry.issues)} issues)"
        errors = {v: n for v, n in entry.summary["verdicts"].items() if v in {u.value for u in Unscored}}
        if errors:
            status += " " + ", ".join(f"{v}={n}" for v, n in errors.items())
        rows.append((entry.label, entry.summary, status))
    fp = result.fingerprint
    title = (
        f"Quill bench: {', '.join(s['name'] for s in fp['suites'])} / {fp['split']} / {fp['scale']} / "
        f"{fp['cost_mode']} / {fp['engine']} "
        f"({len(result.tasks)} tasks, {result.seconds:.1f}s, {_where(args)})"
    )
    console.print(title, markup=False, highlight=False)
    for table in _summary_tables(rows):
        console.print(table)
    failed = False
    for entry in result.agents:
        if entry.issues:
            failed = True
            console.print(f"[red]{entry.label}[/]: {len(entry.issues)} claims or lines do not validate:")
            _print_issues(console, entry.issues)
        agent_errors = [r for r in entry.records if r.verdict is Unscored.AGENT_ERROR]
        if agent_errors:
            console.print(
                f"[yellow]{entry.label}: the agent failed on {len(agent_errors)} tasks:[/] "
                f"{agent_errors[0].error}",
                highlight=False,
            )
    plots = not args.no_plots
    if plots and importlib.util.find_spec("matplotlib") is None:
        plots = False
        console.print(
            'plots skipped: matplotlib is not installed (pip install "quill-sql[plot]")',
            style="yellow",
            markup=False,
        )
    paths = save_run(result, out, plots=plots)
    lines = [f"results: {paths['json']}"]
    lines += [f"plot: {paths[key]}" for key in ("fast_p", "speedups") if key in paths]
    lines += [
        f"submission ({k.split(':', 1)[1]}): {p}" for k, p in paths.items() if k.startswith("submission:")
    ]
    if not args.no_leaderboard:
        lines.append(f"leaderboard: {regenerate_leaderboard(out, page)}")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    """Re-run every action of a submission and report claims that do not reproduce."""
    if not Path(args.file).is_file():
        print_error(f"no such submission file: {args.file}")
        return EXIT_USAGE
    with progress_bar(console) as progress:
        job = progress.add_task(f"validating {args.file}", total=None)
        report = validate_submission(
            args.file,
            suites=args.suite,
            scale=args.scale,
            cost=args.cost,
            workers=args.workers,
            ray=args.ray,
            progress=lambda done, total: progress.update(job, completed=done, total=total),
        )
    if args.json == "-":
        print(json.dumps(report.to_dict(), indent=1))
        return 0 if report.ok else 1
    s = report.summary
    settings = report.settings
    title = (
        f"re-validation of {args.file}: {report.lines} lines, {len(report.records)} actions re-run "
        f"(scale {settings['scale'] or 'default'}, cost {settings['cost']})"
    )
    console.print(title, markup=False, highlight=False)
    for table in _summary_tables([(Path(args.file).name, s, "ok" if report.ok else "FAILED")]):
        console.print(table)
    if CostMode.parse(settings["cost"]) is CostMode.WALL:
        ci = s.get("wall_ci") or {}
        console.print(
            f"wall mode: mean 95% interval of the speedups {ci.get('mean_lower')}..{ci.get('mean_upper')}; "
            "tiers are checked against each task's interval",
            highlight=False,
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        console.print(f"report: {args.json}", highlight=False, markup=False)
    if report.ok:
        console.print("[green]OK[/]: every line parsed and every claim reproduced")
        return 0
    console.print(f"[red]FAILED[/]: {len(report.issues)} issues")
    _print_issues(console, report.issues, limit=args.max_issues)
    return 1


def _workers_default() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _where(args: argparse.Namespace) -> str:
    """Where a run scores, as the first line says it.

    >>> _where(argparse.Namespace(workers=2, ray=None)), _where(argparse.Namespace(workers=4, ray="auto"))
    ('2 workers', '4 Ray actors (auto)')
    """
    return f"{args.workers} workers" if args.ray is None else f"{args.workers} Ray actors ({args.ray})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``quill bench`` and ``quill validate`` to the ``quill`` command."""
    bench = subparsers.add_parser("bench", help="run agents on a split and update the leaderboard")
    bench.add_argument(
        "--agent",
        "--agents",
        dest="agents",
        action="append",
        default=None,
        help="identity, reference, heuristic, teacher:MODEL or policy:PATH (repeat, or comma-separate; "
        "default: identity,reference,heuristic)",
    )
    bench.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint of teacher agents")
    bench.add_argument("--api-key", default=None, help="API key of teacher agents (default: $OPENAI_API_KEY)")
    bench.add_argument(
        "--submission", action="append", default=None, help="a submission JSONL to score (repeatable)"
    )
    bench.add_argument(
        "--suite", action="append", default=None, help="suite name or directory (default: all with tasks)"
    )
    bench.add_argument("--split", default="test", choices=["train", "test", "all"])
    bench.add_argument("--scale", default=None, choices=SCALES, help="default: each suite's (medium)")
    bench.add_argument("--cost", type=enum_arg(CostMode), default=CostMode.WORK, choices=tuple(CostMode))
    bench.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=sorted(BACKENDS),
        help="the backend the suites run on (duckdb and postgres need their extras; tasks are ported "
        "to it; postgres runs on --url's server)",
    )
    add_server_argument(bench)
    bench.add_argument(
        "--workers", type=int, default=_workers_default(), help="worker processes (0: in-process)"
    )
    add_ray_argument(bench)
    bench.add_argument("--task", action="append", default=None, help="only this task id (repeatable)")
    bench.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    bench.add_argument("--name", default=None, help="run name (default: time-split-scale-cost)")
    bench.add_argument(
        "--out",
        default=None,
        help=f"results directory (default: {DEFAULT_RESULTS}); nothing is written outside it",
    )
    bench.add_argument(
        "--leaderboard",
        default=None,
        help=f"the Markdown page to regenerate (default: OUT/{LEADERBOARD_NAME})",
    )
    bench.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard page")
    bench.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    bench.add_argument("--regenerate", action="store_true", help="only regenerate the page from --out")
    bench.set_defaults(func=cmd_bench)

    val = subparsers.add_parser("validate", help="re-run a submission and check that its claims reproduce")
    val.add_argument("file", help="submission JSONL: {task_id, action, [verdict, speedup, reward], ...}")
    val.add_argument("--suite", action="append", default=None, help="suite name or directory (default: all)")
    val.add_argument(
        "--scale", default=None, choices=SCALES, help="default: the submission's scale, else each suite's"
    )
    val.add_argument(
        "--cost",
        type=enum_arg(CostMode),
        default=None,
        choices=tuple(CostMode),
        help="default: the submission's, else work",
    )
    val.add_argument(
        "--workers", type=int, default=_workers_default(), help="worker processes (0: in-process)"
    )
    add_ray_argument(val)
    val.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="--json alone: print the full report as JSON (and nothing else) to stdout; "
        "--json PATH: also write it to PATH",
    )
    val.add_argument("--max-issues", type=int, default=200, help="issues to print")
    val.set_defaults(func=cmd_validate)


__all__ = ["cmd_bench", "cmd_validate", "register"]
