"""Schema augmentation by consistent renaming (DESIGN §1, §7).

The verified set is augmented (about 4x) by renaming a suite's tables and columns: the same slow
query and the same reference over the same data, under other names. :class:`RenameMap` holds one
renaming, sampled deterministically from a seed out of per-domain synonym pools
(:data:`NAME_POOLS`); :func:`rename_sql` applies it to SQL text with sqlglot transforms over
``exp.Table``, ``exp.Column`` and DDL identifiers (never string replacement), resolving every
column reference through sqlglot's scopes; :func:`augment_suite` renames a whole suite (DDL,
generator spec, tasks) into a new in-memory :class:`~quill_env.tasks.Suite`.

The generator is keyed by table order and column order, never by name, so an augmented suite's
database holds the same values as the original under the new names, and the work (VM steps) of
every query is unchanged.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.dialects.sqlite import SQLite
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import TokenType

from quill_env.action_policy import split_statements
from quill_env.dialect import SUITE_DIALECT
from quill_env.tasks import Suite, Task

# --- name pools ------------------------------------------------------------------------------


def _load_pools() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("name_pools.json").read_text(encoding="utf-8")
    return json.loads(text)


def _tuples(pools: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(cands) for name, cands in pools.items()}


_POOLS = _load_pools()
NAME_POOLS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    domain: {kind: _tuples(pools) for kind, pools in kinds.items()}
    for domain, kinds in _POOLS["domains"].items()
}
"""Synonym pools: ``NAME_POOLS[domain]["tables" | "columns"][old] -> candidate new names``.

Read from the data file ``name_pools.json`` beside this module. ``common`` applies to every
domain; a domain's own pools take precedence. Names without an entry get a token-level variant
(a token that is an old table's singular becomes the new table's singular: ``order_total`` ->
``purchase_total``, or a synonym of a token from the file's ``tokens``) or a deterministic
generic variant (the file's ``generic`` templates).
"""

_TOKEN_SYNONYMS: dict[str, tuple[str, ...]] = _tuples(_POOLS["tokens"])
_GENERIC_TABLE = tuple(_POOLS["generic"]["table"])
_GENERIC_COLUMN = tuple(_POOLS["generic"]["column"])

SQLITE_KEYWORDS = frozenset(
    """abort action add after all alter always analyze and as asc attach autoincrement before
    begin between by cascade case cast check collate column commit conflict constraint create
    cross current current_date current_time current_timestamp database default deferrable
    deferred delete desc detach distinct do drop each else end escape except exclude exclusive
    exists explain fail filter first following for foreign from full generated glob group groups
    having if ignore immediate in index indexed initially inner insert instead intersect into is
    isnull join key last left like limit match materialized natural no not nothing notnull null
    nulls of offset on or order others over partition plan pragma preceding primary query raise
    range recursive references regexp reindex release rename replace restrict returning right
    rollback row rows savepoint select set table temp temporary then ties to transaction trigger
    unbounded union unique update using vacuum values view virtual when where window with
    without rowid oid _rowid_""".split()  # noqa: SIM905
)
"""SQLite's keywords (and rowid aliases): never produced as new names."""


def _sqlglot_keywords() -> frozenset[str]:
    return frozenset(k.lower() for k in SQLite.Tokenizer.KEYWORDS if re.fullmatch(r"[A-Za-z_]+", k))


_FORBIDDEN = SQLITE_KEYWORDS | _sqlglot_keywords()
_IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def _valid_name(name: str) -> bool:
    return bool(_IDENT.fullmatch(name)) and name not in _FORBIDDEN and not name.startswith("sqlite_")


def _singular(name: str) -> str:
    irregular = {"people": "person", "staff": "staff", "personnel": "personnel", "goods": "good"}
    last = name.rsplit("_", 1)[-1]
    if last in irregular:
        return name[: len(name) - len(last)] + irregular[last]
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith(("sses", "ches", "shes", "xes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


_DOMAIN_ALIASES = {"shop": "ecommerce"}


def _pool(kind: str, name: str, domain: str | None) -> list[str]:
    """Pool candidates for ``name`` (domain's own first, then common; all domains if None)."""
    domain = _DOMAIN_ALIASES.get(domain or "", domain)
    domains = [domain, "common"] if domain else ["common", *sorted(d for d in NAME_POOLS if d != "common")]
    out: list[str] = []
    for d in domains:
        for cand in NAME_POOLS.get(d or "", {}).get(kind, {}).get(name, ()):
            if cand not in out:
                out.append(cand)
    return out


# --- the renaming ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenameMap:
    """A consistent renaming of a schema's tables and columns.

    Lookups are case-insensitive (SQLite identifiers are); names absent from the map are kept.

    Args:
        tables: ``{old table: new table}``.
        columns: ``{(old table, old column): new column}``.
    """

    tables: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_t", {k.lower(): v for k, v in self.tables.items()})
        object.__setattr__(self, "_c", {(t.lower(), c.lower()): v for (t, c), v in self.columns.items()})
        schema: dict[str, list[str]] = {t.lower(): [] for t in self.tables}
        for t, c in self.columns:
            schema.setdefault(t.lower(), []).append(c.lower())
        object.__setattr__(self, "_schema", schema)

    @property
    def schema(self) -> dict[str, list[str]]:
        """The old schema the map covers: lower-cased table -> lower-cased columns."""
        return {t: list(cs) for t, cs in self._schema.items()}  # type: ignore[attr-defined]

    def table(self, name: str) -> str | None:
        """The new name of table ``name``, or ``None`` when it is not renamed."""
        return self._t.get(name.lower())  # type: ignore[attr-defined]

    def column(self, table: str, name: str) -> str | None:
        """The new name of column ``name`` of (old) table ``table``, or ``None``."""
        return self._c.get((table.lower(), name.lower()))  # type: ignore[attr-defined]

    def has_column(self, table: str, name: str) -> bool:
        """Whether (old) ``table`` has column ``name`` in the old schema."""
        return name.lower() in self._schema.get(table.lower(), ())  # type: ignore[attr-defined]

    def inverse(self) -> RenameMap:
        """The map that undoes this one (new names back to old)."""
        return RenameMap(
            tables={v: k for k, v in self.tables.items()},
            columns={(self.tables.get(t, t), v): c for (t, c), v in self.columns.items()},
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RenameMap:
        """The inverse of :meth:`to_dict`."""
        columns = {}
        for key, new in raw.get("columns", {}).items():
            table, _, col = str(key).partition(".")
            columns[(table, col)] = new
        return cls(tables=dict(raw.get("tables", {})), columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form: ``{"tables": {...}, "columns": {"table.column": new}}``."""
        return {
            "tables": dict(self.tables),
            "columns": {f"{t}.{c}": v for (t, c), v in self.columns.items()},
        }

    @classmethod
    def sample(
        cls,
        schema_tables: Mapping[str, Sequence[str]],
        rng_or_seed: int | random.Random | Any,
        domain: str | None = None,
        *,
        reserved: Iterable[str] = (),
    ) -> RenameMap:
        """Sample a renaming of every table and column of a schema, deterministically.

        Every name changes. Table names are injective; column names are renamed by name, the
        same old name getting the same new name in every table, and injectively, so
        ``JOIN ... USING`` and ``NATURAL JOIN`` keep their meaning. New names are never SQL
        keywords, never an old name of the schema, and never one of ``reserved`` (aliases and
        CTE names the queries use). A foreign-key column ``<singular table>_id`` follows its
        table (``user_id`` -> ``customer_id`` when ``users`` -> ``customers``).

        Args:
            schema_tables: old table -> its columns, in schema order.
            rng_or_seed: an ``int`` seed, a ``random.Random`` or a ``numpy.random.Generator``.
            domain: the schema's domain (``shop``, ``ecommerce``, ``hr``, ...); its pools are
                preferred. ``None`` draws from every domain's pools.
            reserved: names that must not be produced.

        Returns:
            The sampled map.
        """
        rng = _as_random(rng_or_seed)
        old_tables = [t.lower() for t in schema_tables]
        old_columns = {c.lower() for cols in schema_tables.values() for c in cols}
        blocked = {r.lower() for r in reserved} | set(old_tables) | old_columns
        used_tables: set[str] = set()
        tables: dict[str, str] = {}
        for table in schema_tables:
            key = table.lower()
            cands = _pool("tables", key, domain)
            new = _pick(rng, cands, key, _GENERIC_TABLE, blocked | used_tables)
            used_tables.add(new)
            tables[table] = new
        singular = {_singular(t.lower()): _singular(new) for t, new in tables.items()}
        by_table = {t.lower(): new for t, new in tables.items()}
        used_cols: set[str] = set()
        names: dict[str, str] = {}
        for cols in schema_tables.values():
            for col in cols:
                key = col.lower()
                if key in names:
                    continue
                new = _column_name(rng, key, domain, singular, by_table, blocked | used_cols | used_tables)
                used_cols.add(new)
                names[key] = new
        columns = {(t, c): names[c.lower()] for t, cols in schema_tables.items() for c in cols}
        return cls(tables=tables, columns=columns)


def _as_random(rng_or_seed: Any) -> random.Random:
    if isinstance(rng_or_seed, random.Random):
        return rng_or_seed
    if isinstance(rng_or_seed, int):
        return random.Random(rng_or_seed)
    if hasattr(rng_or_seed, "integers"):  # numpy Generator
        return random.Random(int(rng_or_seed.integers(0, 2**62)))
    raise TypeError(f"expected an int seed or a random generator, got {type(rng_or_seed).__name__}")


def _pick(
    rng: random.Random, cands: Sequence[str], old: str, generic: Sequence[str], blocked: set[str]
) -> str:
    ok = [c for c in dict.fromkeys(cands) if c != old and c not in blocked and _valid_name(c)]
    if ok:
        return rng.choice(ok)
    ok = [g.format(old) for g in generic]
    ok = [c for c in ok if c not in blocked and _valid_name(c)]
    if ok:
        return rng.choice(ok)
    n = 2
    while f"{generic[0].format(old)}_{n}" in blocked:
        n += 1
    return f"{generic[0].format(old)}_{n}"


def _column_name(
    rng: random.Random,
    col: str,
    domain: str | None,
    singular: Mapping[str, str],
    tables: Mapping[str, str],
    blocked: set[str],
) -> str:
    m = re.fullmatch(r"([a-z0-9_]+)_id", col)
    if m:
        prefix = m.group(1)
        for old, new in tables.items():
            if prefix in (old, _singular(old)):
                cand = f"{_singular(new)}_id"
                if cand != col and cand not in blocked and _valid_name(cand):
                    return cand
    cands = _pool("columns", col, domain)
    tokens = col.split("_")
    if any(tok in singular for tok in tokens):
        cands.append("_".join(singular.get(tok, tok) for tok in tokens))
    elif not cands:
        for i, tok in enumerate(tokens):
            for syn in _TOKEN_SYNONYMS.get(tok, ()):
                cands.append("_".join([*tokens[:i], syn, *tokens[i + 1 :]]))
    return _pick(rng, cands, col, _GENERIC_COLUMN, blocked)


# --- SQL renaming ----------------------------------------------------------------------------


class _UnaryPlus(exp.Unary):
    """``+x``: sqlglot drops a unary plus, but in SQLite it stops ``x`` from using an index."""


class _FaithfulSQLite(SQLite):
    """SQLite, parsed and rendered so that the planner sees the same query.

    sqlglot's SQLite dialect turns ``FROM a, b`` into ``FROM a CROSS JOIN b`` (the same rows,
    but SQLite never reorders a CROSS JOIN) and drops a unary ``+`` (which SQLite uses to keep
    a term off an index). Either changes the plan and the cost; renaming must change neither.
    """

    class Parser(SQLite.Parser):
        JOINS_HAVE_EQUAL_PRECEDENCE = False
        UNARY_PARSERS = {
            **SQLite.Parser.UNARY_PARSERS,
            TokenType.PLUS: lambda self: self.expression(_UnaryPlus(this=self._parse_unary())),
        }

    class Generator(SQLite.Generator):
        TRANSFORMS = {
            **SQLite.Generator.TRANSFORMS,
            _UnaryPlus: lambda self, e: f"+{self.sql(e, 'this')}",
        }


def _dialect(dialect: str) -> Any:
    if type(Dialect.get_or_raise(dialect)) is SQLite:
        return _FaithfulSQLite
    return dialect


def _parse(text: str, dialect: str) -> exp.Expr:
    return sqlglot.parse_one(text, read=_dialect(dialect))


def _set_name(ident: exp.Identifier | None, new: str | None) -> None:
    if ident is not None and new is not None and isinstance(ident, exp.Identifier):
        ident.set("this", new)


class _QueryRenamer:
    """Resolves every column of a query through sqlglot's scopes, then renames in place."""

    def __init__(self, mapping: RenameMap) -> None:
        self.m = mapping
        self.outputs: dict[int, list[tuple[str, str]]] = {}
        self.col_edits: list[tuple[exp.Identifier, str]] = []
        self.qual_edits: list[tuple[exp.Identifier, str]] = []
        self.table_edits: list[tuple[exp.Identifier, str]] = []

    # resolution helpers
    def _source(self, scope: Scope, name: str) -> tuple[Scope, Any] | None:
        sc: Scope | None = scope
        while sc is not None:
            for key, src in sc.sources.items():
                if key.lower() == name.lower():
                    return sc, src
            sc = sc.parent
        return None

    def _source_map(self, src: Any, col: str) -> str | None:
        """New name of output column ``col`` of a source (base table or derived scope)."""
        if isinstance(src, exp.Table):
            return self.m.column(src.name, col)
        if isinstance(src, Scope):
            for old, new in self.outputs.get(id(src), []):
                if old.lower() == col.lower():
                    return new
        return None

    def _source_has(self, src: Any, col: str) -> bool:
        if isinstance(src, exp.Table):
            return self.m.has_column(src.name, col)
        if isinstance(src, Scope):
            return any(old.lower() == col.lower() for old, _ in self.outputs.get(id(src), []))
        return False

    def _selected(self, scope: Scope) -> list[Any]:
        try:
            return [src for _, src in scope.selected_sources.values()]
        except Exception:  # pragma: no cover - defensive: odd scopes
            return list(scope.sources.values())

    def _resolve_unqualified(self, scope: Scope, col: str) -> str | None:
        sc: Scope | None = scope
        while sc is not None:
            if isinstance(sc.expression, exp.SetOperation) and sc.set_operation_scopes:
                outs = self.outputs.get(id(sc.set_operation_scopes[0]), [])
                for old, new in outs:
                    if old.lower() == col.lower():
                        return new
            for src in self._selected(sc):
                if self._source_has(src, col):
                    return self._source_map(src, col)
            sc = sc.parent
        return None

    def _alias_names(self, scope: Scope) -> set[str]:
        expr = scope.expression
        if isinstance(expr, exp.Select):
            return {e.alias.lower() for e in expr.expressions if isinstance(e, exp.Alias)}
        return set()

    def _is_order_alias(self, scope: Scope, col: exp.Column) -> bool:
        """A bare ORDER BY term naming an output alias refers to that alias (SQLite's rule)."""
        parent = col.parent
        return (
            not col.table
            and isinstance(parent, exp.Ordered)
            and isinstance(parent.parent, exp.Order)
            and parent.parent.parent is scope.expression
            and col.name.lower() in self._alias_names(scope)
        )

    # per-scope work
    def visit(self, scope: Scope) -> None:
        new_names: dict[int, str] = {}
        for node in scope.walk():
            if type(node) is exp.Column and not isinstance(node.this, exp.Star):
                self._visit_column(scope, node, new_names)
            elif type(node) is exp.Column and node.table:  # t.*
                self._visit_qualifier(scope, node)
            elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
                src = scope.sources.get(node.alias_or_name)
                if isinstance(src, Scope):
                    continue  # a CTE reference, not a base table
                new = self.m.table(node.name)
                if new is not None and not node.args.get("db"):
                    self.table_edits.append((node.this, new))
            elif isinstance(node, exp.Join) and node.args.get("using"):
                right = node.this
                src = scope.sources.get(right.alias_or_name) if isinstance(right, exp.Expr) else None
                for ident in node.args["using"]:
                    name = ident.name if isinstance(ident, exp.Expr) else str(ident)
                    new = self._source_map(src, name) if src is not None else None
                    if new is None:
                        new = self._resolve_unqualified(scope, name)
                    if new is not None and isinstance(ident, exp.Identifier):
                        self.col_edits.append((ident, new))
                    elif new is not None and isinstance(ident, exp.Column):
                        pass  # handled as a column
        self.outputs[id(scope)] = self._outputs(scope, new_names)

    def _visit_qualifier(self, scope: Scope, node: exp.Column) -> None:
        found = self._source(scope, node.table)
        if found is None:
            return
        _, src = found
        if isinstance(src, exp.Table) and not src.alias and node.table.lower() == src.name.lower():
            new = self.m.table(src.name)
            if new is not None:
                self.qual_edits.append((node.args["table"], new))

    def _visit_column(self, scope: Scope, node: exp.Column, new_names: dict[int, str]) -> None:
        name = node.name
        if node.table:
            found = self._source(scope, node.table)
            if found is None:
                return
            _, src = found
            new = self._source_map(src, name)
            self._visit_qualifier(scope, node)
        else:
            if self._is_order_alias(scope, node):
                return
            new = self._resolve_unqualified(scope, name)
        if new is not None:
            self.col_edits.append((node.this, new))
            new_names[id(node)] = new

    def _outputs(self, scope: Scope, new_names: Mapping[int, str]) -> list[tuple[str, str]]:
        """``(old output name, new output name)`` of a scope's query, in order."""
        expr = scope.expression
        if scope.outer_columns:
            return [(c, c) for c in scope.outer_columns]
        if isinstance(expr, exp.Subquery):
            expr = expr.unnest()
        if isinstance(expr, exp.SetOperation):
            if scope.set_operation_scopes:
                return list(self.outputs.get(id(scope.set_operation_scopes[0]), []))
            return []
        if not isinstance(expr, exp.Select):
            return []
        out: list[tuple[str, str]] = []
        for proj in expr.expressions:
            if isinstance(proj, exp.Alias):
                out.append((proj.alias, proj.alias))
            elif isinstance(proj, exp.Star) or (
                isinstance(proj, exp.Column) and isinstance(proj.this, exp.Star)
            ):
                qual = proj.table if isinstance(proj, exp.Column) else ""
                if qual:
                    found = self._source(scope, qual)
                    srcs = [found[1]] if found else []
                else:
                    srcs = self._selected(scope)
                for src in srcs:
                    out.extend(self._expand(src))
            elif isinstance(proj, exp.Column):
                out.append((proj.name, new_names.get(id(proj), proj.name)))
            else:
                name = proj.alias_or_name
                out.append((name, name))
        return out

    def _expand(self, src: Any) -> list[tuple[str, str]]:
        if isinstance(src, exp.Table):
            cols = self.m.schema.get(src.name.lower(), [])
            return [(c, self.m.column(src.name, c) or c) for c in cols]
        if isinstance(src, Scope):
            return list(self.outputs.get(id(src), []))
        return []

    def apply(self) -> None:
        for ident, new in (*self.col_edits, *self.qual_edits, *self.table_edits):
            _set_name(ident, new)


def _rename_query(tree: exp.Expr, mapping: RenameMap) -> list[tuple[str, str]]:
    """Rename a query in place; return its ``(old, new)`` output column names."""
    renamer = _QueryRenamer(mapping)
    scopes = traverse_scope(tree)
    for scope in scopes:
        renamer.visit(scope)
    root = renamer.outputs.get(id(scopes[-1]), []) if scopes else []
    renamer.apply()
    return root


def _rename_create_table(stmt: exp.Create, mapping: RenameMap) -> None:
    schema = stmt.this
    if not isinstance(schema, exp.Schema) or not isinstance(schema.this, exp.Table):
        return
    table = schema.this.name
    edits: list[tuple[exp.Identifier, str | None]] = []
    for node in stmt.walk():
        if isinstance(node, exp.Table):
            edits.append((node.this, mapping.table(node.name)))
        elif isinstance(node, exp.Column):
            if node.find_ancestor(exp.CollateColumnConstraint) is not None:
                continue
            edits.append((node.this, mapping.column(table, node.name)))
            if node.table and node.table.lower() == table.lower():
                edits.append((node.args["table"], mapping.table(table)))
        elif isinstance(node, exp.Identifier):
            parent = node.parent
            ref = node.find_ancestor(exp.Reference)
            if ref is not None:
                if isinstance(parent, exp.Schema) and isinstance(parent.this, exp.Table):
                    edits.append((node, mapping.column(parent.this.name, node.name)))
            elif (
                (isinstance(parent, exp.ColumnDef) and parent.this is node)
                or isinstance(parent, (exp.PrimaryKey, exp.ForeignKey, exp.Ordered))
                or (isinstance(parent, exp.Schema) and parent is not schema)
            ):
                edits.append((node, mapping.column(table, node.name)))
    for ident, new in edits:
        _set_name(ident, new)


def _rename_create_index(stmt: exp.Create, mapping: RenameMap, used: set[str]) -> None:
    index = stmt.this
    table = index.args.get("table") if isinstance(index, exp.Index) else None
    if not isinstance(table, exp.Table):
        return
    old_table = table.name
    cols: list[str] = []
    edits: list[tuple[exp.Identifier, str | None]] = [(table.this, mapping.table(old_table))]
    for node in index.walk():
        if isinstance(node, exp.Column):
            new = mapping.column(old_table, node.name)
            edits.append((node.this, new))
            if node.find_ancestor(exp.Where) is None:
                cols.append(new or node.name)
    for ident, new in edits:
        _set_name(ident, new)
    name = index.this
    if isinstance(name, exp.Identifier) and mapping.table(old_table) is not None:
        base = "_".join(["idx", table.name, *cols]) if cols else f"idx_{table.name}"
        new_name, n = base, 2
        while new_name.lower() in used:
            new_name, n = f"{base}_{n}", n + 1
        used.add(new_name.lower())
        name.set("this", new_name)


def _rename_statement(
    stmt: exp.Expr, mapping: RenameMap, used_index_names: set[str]
) -> list[tuple[str, str]]:
    if isinstance(stmt, exp.Create):
        kind = str(stmt.args.get("kind") or "").upper()
        if kind == "TABLE":
            _rename_create_table(stmt, mapping)
            if isinstance(stmt.expression, exp.Query):
                _rename_query(stmt.expression, mapping)
        elif kind == "INDEX":
            _rename_create_index(stmt, mapping, used_index_names)
        return []
    if isinstance(stmt, exp.Query):
        return _rename_query(stmt, mapping)
    raise ValueError(f"cannot rename a {type(stmt).__name__} statement")


_COLUMNS_SENTINEL = "quill_augment_columns_sentinel"


def _render(stmt: exp.Expr, dialect: str) -> str:
    """Render a statement; ``CREATE TABLE`` gets one column or constraint per line."""
    schema = stmt.this if isinstance(stmt, exp.Create) else None
    if not isinstance(schema, exp.Schema) or not schema.expressions:
        return stmt.sql(_dialect(dialect))
    body = ",\n  ".join(e.sql(_dialect(dialect)) for e in schema.expressions)
    shell = stmt.copy()
    shell.this.set("expressions", [exp.to_identifier(_COLUMNS_SENTINEL)])
    head, sep, tail = shell.sql(_dialect(dialect)).partition(f"({_COLUMNS_SENTINEL})")
    if not sep:
        return stmt.sql(_dialect(dialect))
    return f"{head}(\n  {body}\n){tail}"


def rename_sql(sql: str, mapping: RenameMap, dialect: str = SUITE_DIALECT) -> str:
    """Rename tables and columns in SQL text: a query, an action, or DDL.

    Statements are split with :func:`~quill_env.action_policy.split_statements`, each is parsed and
    transformed over its ``exp.Table``, ``exp.Column`` and DDL identifier nodes, and the
    results are rejoined with ``";\\n"``. Column references are resolved like the engine does:
    qualified by an alias or a table name, or unqualified through the tables of the enclosing
    SELECT and its outer scopes (correlated subqueries). Columns read from a derived table or a
    CTE follow the renamed output names of its query. Output aliases (``COUNT(*) AS n``, and a
    bare ``ORDER BY n`` naming one), CTE names and table aliases are kept. ``CREATE INDEX``
    gets its table and columns renamed and a new name ``idx_<table>_<columns>``; ``CREATE
    TABLE`` gets column definitions, ``PRIMARY KEY``, ``UNIQUE``, ``CHECK`` and
    ``REFERENCES`` renamed.

    Args:
        sql: the SQL text.
        mapping: the renaming.
        dialect: the sqlglot dialect.

    Returns:
        The renamed SQL, rendered by sqlglot (so spacing and some spellings may differ).

    Raises:
        sqlglot.errors.ParseError: the text is not SQL.
        ValueError: a statement is neither a query, ``CREATE TABLE`` nor ``CREATE INDEX``.

    >>> m = RenameMap({"orders": "sales"}, {("orders", "total"): "amount"})
    >>> rename_sql("SELECT o.total AS t FROM orders o ORDER BY t", m)
    'SELECT o.amount AS t FROM sales AS o ORDER BY t'
    """
    return ";\n".join(_rename_texts(split_statements(sql, dialect), mapping, dialect)[0])


def _rename_texts(
    texts: Sequence[str], mapping: RenameMap, dialect: str
) -> tuple[list[str], list[tuple[str, str]]]:
    used: set[str] = set()
    out, outputs = [], []
    for text in texts:
        stmt = _parse(text, dialect)
        outputs = _rename_statement(stmt, mapping, used)
        out.append(_render(stmt, dialect))
    return out, outputs


def rename_output_columns(query: str, mapping: RenameMap, dialect: str = SUITE_DIALECT) -> dict[str, str]:
    """How a query's output column names change under ``mapping`` (``{old: new}``).

    Only columns output under their own (unaliased) name change.
    """
    stmts = split_statements(query, dialect)
    _, outputs = _rename_texts(stmts[-1:], mapping, dialect)
    return {old: new for old, new in outputs}


# --- tasks and suites ------------------------------------------------------------------------


def augment_task_text(
    task: Task,
    mapping: RenameMap,
    *,
    dialect: str = SUITE_DIALECT,
    id_suffix: str | None = None,
    suite: str | None = None,
) -> Task:
    """A copy of ``task`` with its query, reference and output columns renamed.

    Args:
        task: the task.
        mapping: the renaming.
        dialect: the sqlglot dialect.
        id_suffix: appended to the id as ``@<suffix>`` when given.
        suite: the new suite name when given.

    Returns:
        The renamed task (split, patterns, schema and reference speedups are kept).
    """
    query = rename_sql(task.query, mapping, dialect)
    reference = rename_sql(task.reference, mapping, dialect) if task.reference else task.reference
    output_columns = task.output_columns
    if output_columns:
        names = {k.lower(): v for k, v in rename_output_columns(task.query, mapping, dialect).items()}
        output_columns = tuple(names.get(c.lower(), c) for c in output_columns)
    return replace(
        task,
        id=f"{task.id}@{id_suffix}" if id_suffix else task.id,
        query=query,
        reference=reference,
        output_columns=output_columns,
        suite=suite or task.suite,
    )


def schema_tables(ddl: Iterable[str], dialect: str = SUITE_DIALECT) -> dict[str, list[str]]:
    """Tables and their columns, in order, from ``CREATE TABLE`` statements."""
    out: dict[str, list[str]] = {}
    for text in ddl:
        for part in split_statements(text, dialect):
            stmt = _parse(part, dialect)
            if isinstance(stmt, exp.Create) and isinstance(stmt.this, exp.Schema):
                cols = [c.name for c in stmt.this.expressions if isinstance(c, exp.ColumnDef)]
                out[stmt.this.this.name] = cols
    return out


def _used_identifiers(texts: Iterable[str | None], dialect: str) -> set[str]:
    names: set[str] = set()
    for text in texts:
        if not text:
            continue
        for part in split_statements(text, dialect):
            for ident in _parse(part, dialect).find_all(exp.Identifier):
                names.add(ident.name.lower())
    return names


def _rename_generator(generator: Mapping[str, Any], mapping: RenameMap) -> dict[str, Any]:
    out = dict(generator)
    tables: dict[str, Any] = {}
    for table, spec in generator["tables"].items():
        spec = dict(spec)
        columns: dict[str, Any] = {}
        for col, cspec in spec["columns"].items():
            cspec = dict(cspec)
            if "ref" in cspec:
                ref_table, _, ref_col = str(cspec["ref"]).partition(".")
                ref_col = ref_col or "id"
                new_t = mapping.table(ref_table) or ref_table
                new_c = mapping.column(ref_table, ref_col) or ref_col
                cspec["ref"] = f"{new_t}.{new_c}"
            if "after" in cspec:
                cspec["after"] = mapping.column(table, str(cspec["after"])) or cspec["after"]
            columns[mapping.column(table, col) or col] = cspec
        spec["columns"] = columns
        tables[mapping.table(table) or table] = spec
    out["tables"] = tables
    return out


def augment_suite(
    suite: Suite,
    seed: int,
    *,
    name_suffix: str | None = None,
    domain: str | None = None,
    mapping: RenameMap | None = None,
) -> Suite:
    """A renamed copy of a suite, in memory: same data, same tasks, new names.

    DDL, generator spec (table keys, column keys, ``ref`` and ``after``), and every task
    (query, reference, output columns) are renamed with one :class:`RenameMap` sampled from
    ``seed``. The generator draws by table order, so the augmented database holds the same
    values under the new names. The suite is named ``<name>-<suffix>`` and task ids get
    ``@<suffix>`` (suffix ``aug<seed>`` by default); the task's ``schema`` (domain) is kept,
    so splitting by schema keeps an augmented copy with its source.

    Args:
        suite: the source suite.
        seed: the renaming seed.
        name_suffix: the suffix of the suite name and task ids (default ``aug<seed>``).
        domain: the domain whose name pools are preferred (default: the suite's
            ``schema_name``, or its name).
        mapping: use this renaming instead of sampling one.

    Returns:
        A new :class:`~quill_env.tasks.Suite` with ``path=None``; ``suite.spec["augment"]``
        records the seed, the source suite and the renaming.
    """
    suffix = name_suffix or f"aug{seed}"
    name = f"{suite.name}-{suffix}"
    dialect = "sqlite"
    if mapping is None:
        domain = domain or str(suite.spec.get("schema_name", suite.name))
        reserved = _used_identifiers(
            [t for task in suite.tasks for t in (task.query, task.reference)], dialect
        )
        mapping = RenameMap.sample(schema_tables(suite.ddl, dialect), seed, domain, reserved=reserved)
    used: set[str] = set()
    ddl = []
    for text in suite.ddl:
        for part in split_statements(text, dialect):
            stmt = _parse(part, dialect)
            _rename_statement(stmt, mapping, used)
            ddl.append(_render(stmt, dialect))
    spec = dict(suite.spec)
    spec.update(
        name=name,
        schema=ddl,
        generator=_rename_generator(suite.generator, mapping),
        augment={"source": suite.name, "seed": seed, "mapping": mapping.to_dict()},
    )
    if suite.description:
        spec["description"] = f"{suite.description} (renamed: {suffix})"
    tasks = [
        augment_task_text(t, mapping, dialect=dialect, id_suffix=suffix, suite=name) for t in suite.tasks
    ]
    return Suite(spec, tasks, path=None)


def augment_suites(suite: Suite, seeds: Iterable[int]) -> list[Suite]:
    """One augmented copy of ``suite`` per seed (a 4x augmentation is four seeds)."""
    return [augment_suite(suite, s) for s in seeds]
