"""The benchmark leaderboard: run agents on a split in worker processes, score, report, re-validate.

>>> from quill_agents.leaderboard import BenchConfig, parse_agent
>>> BenchConfig(agents=[parse_agent("identity")], suites=["shop"], scale="small", workers=0).cost
<CostMode.WORK: 'work'>

Typical use goes through ``quill bench`` and ``quill validate``; in Python::

    result = run_bench(BenchConfig(agents=[parse_agent("reference")], scale="small"))
    save_run(result, "outputs/leaderboard")
    regenerate_leaderboard("outputs/leaderboard", "outputs/leaderboard/LEADERBOARD.md")
    report = validate_submission("run.submission.jsonl")
"""

from quill_agents.leaderboard.agents import DEFAULT_AGENTS, AgentSpec, available, build_agent, parse_agent
from quill_agents.leaderboard.bench import (
    AgentResult,
    BenchConfig,
    BenchResult,
    ValidationReport,
    run_bench,
    select_tasks,
    validate_submission,
)
from quill_agents.leaderboard.metrics import FAST_P, fast_p, geomean, summarize
from quill_agents.leaderboard.pool import (
    Job,
    Outcome,
    Player,
    RunConfig,
    StepRecord,
    Unscored,
    Worker,
    make_jobs,
    run_jobs,
)
from quill_agents.leaderboard.report import (
    DEFAULT_LEADERBOARD,
    DEFAULT_RESULTS,
    load_results,
    regenerate_leaderboard,
    render_leaderboard,
    save_run,
)
from quill_agents.leaderboard.submission import Issue, Submission, parse_submission, read_submission

__all__ = [
    # agents
    "DEFAULT_AGENTS",
    "AgentSpec",
    "available",
    "build_agent",
    "parse_agent",
    # running
    "AgentResult",
    "BenchConfig",
    "BenchResult",
    "Job",
    "Player",
    "RunConfig",
    "StepRecord",
    "Outcome",
    "Unscored",
    "Worker",
    "make_jobs",
    "run_bench",
    "run_jobs",
    "select_tasks",
    # metrics
    "FAST_P",
    "fast_p",
    "geomean",
    "summarize",
    # submissions
    "Issue",
    "Submission",
    "ValidationReport",
    "parse_submission",
    "read_submission",
    "validate_submission",
    # reports
    "DEFAULT_LEADERBOARD",
    "DEFAULT_RESULTS",
    "load_results",
    "regenerate_leaderboard",
    "render_leaderboard",
    "save_run",
]
