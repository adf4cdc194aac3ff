"""Editing variant rows without breaking keys: assignments that follow foreign keys, fresh copies.

Setting a column of a sampled row is not always a local change. A key that children reference
is renamed in the children too; a foreign-key column may only take a value some parent holds, so
when none does, a parent is re-keyed to it (and its own children follow); a single-column unique
value is never given to a second row. :class:`Editor` does this on :data:`~.schema.Data` in
memory; what it cannot keep consistent is repaired by the foreign-key pass before the variant is
written (a dangling value becomes NULL, or the row goes when NOT NULL).
"""

from __future__ import annotations

import numpy as np

from quill_env.variants.schema import Data, Link, Row, Schema, integer_typed

_MAX_DEPTH = 4


class Editor:
    """Constraint-aware edits of ``data``.

    Args:
        schema: the constraints.
        data: the rows being built (edited in place).
        rng: the variant's random generator.
    """

    def __init__(self, schema: Schema, data: Data, rng: np.random.Generator) -> None:
        self.schema = schema
        self.data = data
        self.rng = rng
        self._counter = 0

    def rows(self, table: str) -> list[Row]:
        """The rows of ``table`` (any case)."""
        return self.data[self.schema.info(table).name]

    def holders(self, table: str, column: str, value: object) -> list[Row]:
        """Rows of ``table`` whose ``column`` equals ``value``."""
        return [r for r in self.rows(table) if same(r.get(column), value)]

    def can_take(self, table: str, row: Row, column: str, value: object) -> bool:
        """Whether ``row.column = value`` keeps NOT NULL and single-column uniqueness."""
        if value is None:
            return column not in self.schema.notnull(table) and column not in self.schema.key_columns(table)
        if column == self.schema.rowid_alias(table) and (
            not isinstance(value, int) or isinstance(value, bool)
        ):
            return False
        if column in self.schema.unique_columns(table):
            return all(r is row for r in self.holders(table, column, value))
        return True

    # --- assignment ------------------------------------------------------------------------

    def assign(self, table: str, row: Row, column: str, value: object, depth: int = 0) -> bool:
        """Set ``row.column = value``, renaming it in children and re-keying a parent as needed.

        Args:
            table: the row's table.
            row: the row (changed in place).
            column: the column to set.
            value: its new value.
            depth: recursion depth through foreign keys (internal).

        Returns:
            Whether the value was set (it is refused when it would duplicate a unique value or
            put NULL in a NOT NULL column).
        """
        old = row.get(column)
        if same(old, value):
            return True
        if depth > _MAX_DEPTH or not self.can_take(table, row, column, value):
            return False
        for link in self.schema.links_from(table):
            if (
                column in link.columns
                and value is not None
                and not self._ensure_parent(link, row, column, value, depth)
            ):
                return False
        if old is not None:
            self._rename_children(table, row, column, old, value)
        row[column] = value
        return True

    def _ensure_parent(self, link: Link, row: Row, column: str, value: object, depth: int) -> bool:
        position = link.columns.index(column)
        ref = link.ref_columns[position]
        wanted = tuple(value if c == column else row.get(c) for c in link.columns)
        parents = self.rows(link.parent)
        if None in wanted or any(
            _same_tuple(tuple(p.get(r) for r in link.ref_columns), wanted) for p in parents
        ):
            return True
        if len(link.columns) > 1:
            partial = [p for p in parents if same(p.get(ref), value)]
            if partial:
                choice = partial[int(self.rng.integers(len(partial)))]
                for c, r in zip(link.columns, link.ref_columns):
                    if c != column:
                        row[c] = choice.get(r)
                return True
        if not parents:
            return False
        if link.parent.lower() == link.child.lower():
            parents = [p for p in parents if p is not row] or parents
        parent = parents[int(self.rng.integers(len(parents)))]
        return self.assign(link.parent, parent, ref, value, depth + 1)

    def _rename_children(self, table: str, row: Row, column: str, old: object, value: object) -> None:
        for link in self.schema.links_to(table):
            if column not in link.ref_columns or not link.parent_unique:
                continue
            position = link.ref_columns.index(column)
            key = tuple(row.get(r) for r in link.ref_columns)
            others = [
                p
                for p in self.rows(table)
                if p is not row and _same_tuple(tuple(p.get(r) for r in link.ref_columns), key)
            ]
            if others:
                continue
            for child in self.rows(link.child):
                if child is row:
                    continue
                if _same_tuple(tuple(child.get(c) for c in link.columns), key):
                    child[link.columns[position]] = value

    # --- fresh values and copies -----------------------------------------------------------

    def fresh_value(self, table: str, column: str, like: object) -> object:
        """A value of ``like``'s kind that no row of ``table`` holds in ``column``."""
        return self._fresh(table, column, like, _Taken(self, table))

    def _fresh(self, table: str, column: str, like: object, taken: _Taken) -> object:
        values = taken.column(column)
        if isinstance(like, bool):
            like = int(like)
        if isinstance(like, (int, float)) or (
            like is None and integer_typed(self.schema.type_of(table, column))
        ):
            top = taken.top(column) + 1
            taken.numbers[column] = top
            value: object = float(top) if isinstance(like, float) else int(top)
        else:
            base = like if isinstance(like, bytes) else ("" if like is None else str(like))
            while True:
                self._counter += 1
                value = (
                    base + b"~" + str(self._counter).encode()
                    if isinstance(base, bytes)
                    else f"{base}~{self._counter}"
                )
                if value not in values:
                    break
        values.add(value)
        return value

    def clone(self, table: str, row: Row, keep: frozenset[str] = frozenset()) -> Row | None:
        """A copy of ``row`` that every unique set allows, or ``None`` when none could be made.

        Single-column keys get fresh values; a multi-column key changes one of its columns that
        is not a foreign key (``keep`` names columns to change only as a last resort), or takes
        another parent's key tuple. The copy is not added to the table.
        """
        return self.clones(table, [row], keep)[0]

    def clones(self, table: str, rows: list[Row], keep: frozenset[str] = frozenset()) -> list[Row | None]:
        """:meth:`clone` of each of ``rows``, the copies unique among themselves too."""
        taken = _Taken(self, table)
        fks = self.schema.fk_columns(table)
        out: list[Row | None] = []
        for row in rows:
            new = self._copy(table, row, keep, taken, fks)
            if new is not None:
                taken.add(new)
            out.append(new)
        return out

    def _copy(self, table: str, row: Row, keep: frozenset[str], taken: _Taken, fks: set[str]) -> Row | None:
        new = dict(row)
        for key in self.schema.unique_sets(table):
            if tuple(new.get(c) for c in key) not in taken.keys[key]:
                continue
            free = [c for c in key if c not in fks and c not in keep] or [c for c in key if c not in fks]
            if free:
                new[free[0]] = self._fresh(table, free[0], row.get(free[0]), taken)
            elif not self._other_parent(table, new, key, taken):
                return None
        return new

    def _other_parent(self, table: str, new: Row, key: tuple[str, ...], taken: _Taken) -> bool:
        for link in self.schema.links_from(table):
            if not set(link.columns) & set(key):
                continue
            parents = self.rows(link.parent)
            for i in self.rng.permutation(len(parents)):
                candidate = dict(new)
                for c, r in zip(link.columns, link.ref_columns):
                    candidate[c] = parents[int(i)].get(r)
                if tuple(candidate.get(c) for c in key) not in taken.keys[key]:
                    new.update(candidate)
                    return True
        return False


class _Taken:
    """The key tuples and column values a table holds, kept current across a batch of copies."""

    def __init__(self, editor: Editor, table: str) -> None:
        self.rows = editor.rows(table)
        self.sets = editor.schema.unique_sets(table)
        self.keys = {key: {tuple(r.get(c) for c in key) for r in self.rows} for key in self.sets}
        self.values: dict[str, set] = {}
        self.numbers: dict[str, float] = {}

    def column(self, column: str) -> set:
        if column not in self.values:
            self.values[column] = {r.get(column) for r in self.rows}
        return self.values[column]

    def top(self, column: str) -> float:
        if column not in self.numbers:
            nums = [v for v in self.column(column) if isinstance(v, (int, float)) and not isinstance(v, bool)]
            self.numbers[column] = max(nums, default=0)
        return self.numbers[column]

    def add(self, row: Row) -> None:
        for key in self.sets:
            self.keys[key].add(tuple(row.get(c) for c in key))
        for column, values in self.values.items():
            values.add(row.get(column))


def same(a: object, b: object) -> bool:
    """SQL-ish equality of two stored values (1 == 1.0; NULL equals only NULL here)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _same_tuple(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


__all__ = ["Editor", "same"]
