"""``quill serve``: the environment over OpenEnv's HTTP/WebSocket contract (the ``serve`` extra)."""

from __future__ import annotations

import argparse

from rich.console import Console

from quill_cli.console import EXIT_OK, enum_arg, sql_arg
from quill_env.backends import BACKENDS, DEFAULT_ENGINE
from quill_env.errors import ConfigError
from quill_env.measure import CostMode
from quill_env.serve import server
from quill_env.tasks import SCALES


def cmd_serve(args: argparse.Namespace, console: Console) -> int:
    """Serve sessions of ``SQLOptEnv`` until interrupted."""
    if args.query and not args.database:
        raise ConfigError("--query needs --database (the file the queries run on)")
    if args.database and not args.query:
        raise ConfigError("--database needs at least one --query (the slow queries to serve)")
    where = (
        {"database": args.database, "queries": [sql_arg(q, "--query") for q in args.query]}
        if args.database
        else {"suite": args.suite, "split": args.split, "scale": args.scale, "engine": args.engine}
    )
    app = server.create_app(
        max_sessions=args.max_sessions,
        session_timeout=args.session_timeout,
        max_attempts=args.max_attempts,
        cost=args.cost,
        **where,
    )
    uvicorn_server = server.make_server(app, args.host, args.port, log_level=args.log_level)
    console.print(
        f"Quill on http://{args.host}:{args.port} (WebSocket: ws://{args.host}:{args.port}/ws), "
        f"at most {args.max_sessions} sessions",
        highlight=False,
        markup=False,
    )
    uvicorn_server.run()
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``quill`` command's subparsers."""
    serve = sub.add_parser(
        "serve",
        help="serve the environment over HTTP and WebSocket (OpenEnv's contract)",
        description='Serve Quill-v1 sessions over HTTP and WebSocket; needs pip install "quill-sql[serve]".',
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--max-sessions", type=int, default=8, help="sessions open at once; one more is refused"
    )
    serve.add_argument(
        "--session-timeout",
        type=float,
        default=300.0,
        help="seconds a session may stay idle before it is closed",
    )
    serve.add_argument("--suite", default=None, help="suite name (default: every shipped suite)")
    serve.add_argument("--split", default="train", choices=["train", "test", "all"])
    serve.add_argument("--scale", default=None, choices=SCALES, help="default: each suite's (medium)")
    serve.add_argument(
        "--engine", default=DEFAULT_ENGINE, choices=sorted(BACKENDS), help="the backend the suites run on"
    )
    serve.add_argument("--max-attempts", type=int, default=1, help="attempts per episode (> 1: multi-turn)")
    serve.add_argument("--cost", type=enum_arg(CostMode), default=CostMode.WORK, choices=tuple(CostMode))
    serve.add_argument(
        "--database",
        default=None,
        help="serve your own SQLite or DuckDB file (never modified) instead of the suites; with --query",
    )
    serve.add_argument(
        "--query",
        action="append",
        default=[],
        help="a slow query on --database, inline or @file (repeatable: each is a task)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(func=cmd_serve)
