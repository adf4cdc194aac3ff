"""How long the ``tpch`` suite's tiers take to build (issue 14: the medium tier in under a minute).

Each tier is built from scratch, in a fresh cache, through ``Suite.database`` (``dbgen`` in
DuckDB's packaged extension, then the engine's ``create_file`` with TPC-H's keys), once per engine,
each in a child process so that one build's memory does not count in the next. Records wall seconds
and the child's peak RSS. The large tier (SF 1) is built only with ``--large``.

    .venv/bin/pip install "quill-sql[tpch]"
    .venv/bin/python benchmarks/tpch_build.py [--tiers small,medium] [--engines sqlite,duckdb] [--large]

Writes ``benchmarks/results/tpch_build.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "tpch_build.json"
TARGET_SECONDS = {"medium": 60.0}
"""The project's limit: the medium tier in under a minute."""


def build_one(tier: str, engine: str) -> dict:
    """Build one tier for one engine in a fresh cache (in this process) and measure it."""
    os.environ["QUILL_CACHE"] = tempfile.mkdtemp(prefix="quill-tpch-build-")
    from quill_env import get_suite
    from quill_env.tpch.dbgen import generator_version

    suite = get_suite("tpch")
    start = time.perf_counter()
    path = suite.database(tier, engine=engine)
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    path.unlink()
    return {
        "tier": tier,
        "engine": engine,
        "scale_factor": suite.generator["scale_factors"][tier],
        "rows": sum(t["rows"][tier] for t in suite.generator["tables"].values()),
        "seconds": round(seconds, 2),
        "bytes": size,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "generator": generator_version(),
    }


def main(argv: list[str] | None = None) -> int:
    """Build every requested tier and engine in a child process each; write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiers", default="small,medium")
    parser.add_argument("--engines", default="sqlite,duckdb")
    parser.add_argument("--large", action="store_true", help="also build SF 1 (minutes, GBs of memory)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(build_one(*args.one)))
        return 0
    tiers = args.tiers.split(",") + (["large"] if args.large else [])
    runs = []
    for tier in tiers:
        for engine in args.engines.split(","):
            child = subprocess.run(
                [sys.executable, __file__, "--one", tier, engine], check=True, capture_output=True, text=True
            )
            run = json.loads(child.stdout.strip().splitlines()[-1])
            if tier in TARGET_SECONDS:
                run["target_seconds"] = TARGET_SECONDS[tier]
                run["under_target"] = run["seconds"] < TARGET_SECONDS[tier]
            runs.append(run)
            print(
                f"{tier:7} {engine:7} sf {run['scale_factor']:<5} {run['rows']:>9} rows "
                f"{run['seconds']:7.2f} s  {run['bytes'] / 1e6:7.1f} MB  peak RSS {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    result = {
        "command": "python benchmarks/tpch_build.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"figures in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
