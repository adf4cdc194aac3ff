"""The one observation and prompt format: task -> observation -> chat messages, completion -> SQL.

Every component that shows a task to a model (the environment, the data export, the teacher,
the policy agent, the trainers) goes through this module, so a model sees the same format in
data generation, training and evaluation, whichever engine the task runs on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

SYSTEM_PROMPT = (
    "You are an expert database engineer. You rewrite slow SQL queries so they return exactly "
    "the same rows (same columns, same multiset of rows, same order when the query orders) but "
    "run faster. You may precede the query with at most {max_indexes} CREATE INDEX statements "
    "on existing tables and columns. Do not change what the query returns, do not add a LIMIT, "
    "do not use random or current-time functions. Answer with one ```sql block holding the "
    "optional CREATE INDEX statements and the rewritten query."
)

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*)\Z", re.DOTALL)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


SQL_FENCE_LANGUAGES = frozenset({"sql", "sqlite", "duckdb", "postgres", "postgresql", "psql", "mysql"})
"""Markdown fence languages that mark a SQL block in a completion (models tag fences with the
engine's name as often as with ``sql``)."""

OUTPUT_NOTE = "\n-- the application reads only: "
"""What follows the slow query in an observation when the application reads only some columns."""

LEGACY_ENGINE = "SQLite"
"""The engine of an observation without an ``engine`` key (all were SQLite's before the key)."""


def make_observation(
    *, schema: str, query: str, plan: str, engine: str, output_columns: Sequence[str] | None = None
) -> dict[str, str]:
    """The observation of a task: its schema, slow query (with the output note), plan and engine.

    >>> make_observation(schema="CREATE TABLE t (a INT);", query="SELECT * FROM t ", plan="SCAN t",
    ...                  engine="SQLite", output_columns=["a"])["query"]
    'SELECT * FROM t\\n-- the application reads only: a'
    """
    shown = query.strip()
    if output_columns:
        shown += OUTPUT_NOTE + ", ".join(output_columns)
    return {"schema": schema, "query": shown, "plan": plan, "engine": engine}


def observed_query(observation: Mapping[str, str]) -> str:
    """The slow query of an observation, without the note on the columns the application reads."""
    return observation["query"].split(OUTPUT_NOTE.rstrip())[0].strip()


def observed_output_columns(observation: Mapping[str, str]) -> tuple[str, ...] | None:
    """The columns the application reads, from the observation's note (``None`` when absent).

    >>> observed_output_columns({"query": "SELECT * FROM t\\n-- the application reads only: id, total"})
    ('id', 'total')
    """
    _, sep, note = observation["query"].partition(OUTPUT_NOTE.rstrip())
    if not sep:
        return None
    cols = tuple(c.strip() for c in note.strip().split(",") if c.strip())
    return cols or None


def extract_sql(completion: str) -> str:
    """Take the SQL out of a model completion.

    The last fenced code block wins (preferring blocks tagged ``sql``); an unterminated final
    fence is accepted (a completion cut at the token limit); reasoning in ``<think>`` tags is
    dropped; text without any fence is returned stripped, as plain SQL.

    >>> extract_sql("Try this:\\n```sql\\nSELECT 1\\n```\\nand then\\n```sql\\nSELECT 2\\n```")
    'SELECT 2'
    >>> extract_sql("  SELECT a FROM t  ")
    'SELECT a FROM t'
    """
    text = _THINK.sub("", completion)
    blocks = _FENCE.findall(text)
    if blocks:
        sql_blocks = [body for lang, body in blocks if lang.lower() in SQL_FENCE_LANGUAGES]
        return (sql_blocks or [body for _, body in blocks])[-1].strip()
    tail = _OPEN_FENCE.search(text)
    if tail:
        return tail.group(2).strip()
    return text.strip()


def format_feedback(feedback: Mapping[str, object]) -> str:
    """Render the feedback of a previous attempt (multi-turn episodes) as one short paragraph.

    >>> format_feedback({"verdict": "wrong_result", "error": "row count 3 != 4", "speedup": None})
    'Previous attempt: verdict=wrong_result; error: row count 3 != 4'
    """
    parts = [f"verdict={feedback.get('verdict')}"]
    speedup = feedback.get("speedup")
    if isinstance(speedup, (int, float)):
        parts.append(f"speedup={speedup:.2f}x")
    if feedback.get("error"):
        parts.append(f"error: {feedback['error']}")
    return "Previous attempt: " + "; ".join(parts)


def build_messages(
    observation: Mapping[str, str], *, max_indexes: int = 3, system: bool = True
) -> list[dict[str, str]]:
    """Turn an observation into chat messages for an instruction-tuned model.

    Args:
        observation: a ``Quill-v1`` observation with ``schema``, ``query``, ``plan`` and
            ``engine`` (and ``feedback`` in multi-turn episodes).
        max_indexes: how many ``CREATE INDEX`` statements the prompt allows.
        system: include the system message (some chat templates have none).

    Returns:
        A list of ``{"role", "content"}`` dicts.
    """
    user = (
        f"Database schema ({observation.get('engine') or LEGACY_ENGINE}):\n"
        f"```sql\n{observation['schema'].strip()}\n```\n\n"
        f"Slow query:\n```sql\n{observation['query'].strip()}\n```\n\n"
        f"Query plan of the slow query:\n```\n{observation.get('plan', '').strip()}\n```\n"
    )
    if observation.get("feedback"):
        user += f"\n{observation['feedback']}\n"
    user += "\nRewrite the query to run faster with exactly the same results."
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT.format(max_indexes=max_indexes)})
    return messages


def format_completion(sql: str) -> str:
    """Format an answer the way the prompt asks for it (used for SFT targets).

    >>> format_completion("SELECT 1")
    '```sql\\nSELECT 1\\n```'
    """
    return f"```sql\n{sql.strip()}\n```"
