"""What every ``quill`` command shares: the console, error output, exit codes, argument types.

Output written to a pipe or a file is plain text: no colours or other terminal codes, and no
wrapping or truncation at 80 columns (scripts can copy every identifier). Error messages go to
standard error. Exit codes: 0 success, 1 the command ran but its outcome is negative (e.g. a
candidate that is not correct), 2 a usage error (bad argument, unknown name, unreadable file),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from quill_env.errors import ConfigError
from quill_env.tasks import SCALES

E = TypeVar("E", bound=enum.Enum)

PIPE_WIDTH = 100_000
"""The console width when output is not a terminal: wide enough that no table is ever cut."""
EXIT_OK, EXIT_NEGATIVE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
"""The exit codes of every ``quill`` command (see the module docstring)."""


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


def sql_arg(text: str, option: str) -> str:
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


def format_cost(value: float, unit: str) -> str:
    """A cost for people: work units as whole numbers, seconds with a sensible unit.

    >>> format_cost(123456.0, "vm_steps")
    '123,456 vm_steps'
    >>> format_cost(0.00042, "seconds")
    '420 µs'
    >>> format_cost(0.0123, "seconds")
    '12.3 ms'
    >>> format_cost(2.5, "seconds")
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


def progress_bar(console: Console) -> Progress:
    """A progress bar on a terminal; nothing at all when output is piped."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def enum_arg(kind: type[E]) -> Callable[[str], E]:
    """An argparse type for an enum of names: the member, or argparse's "invalid choice" message.

    >>> from quill_env.measure import CostMode
    >>> enum_arg(CostMode)("wall")
    <CostMode.WALL: 'wall'>
    """

    def parse(text: str) -> E:
        try:
            return kind(text)
        except ValueError:
            names = ", ".join(repr(m.value) for m in kind)
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {names})") from None

    parse.__name__ = kind.__name__
    return parse


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--url URL``: the PostgreSQL server that ``--engine postgres`` builds and scores on."""
    parser.add_argument(
        "--url",
        default=None,
        metavar="URL",
        help="with --engine postgres: the server where Quill builds the suites and its working copies, "
        "e.g. postgresql://user@host:5432/postgres (default: $QUILL_POSTGRES_URL; credentials may come "
        "from PG* variables or a service file instead of the URL)",
    )


def apply_server_argument(args: argparse.Namespace) -> None:
    """Make ``--url`` the server of this run (``QUILL_POSTGRES_URL``, read by the PostgreSQL backend)."""
    if getattr(args, "url", None):
        os.environ["QUILL_POSTGRES_URL"] = args.url


def add_ray_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]``: score on Ray actors instead of local processes."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help='score on --workers Ray actors (pip install "quill-sql[ray]"): --ray alone joins the '
        "cluster `ray start` runs here (or $RAY_ADDRESS); --ray local starts a Ray instance on this "
        "machine; --ray HOST:PORT or ray://HOST:PORT joins that cluster. Work-mode results are the "
        "same as with local workers",
    )
