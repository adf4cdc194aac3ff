"""Query rewrites: small sqlglot AST transforms that are semantics-preserving by construction.

Each rule takes a parsed query and a :class:`Context` and returns a rewritten copy, or ``None``
when it does not apply. A rule fires only when its preconditions make the rewrite equivalent
under SQLite's semantics (three-valued logic, duplicates, empty inputs, type affinity), keeps
ORDER BY, never adds or moves a LIMIT and keeps output column names and order. When in doubt a
rule declines: an index-only action is always safe.

:data:`RULES` are applied in order, repeatedly, to build the agent's preferred rewrite;
:data:`ALTERNATIVES` are other equivalent forms worth measuring (database mode). The rules
themselves live in :mod:`quill_agents.heuristic.rules`, one module per rule family.
"""

from __future__ import annotations

from sqlglot import exp

from quill_agents.heuristic.rules.decorrelate import scalar_aggregates_to_join, where_aggregate_to_join
from quill_agents.heuristic.rules.distinct import drop_redundant_distinct
from quill_agents.heuristic.rules.exists import (
    count_to_exists,
    count_to_in,
    in_to_exists,
    join_to_exists,
    not_in_to_not_exists,
)
from quill_agents.heuristic.rules.group_filters import filter_into_group, having_to_where
from quill_agents.heuristic.rules.or_to_in import or_to_in
from quill_agents.heuristic.rules.rule_context import Context, Rule
from quill_agents.heuristic.rules.sargable import arithmetic_to_range, date_function_to_range
from quill_agents.heuristic.rules.select_star import select_star_to_columns
from quill_agents.heuristic.rules.union import union_to_in, union_to_union_all

__all__ = [
    "ALTERNATIVES",
    "RULES",
    "Context",
    "Rule",
    "arithmetic_to_range",
    "count_to_exists",
    "count_to_in",
    "date_function_to_range",
    "drop_redundant_distinct",
    "filter_into_group",
    "having_to_where",
    "in_to_exists",
    "join_to_exists",
    "not_in_to_not_exists",
    "or_to_in",
    "rewrite",
    "scalar_aggregates_to_join",
    "select_star_to_columns",
    "union_to_in",
    "union_to_union_all",
    "where_aggregate_to_join",
]


RULES: list[Rule] = [
    select_star_to_columns,
    filter_into_group,
    having_to_where,
    union_to_in,
    or_to_in,
    date_function_to_range,
    arithmetic_to_range,
    count_to_exists,
    not_in_to_not_exists,
    join_to_exists,
    drop_redundant_distinct,
]
"""Rules applied in this order, repeatedly, for the preferred rewrite."""

ALTERNATIVES: list[Rule] = [
    scalar_aggregates_to_join,
    where_aggregate_to_join,
    count_to_in,
    in_to_exists,
    union_to_union_all,
]
"""Other equivalent forms, tried one at a time on the original (measured in database mode).

Decorrelating into a grouped join pays off when the outer query keeps many rows; for a few
outer rows the correlated form with an index on the foreign key is faster, so the offline
guess keeps it."""


def rewrite(
    tree: exp.Expression, ctx: Context, rules: list[Rule] = RULES, rounds: int = 4
) -> tuple[exp.Expression, list[str]]:
    """Apply ``rules`` until none fires (at most ``rounds`` passes).

    Returns:
        The rewritten tree and the names of the rules that fired, in order.
    """
    fired: list[str] = []
    for _ in range(rounds):
        progress = False
        for rule in rules:
            new = rule(tree, ctx)
            if new is not None:
                tree, progress = new, True
                fired.append(rule.__name__)
        if not progress:
            break
    return tree, fired
