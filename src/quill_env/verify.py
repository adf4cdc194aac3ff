"""Verification helpers: ORDER BY semantics, output projection and anti-reward-hacking checks.

The comparison itself lives in :mod:`quill_env.compare`; this module decides *what* to compare:
whether and how the original orders its rows (tie segments), which columns the application
reads (``output_columns``), which rewrites are refused outright because they game the reward
(a hard-coded answer, a new or moved LIMIT), and when a dropped ORDER BY cannot matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp

from quill_env.action_policy import PolicyViolation
from quill_env.dialect import SUITE_DIALECT
from quill_env.reward import Verdict

KEY_PREFIX = "__quill_key"


@dataclass(frozen=True)
class OrderPlan:
    """How to recover the original's ORDER BY keys for tie segments.

    ``positions[i]`` is the output column holding key ``i``, or ``None`` when the key is not an
    output column; then ``augmented_sql`` is the original with the missing keys appended as
    extra output columns (named ``__quill_key<i>``). ``strict`` means ties cannot be recovered,
    so the full sequence is compared.
    """

    ordered: bool
    positions: tuple[int | None, ...] = ()
    augmented_sql: str | None = None
    strict: bool = False


def top_order(tree: exp.Expression) -> exp.Order | None:
    """The top-level ORDER BY of a query, if any."""
    return tree.args.get("order") if isinstance(tree, exp.Query) else None


def order_plan(tree: exp.Query, dialect: str = SUITE_DIALECT) -> OrderPlan:
    """Work out how the original's ORDER BY keys map to its output (see :class:`OrderPlan`)."""
    order = top_order(tree)
    if order is None:
        return OrderPlan(ordered=False)
    selects = tree.selects
    if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and s.is_star) for s in selects):
        return OrderPlan(ordered=True, strict=True)
    names = [s.alias_or_name.lower() for s in selects]
    bodies = [(s.this if isinstance(s, exp.Alias) else s).sql(dialect) for s in selects]
    positions: list[int | None] = []
    for term in order.expressions:
        key = term.this if isinstance(term, exp.Ordered) else term
        pos: int | None = None
        if isinstance(key, exp.Literal) and not key.is_string and key.this.isdigit():
            pos = int(key.this) - 1 if 0 < int(key.this) <= len(selects) else None
        elif isinstance(key, exp.Column) and not key.table and key.name.lower() in names:
            pos = names.index(key.name.lower())
        elif key.sql(dialect) in bodies:
            pos = bodies.index(key.sql(dialect))
        positions.append(pos)
    if all(p is not None for p in positions):
        return OrderPlan(ordered=True, positions=tuple(positions))
    if (
        not isinstance(tree, exp.Select)
        or tree.args.get("distinct")
        or (tree.args.get("group") is None and _has_aggregate(tree))
    ):
        return OrderPlan(ordered=True, strict=True)
    augmented = tree.copy()
    for i, (term, pos) in enumerate(zip(order.expressions, positions)):
        if pos is None:
            key = term.this if isinstance(term, exp.Ordered) else term
            augmented = augmented.select(exp.alias_(key.copy(), f"{KEY_PREFIX}{i}"), copy=False)
    return OrderPlan(ordered=True, positions=tuple(positions), augmented_sql=augmented.sql(dialect))


def _has_aggregate(tree: exp.Select) -> bool:
    return any(isinstance(s.find(exp.AggFunc), exp.AggFunc) for s in tree.selects)


def order_keys(plan: OrderPlan, rows: Sequence[tuple], width: int) -> list[tuple]:
    """The ORDER BY key tuple of every row (extra key columns start at ``width``)."""
    keys = []
    for row in rows:
        extra = iter(row[width:])
        keys.append(tuple(row[p] if p is not None else next(extra) for p in plan.positions))
    return keys


def project(rows: Sequence[tuple], columns: Sequence[str], wanted: Sequence[str]) -> list[tuple]:
    """Project rows onto the ``wanted`` columns, matched by name (case-insensitive, first match).

    Raises:
        ValueError: a wanted column is not among ``columns``.

    >>> project([(1, "a", 2.0)], ["id", "name", "score"], ["score", "ID"])
    [(2.0, 1)]
    """
    lower = [c.lower() for c in columns]
    idx = [lower.index(w.lower()) for w in wanted]
    return [tuple(r[i] for i in idx) for r in rows]


def _limit_signature(tree: exp.Expression) -> tuple[str, str]:
    limit = tree.args.get("limit")
    offset = tree.args.get("offset") or (limit.args.get("offset") if limit is not None else None)
    return (
        limit.expression.sql() if isinstance(limit, exp.Limit) and limit.expression else "",
        offset.expression.sql() if isinstance(offset, exp.Offset) and offset.expression else "",
    )


def _row_limiting(tree: exp.Expression) -> list[str]:
    """LIMITs below the top level that can cut rows from the result (not scalar/EXISTS ones)."""
    out = []
    for limit in tree.find_all(exp.Limit):
        query = limit.parent
        if query is tree:
            continue
        holder = query.parent
        scalar = isinstance(holder, exp.Subquery) and not isinstance(holder.parent, (exp.From, exp.Join))
        if isinstance(holder, exp.Exists) or (scalar and not isinstance(holder.parent, exp.In)):
            continue
        out.append(limit.sql())
    return sorted(out)


def _hard_coded(tree: exp.Expression) -> bool:
    """A top-level SELECT (or set-operation branch) with no FROM and no subquery: rows written by hand.

    >>> import sqlglot
    >>> [_hard_coded(sqlglot.parse_one(q)) for q in ("SELECT 1", "SELECT (SELECT COUNT(*) FROM t)")]
    [True, False]
    """
    branches = [tree]
    while branches:
        node = branches.pop()
        if isinstance(node, exp.SetOperation):
            branches += [node.this, node.expression]
        elif isinstance(node, exp.Subquery):
            branches.append(node.this)
        elif (
            isinstance(node, exp.Select)
            and node.args.get("from_") is None
            and not any(s.find(exp.Query) for s in node.expressions)
        ):
            return True
    return False


def anti_hacking(original: exp.Query, candidate: exp.Query) -> None:
    """Refuse rewrites that game the reward (DESIGN §3).

    A dropped ORDER BY is judged by rows instead (see :func:`order_is_fixed`).

    Raises:
        PolicyViolation: ``rejected`` for a hard-coded answer or a new or moved LIMIT.
    """
    if _hard_coded(candidate) and not _hard_coded(original):
        raise PolicyViolation(Verdict.REJECTED, "the rewrite returns hard-coded rows (a SELECT without FROM)")
    if _limit_signature(candidate) != _limit_signature(original):
        raise PolicyViolation(
            Verdict.REJECTED, "the rewrite adds, removes or changes the top-level LIMIT/OFFSET"
        )
    extra = list(_row_limiting(candidate))
    for item in _row_limiting(original):
        if item in extra:
            extra.remove(item)
    if extra:
        raise PolicyViolation(Verdict.REJECTED, f"the rewrite adds or moves a LIMIT ({extra[0]})")


def order_is_fixed(record_rows: int, segments: Sequence[tuple[int, int]] | None) -> bool:
    """Whether the original's ORDER BY leaves nothing to order on one database.

    True when at most one row is returned or every row ties on the ORDER BY keys (a constant
    key, or a key fixed by ``WHERE col = 10``); then a rewrite may drop the ORDER BY there.

    >>> order_is_fixed(1, None), order_is_fixed(3, [(0, 3)]), order_is_fixed(3, [(0, 1), (1, 3)])
    (True, True, False)
    """
    if record_rows <= 1:
        return True
    return segments is not None and len(segments) == 1
