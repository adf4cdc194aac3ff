"""Constructs whose cost the deterministic work counter cannot see, refused unless the original uses them.

SQLite counts one VM step for a whole function call, however much the function does inside:
``printf('%.*c', n, 'x')`` writes ``n`` bytes, ``replace`` and ``||`` build strings as long as
the engine allows, ``instr`` and ``LIKE`` with a computed pattern compare in time proportional
to the product of two lengths (a literal or a column's value is bounded by the query or the
data), ``group_concat`` folds a table into one value that later steps then scan, and a
``COLLATE`` clause moves a function's work (``ORDER BY upper(x)``) into the comparisons of a
sort or seek, which no counter sees (and ``NOCASE`` folds to lower case, so it does not even
order like ``upper``). A rewrite that
moves work into such calls looks cheap in ``work`` mode while it is slow on the clock, so a
rewrite may use them only where the original already does (and then values are bounded by the
engine's value-size limit, sized to the original's needs).

>>> import sqlglot
>>> q = lambda s: sqlglot.parse_one(s, read="sqlite")
>>> check_unmetered(q("SELECT a FROM t"), q("SELECT a FROM t WHERE instr(a, b) > 0"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
quill_env.action_policy.PolicyViolation: the rewrite calls instr(), whose work ...
"""

from __future__ import annotations

from sqlglot import exp

from quill_env.action_policy import PolicyViolation
from quill_env.reward import Verdict

UNMETERED_CLASSES: dict[type[exp.Expression], str] = {
    exp.Format: "printf",
    exp.Replace: "replace",
    exp.StrPosition: "instr",
    exp.Hex: "hex",
    exp.Unhex: "unhex",
    exp.Chr: "char",
    exp.Concat: "concat",
    exp.ConcatWs: "concat_ws",
    exp.DPipe: "||",
    exp.GroupConcat: "group_concat",
    exp.JSONArrayAgg: "json_group_array",
    exp.JSONObjectAgg: "json_group_object",
    exp.JSONObject: "json_object",
    exp.Collate: "COLLATE",
    exp.Repeat: "repeat",
    exp.Pad: "lpad",
    exp.RegexpReplace: "regexp_replace",
    exp.ArrayAgg: "array_agg",
}
"""sqlglot node classes of string-building or super-linear functions, by SQLite name (and, for
functions SQLite lacks, by their DuckDB/PostgreSQL name: ``repeat``, ``lpad``/``rpad``,
``regexp_replace``, ``array_agg``: one row's value grows without the row counters seeing it)."""

UNMETERED_NAMES = frozenset(
    {
        "printf", "format", "zeroblob", "quote", "json", "jsonb", "json_array", "json_insert",
        "json_replace", "json_set", "json_patch", "json_remove", "json_quote", "char", "hex",
        "unhex", "replace", "instr", "concat", "concat_ws", "group_concat", "string_agg", "repeat",
        "lpad", "rpad", "regexp_replace", "array_agg",
    }
)  # fmt: skip
"""The same functions as SQLite names them (reached as ``Anonymous`` nodes)."""

_ALIASES = {"format": "printf", "string_agg": "group_concat", "rpad": "lpad"}


def unmetered_uses(tree: exp.Expression) -> set[str]:
    """The unmetered constructs ``tree`` uses, by name (``like(expr)`` for a computed pattern).

    >>> import sqlglot
    >>> tree = sqlglot.parse_one("SELECT a || b FROM t WHERE a LIKE '%' || b AND c LIKE 'x%'")
    >>> sorted(unmetered_uses(tree))
    ['like(expr)', '||']
    """
    found: set[str] = set()
    for node in tree.walk():
        name = None
        if isinstance(node, exp.Anonymous):
            raw = str(node.this).lower()
            name = _ALIASES.get(raw, raw) if raw in UNMETERED_NAMES else None
        else:
            name = UNMETERED_CLASSES.get(type(node))
        if name is not None:
            found.add(name)
        if isinstance(node, (exp.Like, exp.ILike, exp.Glob)):
            pattern = node.expression
            while isinstance(pattern, exp.Paren):
                pattern = pattern.this
            if not isinstance(pattern, (exp.Literal, exp.Null, exp.Column)):
                found.add(f"{type(node).__name__.lower()}(expr)")
    return found


def check_unmetered(original: exp.Expression, candidate: exp.Expression) -> None:
    """Refuse unmetered constructs in ``candidate`` that ``original`` does not use.

    Raises:
        PolicyViolation: ``rejected``, naming the construct.
    """
    extra = sorted(unmetered_uses(candidate) - unmetered_uses(original))
    if not extra:
        return
    name = extra[0]
    shown = f"{name}()" if name.isidentifier() else f"the {name} operator"
    if name.endswith("(expr)"):
        shown = f"{name[:-6].upper()} with a computed pattern"
    verb = "calls"
    if name == "COLLATE":
        verb, shown = "uses", "a COLLATE clause (its comparisons happen inside sorts and seeks)"
    raise PolicyViolation(
        Verdict.REJECTED,
        f"the rewrite {verb} {shown}, whose work the cost counter cannot see, and the original does "
        "not; it is refused",
    )


__all__ = ["UNMETERED_CLASSES", "UNMETERED_NAMES", "check_unmetered", "unmetered_uses"]
