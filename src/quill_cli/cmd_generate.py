"""``quill generate`` (the ReST-EM data loop) and ``quill export`` (SFT/DPO files and a card)."""

from __future__ import annotations

import argparse
import json
from concurrent.futures import BrokenExecutor
from typing import Any

from rich.console import Console

from quill_agents.export import ExportConfig, export, push_to_hub
from quill_agents.generate import DataLoop, GenerateConfig
from quill_agents.proposers import build_proposer, build_teacher
from quill_agents.slow_sources import TeacherSource
from quill_cli.console import (
    EXIT_INTERRUPTED,
    EXIT_NEGATIVE,
    add_ray_argument,
    print_error,
    print_warning,
    scale_list,
)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``export`` to the ``quill`` command's subparsers."""
    gen = sub.add_parser("generate", help="generate verified training examples (ReST-EM data loop)")
    gen.add_argument("--out", required=True, help="run directory (records.jsonl, draws.jsonl); reruns resume")
    gen.add_argument("--target", type=int, default=1000, help="stop at this many verified records")
    gen.add_argument(
        "--teacher",
        default="heuristic",
        help="optimizers, comma-separated: heuristic (offline), reference (offline fallback), openai",
    )
    gen.add_argument("--model", default=None, help="teacher model name (with --teacher openai)")
    gen.add_argument("--base-url", default=None, help="OpenAI-compatible endpoint (with --teacher openai)")
    gen.add_argument(
        "--slow-source",
        default="auto",
        choices=["auto", "querygen", "teacher"],
        help="who writes slow queries (auto: the teacher when one is configured)",
    )
    gen.add_argument(
        "--suites",
        default="",
        help="comma-separated schemas (default: every training schema; the held-out test schemas "
        "clinic and logistics only with --include-test-schemas)",
    )
    gen.add_argument(
        "--include-test-schemas",
        action="store_true",
        help="ALSO draw from the held-out test schemas and keep queries shaped like test-split tasks "
        "(the data then overlaps the test split: never train a model you will test on it)",
    )
    gen.add_argument("--scale", default="medium", type=scale_list, help="scale tier(s), comma-separated")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--k", type=int, default=4, help="optimizations asked for per slow query")
    gen.add_argument("--round-size", type=int, default=20, help="draws per ReST-EM round")
    gen.add_argument("--max-draws", type=int, default=None, help="give up after this many draws")
    gen.add_argument("--max-baseline-seconds", type=float, default=2.0)
    gen.add_argument("--min-baseline-work", type=int, default=2000)
    gen.add_argument("--max-per-shape", type=int, default=3, help="slow queries kept per literal-free shape")
    gen.add_argument("--max-per-query", type=int, default=2, help="rewrites kept per slow query")
    gen.add_argument(
        "--variants", type=int, default=None, help="variant databases to verify on (default: every mutation)"
    )
    gen.add_argument(
        "--workers", type=int, default=0, help="processes that score each draw's candidates (0: in-process)"
    )
    add_ray_argument(gen)
    gen.add_argument("--json", action="store_true", help="print the final statistics as JSON")
    gen.set_defaults(func=cmd_generate)

    exp = sub.add_parser("export", help="export a generated store to SFT/DPO JSONL and a dataset card")
    exp.add_argument("store", help="run directory of quill generate (or its records.jsonl)")
    exp.add_argument("--out", required=True, help="output directory")
    exp.add_argument("--multiplier", type=int, default=4, help="rows per example incl. renamed copies")
    exp.add_argument("--min-gap", type=float, default=0.1, help="smallest reward gap of a DPO pair")
    exp.add_argument("--max-pairs", type=int, default=4, help="DPO pairs per slow query")
    exp.add_argument("--seed", type=int, default=0, help="seed of the renamings")
    exp.add_argument("--verify", action="store_true", help="score every renamed example; drop failures")
    exp.add_argument("--no-hf", action="store_true", help="skip the Hugging Face datasets copy")
    exp.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="then upload the folder to this dataset repository of the Hub (user/name; created "
        "when missing; credentials from HF_TOKEN or `hf auth login`)",
    )
    exp.add_argument("--private", action="store_true", help="with --push-to-hub: a private repository")
    exp.add_argument(
        "--include-test-schemas",
        action="store_true",
        help="export records from the held-out test schemas too (refused by default: they overlap "
        "the test split)",
    )
    exp.set_defaults(func=cmd_export)


def _describe(stats: Any) -> str:
    mix = stats.mix
    usage = stats.usage
    tokens = int(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
    return (
        f"kept {stats.kept}/{stats.target} | draws {stats.draws} | "
        f"acc {stats.acceptance_rate:.0%} | unique {stats.unique_share:.0%} | "
        f"mix {mix.get('2-10x', 0):.0%}/{mix.get('10-100x', 0):.0%}/{mix.get('100x+', 0):.0%} "
        f"(<2x {mix.get('<2x', 0):.0%}) | tokens {tokens:,} | ${usage.get('dollars', 0.0):.2f}"
    )


def cmd_generate(args: argparse.Namespace, console: Console) -> int:
    """Run the data loop until ``--target`` verified records are stored."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    names = _csv(args.teacher)
    teacher = build_teacher(args.model, args.base_url) if {"openai", "teacher"} & set(names) else None
    if args.slow_source == "teacher" and teacher is None:
        teacher = build_teacher(args.model, args.base_url)
    use_teacher_source = args.slow_source == "teacher" or (args.slow_source == "auto" and teacher is not None)
    config = GenerateConfig(
        out=args.out,
        target=args.target,
        suites=_csv(args.suites),
        scales=_csv(args.scale),
        seed=args.seed,
        k=args.k,
        round_size=args.round_size,
        max_draws=args.max_draws,
        max_baseline_seconds=args.max_baseline_seconds,
        min_baseline_work=args.min_baseline_work,
        max_per_shape=args.max_per_shape,
        max_per_query=args.max_per_query,
        num_variants=args.variants,
        teacher=args.teacher,
        model=args.model,
        include_test_schemas=args.include_test_schemas,
        workers=args.workers,
        ray=args.ray,
    )
    if args.include_test_schemas:
        print_warning(
            "--include-test-schemas: this run may draw from the held-out test schemas and test-split "
            "query shapes; its records overlap the test split"
        )
    proposer = build_proposer(names, teacher)
    loop = DataLoop(config, proposer, TeacherSource(teacher) if use_teacher_source else None)
    if loop.next_draw:
        console.print(f"resuming {args.out}: {len(loop.store)} records after {loop.next_draw} draws")
    progress = Progress(
        TextColumn("[bold]generate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )
    with progress:
        job = progress.add_task(_describe(loop.stats), total=config.target, completed=loop.stats.kept)

        def update(stats: Any) -> None:
            progress.update(job, completed=stats.kept, description=_describe(stats))
            if not console.is_terminal and stats.draws % config.round_size == 0:  # a line per round in logs
                console.print(f"generate: {_describe(stats)}", markup=False, highlight=False)

        def saved() -> str:
            return (
                f"{len(loop.store)} verified records are saved in {loop.store.path} ({loop.next_draw} draws "
                f"logged in {loop.draw_log.path}); run the same command again to resume where it stopped"
            )

        try:
            stats = loop.run(update)
        except KeyboardInterrupt:
            progress.stop()
            print_error(f"interrupted: {saved()}")
            return EXIT_INTERRUPTED
        except BrokenExecutor as err:  # a scoring worker was killed (out of memory, a signal)
            progress.stop()
            print_error(f"a scoring worker died ({err}); {saved()}")
            return EXIT_NEGATIVE
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        console.print(_describe(stats), markup=False, highlight=False)
        console.print(f"records: {loop.store.path}", markup=False, highlight=False)
    return 0 if stats.kept >= config.target else 1


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    """Write SFT/DPO JSONL (with renamed copies), a datasets copy and a dataset card."""
    config = ExportConfig(
        multiplier=args.multiplier,
        min_gap=args.min_gap,
        max_pairs_per_query=args.max_pairs,
        seed=args.seed,
        hf=not args.no_hf,
        verify=args.verify,
        include_test_schemas=args.include_test_schemas,
    )
    with console.status("exporting"):
        report = export(args.store, args.out, config)
    console.print(
        f"{report.records} records -> {report.sft_rows} SFT rows ({report.augmented_rows} renamed), "
        f"{report.dpo_rows} DPO pairs; card: {report.files['card']}",
        markup=False,
        highlight=False,
    )
    if report.augment_failures or report.verify_failures:
        console.print(
            f"[yellow]{report.augment_failures} renamings failed, "
            f"{report.verify_failures} renamed examples did not verify (dropped)[/]"
        )
    if report.held_out_schemas:
        print_warning(
            f"exported records of the held-out test schemas {', '.join(report.held_out_schemas)} "
            "(--include-test-schemas): do not test a model trained on them on the test split"
        )
    if args.push_to_hub:
        try:
            with console.status(f"pushing to {args.push_to_hub}"):
                url = push_to_hub(args.out, args.push_to_hub, private=args.private)
        except OSError as err:  # the Hub's HTTP errors are OSErrors too
            print_error(
                f"the export is written in {args.out}, but pushing it to {args.push_to_hub} failed: {err}"
            )
            return EXIT_NEGATIVE
        console.print(f"pushed to the Hub: {url}", markup=False, highlight=False)
    return 0
