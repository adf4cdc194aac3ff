"""The "junior developer" prompt (write a slow query) and the checks on what comes back.

Optimization prompts are not here: they come from :mod:`quill_env.prompt`, the one format
shared with training and evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Tokenizer, TokenType

from quill_env.action_policy import split_statements
from quill_env.authoring.querygen import FAMILIES
from quill_env.dialect import SUITE_DIALECT
from quill_env.errors import UnknownNameError
from quill_env.prompt import extract_sql

PATTERN_HINTS: dict[str, str] = {
    "index_single": "filters on a column that has no index, so every row is scanned",
    "index_eq": "filters with = on a column that has no index",
    "index_range": "filters a range (BETWEEN, <, >) of a column that has no index",
    "index_composite": "filters on two or more columns that would need a composite index",
    "index_fk": "joins or filters on a foreign-key column that has no index",
    "fk_join": "joins on a foreign-key column that has no index",
    "subquery_to_join": "uses IN (SELECT ...) or a derived table where a plain JOIN would do",
    "correlated_subquery": "computes a value per row with a correlated subquery in the SELECT list or WHERE",
    "correlated_count": "counts child rows with a correlated COUNT(*) subquery for each parent row",
    "correlated_agg_index": "aggregates child rows in a correlated subquery over an unindexed key",
    "repeated_subquery": "repeats the same subquery several times in one statement",
    "count_exists": "uses (SELECT COUNT(*) ...) > 0 where EXISTS would stop at the first row",
    "or_to_in": "chains many OR equalities on one column instead of IN (...)",
    "or_chain": "chains many OR equalities on one column instead of IN (...)",
    "select_star": "uses SELECT * (or a wide projection) although few columns are needed",
    "nonsargable": "wraps a filtered column in a function or arithmetic so no index can be used",
    "nonsargable_date": "wraps a date column in a date function in the WHERE clause",
    "nonsargable_arith": "applies arithmetic to a column in the WHERE clause instead of to the constant",
    "distinct_join": "joins a child table and deduplicates with DISTINCT where EXISTS would do",
    "union_all": "uses UNION (which sorts and deduplicates) where the branches cannot overlap",
    "latest_per_group": "finds the latest row per group with a correlated MAX subquery",
    "order_limit": "sorts a whole table to take the top few rows of an unindexed ordering",
    "not_in": "uses NOT IN (SELECT ...) over a large table",
    "cartesian_product": "lists tables in FROM without a join condition and filters afterwards",
    "cartesian": "lists tables in FROM without a join condition and filters afterwards",
    "missing_where": "aggregates a whole table in a subquery and filters only afterwards",
}
"""What a query written in each pattern (task tag or generator family) does wrong."""

SUITE_ENGINE = "SQLite"
"""The engine whose SQL the data loop's slow queries are written in (the suites' dialect)."""

SLOW_QUERY_SYSTEM = (
    "You write realistic SQL the way a junior developer would: correct, readable, but slow. "
    "The query must run on {engine}, read only the tables of the given schema, return a "
    "deterministic result (no random() or current-time functions, no LIMIT without ORDER BY) "
    "and be a single SELECT statement (WITH ... SELECT is fine). Answer with one ```sql block "
    "holding only that query."
)

_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN, TokenType.VALUES}
_ACTION_STARTS = _QUERY_STARTS | {TokenType.CREATE}


def known_patterns() -> set[str]:
    """Every pattern name :func:`slow_query_messages` accepts (hints and generator families)."""
    return set(PATTERN_HINTS) | set(FAMILIES)


def pattern_hint(pattern: str) -> str:
    """What a slow query of ``pattern`` does wrong.

    Raises:
        UnknownNameError: ``pattern`` is neither a task pattern tag nor a generator family.
    """
    if pattern in PATTERN_HINTS:
        return PATTERN_HINTS[pattern]
    if pattern in known_patterns():
        return pattern.replace("_", " ")
    raise UnknownNameError("pattern", pattern, known_patterns())


def _example_text(example: object) -> str | None:
    """Render an earlier accepted task (a query string, a mapping or a ``Task``)."""
    if isinstance(example, str):
        query, patterns = example, ()
    elif isinstance(example, Mapping):
        query, patterns = example.get("query"), example.get("patterns") or example.get("pattern") or ()
    else:
        query, patterns = getattr(example, "query", None), getattr(example, "patterns", ())
    if not isinstance(query, str) or not query.strip():
        return None
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    head = f"Pattern: {', '.join(patterns)}\n" if patterns else ""
    return f"{head}```sql\n{query.strip()}\n```"


def slow_query_messages(
    schema_text: str, pattern: str, examples: Iterable[object] = (), *, engine: str = SUITE_ENGINE
) -> list[dict[str, str]]:
    """Chat messages asking for one slow query of ``pattern`` over ``schema_text``.

    Args:
        schema_text: the schema (``CREATE TABLE`` statements, as in an observation).
        pattern: a task pattern tag or generator family (see :data:`PATTERN_HINTS`).
        examples: earlier accepted tasks: query strings, mappings with ``query`` (and
            ``patterns``), or :class:`quill_env.tasks.Task` objects.
        engine: the display name of the engine the query must run on.
    """
    hint = pattern_hint(pattern)
    user = f"Database schema ({engine}):\n```sql\n{schema_text.strip()}\n```\n\n"
    shown = [t for t in map(_example_text, examples) if t]
    if shown:
        user += "Slow queries accepted earlier (write a different one):\n\n" + "\n\n".join(shown) + "\n\n"
    user += (
        f"Write one new slow query for this schema in the pattern '{pattern}': it {hint}. "
        "It should answer a plausible business question, and a better query or an index should "
        "make it at least twice as fast while returning exactly the same rows."
    )
    system = SLOW_QUERY_SYSTEM.format(engine=engine)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _first_token(sql: str) -> TokenType | None:
    try:
        tokens = Tokenizer(dialect=SUITE_DIALECT).tokenize(sql)
    except (TokenError, ValueError):
        return None
    return tokens[0].token_type if tokens else None


def action_from_completion(text: str) -> str:
    """The action in an optimization completion, or ``""`` when it holds no SQL at all.

    >>> action_from_completion("Sure:\\n```sql\\nSELECT 1\\n```")
    'SELECT 1'
    >>> action_from_completion("I cannot improve this query.")
    ''
    """
    sql = extract_sql(text)
    return sql if _first_token(sql) in _ACTION_STARTS else ""


def slow_query_from_completion(text: str) -> str | None:
    """The single query in a slow-query completion, or ``None`` if there is not exactly one.

    >>> slow_query_from_completion("```sql\\nSELECT * FROM t WHERE a = 1;\\n```")
    'SELECT * FROM t WHERE a = 1'
    >>> slow_query_from_completion("DROP TABLE t") is None
    True
    """
    sql = extract_sql(text)
    if _first_token(sql) not in _QUERY_STARTS:
        return None
    try:
        statements = split_statements(sql)
        if len(statements) != 1 or not isinstance(
            sqlglot.parse_one(statements[0], read=SUITE_DIALECT), exp.Query
        ):
            return None
    except (ParseError, TokenError, RecursionError, ValueError):
        return None
    return statements[0]
