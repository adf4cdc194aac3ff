"""What a mutation sees: the rows of one variant, the query, and the tools to edit both safely."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quill_env.variants.edit import Editor
from quill_env.variants.planting import Planter
from quill_env.variants.query import Node, QueryModel
from quill_env.variants.schema import Data, Row, Schema


@dataclass
class Context:
    """One variant being mutated.

    Attributes:
        schema: the constraints.
        model: the original query.
        literals: what :func:`~.literals.query_literals` found, by ``(table, column)``.
        planter: makes rows satisfy the query's filters.
        editor: constraint-aware edits of :attr:`data`.
    """

    schema: Schema
    model: QueryModel
    literals: dict[tuple[str, str], list[object]]
    planter: Planter
    editor: Editor

    @property
    def data(self) -> Data:
        """The variant's rows."""
        return self.editor.data

    @property
    def rng(self) -> np.random.Generator:
        """The variant's random generator."""
        return self.editor.rng

    def rows(self, table: str) -> list[Row]:
        """The rows of ``table``."""
        return self.editor.rows(table)

    def node_of(self, table: str) -> Node | None:
        """The first node of the query that reads ``table`` and can reach the answer."""
        return next((n for n in self.model.positive_nodes() if n.table.lower() == table.lower()), None)

    def satisfy(self, table: str, row: Row, skip: frozenset[str] = frozenset()) -> None:
        """Make ``row`` pass the query's filters on ``table`` and its join partners' filters."""
        node = self.node_of(table)
        if node is not None:
            self.planter.solve(self.editor, node, row, skip=skip)
            self.planter.support(self.editor, node, row)

    def pick(self, items: list, n: int) -> list:
        """``n`` of ``items`` at random (all when fewer), in their order."""
        if len(items) <= n:
            return list(items)
        return [items[int(i)] for i in sorted(self.rng.choice(len(items), size=n, replace=False))]

    def observed(self, table: str, column: str) -> list[object]:
        """The distinct non-NULL values of ``table.column`` in the variant, first seen first."""
        return list(dict.fromkeys(r.get(column) for r in self.rows(table) if r.get(column) is not None))


__all__ = ["Context"]
