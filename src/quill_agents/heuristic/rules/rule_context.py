"""What every rule shares: the :class:`Context` it is given and small views of a query.

A rule is a function ``(tree, ctx) -> tree | None``: a rewritten copy of ``tree``, or ``None``
when it does not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from quill_agents.heuristic.catalog import Catalog
from quill_agents.heuristic.sqlutil import conjuncts, is_literal, set_where


@dataclass(frozen=True)
class Context:
    """What a rule may know besides the query.

    Args:
        catalog: the schema parsed from the observation.
        output_columns: the columns the application reads, when the observation says so.
    """

    catalog: Catalog
    output_columns: tuple[str, ...] | None = None


Rule = Callable[[exp.Expression, Context], "exp.Expression | None"]


def top_select(tree: exp.Expression) -> exp.Select | None:
    """The query itself when it is a SELECT without a WITH clause, else ``None``."""
    if isinstance(tree, exp.Select) and not tree.args.get("with_"):
        return tree
    return None


def where_terms(select: exp.Select) -> list[exp.Expression]:
    """The WHERE conjuncts of ``select`` (none without a WHERE clause)."""
    where = select.args.get("where")
    return conjuncts(where.this) if where is not None else []


def column_eq_literal(term: exp.Expression) -> tuple[exp.Column, exp.Expression] | None:
    """``(column, literal)`` of a ``column = literal`` term (either way round), else ``None``."""
    if not isinstance(term, exp.EQ):
        return None
    a, b = term.this, term.expression
    if isinstance(a, exp.Column) and is_literal(b):
        return a, b
    if isinstance(b, exp.Column) and is_literal(a):
        return b, a
    return None


def no_distinct(select: exp.Select) -> exp.Select:
    """A copy of ``select`` without DISTINCT (to check the rest of it)."""
    copy = select.copy()
    copy.set("distinct", None)
    return copy


def has_star(select: exp.Select) -> bool:
    """Whether the projection has a ``*`` (its width depends on the FROM clause)."""
    return any(
        isinstance(e, exp.Star) or (isinstance(e, exp.Column) and e.is_star) for e in select.expressions
    )


def replace_where_terms(
    tree: exp.Expression, select: exp.Select, replace: Callable[[exp.Expression], exp.Expression | None]
) -> exp.Expression | None:
    """Apply ``replace`` to each top-level WHERE conjunct of ``select`` (inside ``tree``).

    ``replace`` returns the new conjunct, or ``None`` to keep the term. Returns ``tree`` when a
    term changed, else ``None``.
    """
    terms = where_terms(select)
    changed = False
    for i, term in enumerate(terms):
        new = replace(term)
        if new is not None:
            terms[i] = new
            changed = True
    if changed:
        set_where(select, terms)
    return finish(tree, changed)


def finish(tree: exp.Expression, changed: bool) -> exp.Expression | None:
    """``tree`` when the rule changed it, else ``None``."""
    return tree if changed else None
