"""The declared constraints variants must respect: keys, NOT NULL, foreign keys, table order.

Variant rows live in memory as :data:`Data` (table name -> rows as column dicts) while they are
sampled and mutated; :class:`Schema` answers what a row may hold: which columns are unique (alone
or together), which must not be NULL, which foreign keys hold (``Link``: resolved to the parent's
referenced columns, multi-column ones included), and the order in which tables are created so
that parents precede their children.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from quill_env.backends.base import TableInfo

Row = dict[str, object]
"""One row as a column -> value dict."""

Data = dict[str, list[Row]]
"""Table name (``TableInfo.name``) -> rows."""


@dataclass(frozen=True)
class Link:
    """A foreign key resolved against its parent: ``child(columns) -> parent(ref_columns)``."""

    child: str
    columns: tuple[str, ...]
    parent: str
    ref_columns: tuple[str, ...]
    parent_unique: bool
    """Whether the referenced columns are a key of the parent (SQLite accepts a non-unique one)."""


class Schema:
    """The tables of a source database with their constraints, views left out.

    Args:
        tables: ``Backend.tables()`` of the source.

    >>> from quill_env.backends.sqlite import SQLiteBackend
    >>> db = SQLiteBackend.from_rows([
    ...     "CREATE TABLE ps(p INT, s INT, PRIMARY KEY (p, s))",
    ...     "CREATE TABLE li(id INTEGER PRIMARY KEY, p INT, s INT, FOREIGN KEY (p, s) REFERENCES ps(p, s))",
    ... ], {})
    >>> schema = Schema(db.tables())
    >>> [t.name for t in schema.order], schema.links_from("li")[0].ref_columns
    (['ps', 'li'], ('p', 's'))
    """

    def __init__(self, tables: Mapping[str, TableInfo]) -> None:
        self.all_tables = dict(tables)
        self.tables = {k: v for k, v in tables.items() if not v.is_view}
        self.order = _topological(self.tables)
        self.links = [link for info in self.order for link in self._resolve(info)]
        self._memo: dict[tuple[str, str], object] = {}

    def _cached(self, kind: str, table: str, make: Callable[[], Any]) -> Any:
        key = (kind, table.lower())
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def info(self, name: str) -> TableInfo:
        """The table called ``name`` (any case)."""
        return self.tables[name.lower()]

    def _resolve(self, info: TableInfo) -> list[Link]:
        out = []
        for fk in info.foreign_keys:
            parent = self.tables.get(fk.ref_table.lower())
            if parent is None:
                continue
            refs = fk.ref_columns or parent.primary_key
            names = {c.lower(): c for c in parent.column_names}
            own = {c.lower(): c for c in info.column_names}
            if len(refs) != len(fk.columns) or not refs:
                continue
            if any(r.lower() not in names for r in refs) or any(c.lower() not in own for c in fk.columns):
                continue
            refs = tuple(names[r.lower()] for r in refs)
            cols = tuple(own[c.lower()] for c in fk.columns)
            unique = any(set(s) <= set(refs) for s in parent.unique_sets) or (
                len(refs) == 1 and _is_rowid_alias(parent, refs[0])
            )
            out.append(Link(info.name, cols, parent.name, refs, unique))
        return out

    def links_from(self, table: str) -> list[Link]:
        """Foreign keys of ``table`` (it is the child)."""
        return self._cached(
            "from", table, lambda: [k for k in self.links if k.child.lower() == table.lower()]
        )

    def links_to(self, table: str) -> list[Link]:
        """Foreign keys that reference ``table`` (it is the parent)."""
        return self._cached("to", table, lambda: [k for k in self.links if k.parent.lower() == table.lower()])

    @cached_property
    def referenced(self) -> set[str]:
        """Lower-cased names of the tables some foreign key references."""
        return {link.parent.lower() for link in self.links}

    def unique_sets(self, table: str) -> list[tuple[str, ...]]:
        """Column sets that must be unique in ``table`` (primary key, UNIQUE constraints/indexes)."""
        return self._cached("unique_sets", table, lambda: self.info(table).unique_sets)

    def unique_columns(self, table: str) -> set[str]:
        """Columns that alone must be unique (single-column keys)."""
        return self._cached("unique", table, lambda: {s[0] for s in self.unique_sets(table) if len(s) == 1})

    def key_columns(self, table: str) -> set[str]:
        """Columns of any unique set (alone or together)."""
        return self._cached("keys", table, lambda: {c for s in self.unique_sets(table) for c in s})

    def fk_columns(self, table: str) -> set[str]:
        """Columns of ``table`` that are part of a foreign key."""
        return self._cached("fk", table, lambda: {c for link in self.links_from(table) for c in link.columns})

    def referenced_columns(self, table: str) -> set[str]:
        """Columns of ``table`` that some foreign key references."""
        return {c for link in self.links_to(table) for c in link.ref_columns}

    def notnull(self, table: str) -> set[str]:
        """Columns that must not be NULL (NOT NULL, or part of a non-integer primary key)."""
        info = self.info(table)
        return self._cached(
            "notnull",
            table,
            lambda: {
                c.name for c in info.columns if c.notnull or (c.pk and not _is_rowid_alias(info, c.name))
            },
        )

    def nullable(self, table: str) -> list[str]:
        """Columns that may be NULL, in declaration order."""
        banned = self.notnull(table) | {c.name for c in self.info(table).columns if c.pk}
        return [c for c in self.info(table).column_names if c not in banned]

    def rowid_alias(self, table: str) -> str | None:
        """The INTEGER PRIMARY KEY column of ``table`` (it only holds integers), if any."""
        info = self.info(table)
        key = self._cached("pk", table, lambda: info.primary_key)
        return key[0] if len(key) == 1 and _is_rowid_alias(info, key[0]) else None

    def type_of(self, table: str, column: str) -> str:
        """The declared type of ``table.column`` (upper case, possibly empty)."""
        return next((c.type for c in self.info(table).columns if c.name == column), "")

    def column(self, table: str, name: str) -> str | None:
        """The declared spelling of column ``name`` of ``table`` (any case), if it has one."""
        return next((c for c in self.info(table).column_names if c.lower() == name.lower()), None)


def _is_rowid_alias(info: TableInfo, column: str) -> bool:
    """Whether ``column`` is an INTEGER PRIMARY KEY (the rowid itself: never NULL, auto-assigned)."""
    return info.primary_key == (column,) and any(
        c.name == column and c.type == "INTEGER" for c in info.columns
    )


def _topological(tables: Mapping[str, TableInfo]) -> list[TableInfo]:
    """Parents before children (cycles broken where they close)."""
    done: list[TableInfo] = []
    seen: set[str] = set()

    def visit(key: str, stack: tuple[str, ...] = ()) -> None:
        if key in seen or key in stack or key not in tables:
            return
        for fk in tables[key].foreign_keys:
            visit(fk.ref_table.lower(), (*stack, key))
        seen.add(key)
        done.append(tables[key])

    for key in tables:
        visit(key)
    return done


def is_numeric(value: object) -> bool:
    """Whether ``value`` is an int or float (bools are ints in SQLite too).

    >>> is_numeric(3), is_numeric(2.5), is_numeric("3")
    (True, True, False)
    """
    return isinstance(value, (int, float))


def integer_typed(declared: str) -> bool:
    """Whether a declared type has INTEGER affinity (SQLite's rule: it contains ``INT``).

    >>> integer_typed("BIGINT"), integer_typed("REAL"), integer_typed("")
    (True, False, False)
    """
    return "INT" in declared.upper()


__all__ = ["Data", "Link", "Row", "Schema", "integer_typed", "is_numeric"]
