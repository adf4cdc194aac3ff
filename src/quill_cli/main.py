"""The ``quill`` command: one parser over the environment's and the agents' commands.

This package is the only place that sees both :mod:`quill_env` (demo, evaluate, tasks) and
:mod:`quill_agents` (generate, export, bench, validate, train); neither of those imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from quill_cli import cmd_bench, cmd_env, cmd_generate, cmd_serve, cmd_train
from quill_cli.console import EXIT_INTERRUPTED, EXIT_NEGATIVE, EXIT_USAGE, make_console, print_error
from quill_env.errors import QuillError

COMMANDS = (cmd_env, cmd_generate, cmd_bench, cmd_train, cmd_serve)
"""The modules whose ``register(subparsers)`` adds the subcommands, in ``quill --help`` order."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``quill``."""
    parser = argparse.ArgumentParser(
        prog="quill",
        description="Quill: verified SQL optimization for language models.",
        epilog="exit codes: 0 success, 1 negative outcome (see each command), 2 usage error, 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


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
