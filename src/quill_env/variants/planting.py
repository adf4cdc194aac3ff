"""Witness planting: make a few sampled rows satisfy the query, so its answer is not empty.

Lineage seeds a sample only with answers the source has; a query whose literals name rows the
small source lacks (``WHERE id = 704`` on a 300-row tier, an e-mail of a user it never drew)
returns nothing there. Such a query gets *witnesses*: chains of rows, one per table the query
reads, connected along its join equalities, each made to satisfy the query's filters on it.

A filter is never interpreted by Quill: candidate values for a column are derived from the
literals of the filters on it (the literals, their neighbours, sums and differences of numeric
literals, the literal written over an observed value of the column so dates stay dates,
instantiations of LIKE patterns, observed values, NULL) and the engine itself (the source's)
says which satisfy the filters, evaluated on the candidate rows in a scratch table with the
column's type (SQLite: its affinity).
Values are set through :class:`~.edit.Editor`, so keys stay unique and foreign keys follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from itertools import permutations

import numpy as np
from sqlglot import exp

from quill_env import sqlbuild
from quill_env.backends.base import Backend
from quill_env.errors import EngineError
from quill_env.variants.edit import Editor, same
from quill_env.variants.literals import expression_literals, like_matches, neighbours, overlays, parse_date
from quill_env.variants.materialize import RowInserter
from quill_env.variants.query import Filter, Node, QueryModel
from quill_env.variants.schema import Row, Schema, integer_typed, is_numeric

SLOT = "quill_slot__"
"""The scratch tables' extra column: which candidate a row is."""

CHECK_WORK = 2_000_000
"""Work units (SQLite: VM instructions) one filter evaluation may run."""

_BINDING = (OverflowError, TypeError, ValueError)
"""What a driver raises for a candidate value it cannot bind (an integer past 64 bits)."""


class FilterCheck:
    """Evaluates filters on candidate rows in scratch copies of the tables (no constraints).

    Args:
        schema: the constraints (for table names and columns).
        backend: an empty database of the schema (see :meth:`~.materialize.SchemaImage.empty`),
            owned by the check from now on; filters are rendered in its dialect.
    """

    def __init__(self, schema: Schema, backend: Backend) -> None:
        self.schema = schema
        self.backend = backend
        self.dialect = backend.dialect
        self._tables: dict[tuple, tuple[str, RowInserter, str]] = {}
        self._queries: dict[tuple, str] = {}

    def close(self) -> None:
        """Release the scratch database."""
        self.backend.close()

    def _scratch(self, table: str, columns: tuple[str, ...]) -> tuple[str, RowInserter, str]:
        """A constraint-free table with ``columns`` of ``table`` (their affinity kept) and a slot."""
        key = (table.lower(), columns)
        if key not in self._tables:
            info = self.schema.info(table)
            name = f"quill_scratch_{len(self._tables)}"
            select = (
                exp.select(
                    *[sqlbuild.column(c) for c in columns],
                    exp.alias_(exp.Literal.number(0), SLOT, quoted=True),
                )
                .from_(sqlbuild.table(info.name))
                .limit(0)
            )
            create = exp.Create(this=sqlbuild.table(name), kind="TABLE", expression=select)
            self.backend.query(create.sql(self.dialect))
            insert = RowInserter(name, [*columns, SLOT], self.dialect)
            clear = exp.delete(sqlbuild.table(name)).sql(self.dialect)
            self._tables[key] = (name, insert, clear)
        return self._tables[key]

    def check(self, node: Node, filters: Sequence[Filter], rows: Sequence[Row]) -> list[bool]:
        """Which of ``rows`` (of ``node``'s table) satisfy every one of ``filters``.

        Args:
            node: the query's table occurrence the filters read (``"n<id>"``).
            filters: its filters.
            rows: candidate rows of its table.

        Returns:
            One flag per row; a filter the engine cannot evaluate (or that exhausts
            :data:`CHECK_WORK`) is satisfied by no row. A candidate value the engine refuses
            for the column's type (not SQLite's way: its columns take any value) is left out,
            and its row satisfies nothing.
        """
        if not filters:
            return [True] * len(rows)
        if not rows:
            return []
        columns = tuple(sorted({c for f in filters for c in f.columns}))
        name, insert, clear = self._scratch(node.table, columns)
        key = (name, node.label, tuple(id(f) for f in filters))
        if key not in self._queries:
            source = exp.Table(
                this=exp.to_identifier(name, quoted=True),
                alias=exp.TableAlias(this=exp.to_identifier(node.label, quoted=True)),
            )
            where = exp.and_(*[exp.paren(f.expr.copy()) for f in filters])
            self._queries[key] = (
                exp.select(sqlbuild.column(SLOT)).from_(source).where(where).sql(self.dialect)
            )
        backend = self.backend
        candidates = [(*[r.get(c) for c in columns], i) for i, r in enumerate(rows)]
        hits: set[int] = set()
        try:
            try:
                insert.insert(backend, candidates)
            except EngineError:  # a value the column's type refuses: the others one by one
                backend.query(clear)
                for candidate in candidates:
                    with contextlib.suppress(EngineError):
                        insert.insert(backend, [candidate])
            found = backend.query(self._queries[key], max_work=CHECK_WORK)
            hits = {int(r[0]) for r in found if isinstance(r[0], int)}
        except (EngineError, *_BINDING):
            hits = set()  # a filter the engine cannot evaluate on its own row satisfies nothing here
        finally:
            backend.query(clear)
        return [i in hits for i in range(len(rows))]


class Planter:
    """Plants witnesses of ``model``'s query into variant rows.

    Args:
        model: the query.
        schema: the constraints.
        check: the filter evaluator.
    """

    def __init__(self, model: QueryModel, schema: Schema, check: FilterCheck) -> None:
        self.model = model
        self.schema = schema
        self.checker = check

    @property
    def active(self) -> bool:
        """Whether the query has filters or joins that planting can act on."""
        model = self.model
        return any(not f.node.negative for f in model.filters) or bool(
            model.edges or model.anti or model.outliers
        )

    def plant(
        self, editor: Editor, witnesses: int = 3, *, aggressive: bool = False, keep_nulls: bool = False
    ) -> None:
        """Add ``witnesses`` chains of rows that satisfy the query's filters and joins.

        Rows that would remove a witness through ``NOT IN`` or ``NOT EXISTS`` are deleted. When
        ``aggressive``, NULLs that empty a ``NOT IN`` go too (unless ``keep_nulls``: a variant
        made to spring that trap keeps them), and a witness compared with an aggregate of its
        own group (``total > (SELECT 3 * AVG(total) ...)``) is made to stand out.

        Args:
            editor: the variant's rows (edited in place).
            witnesses: chains planted per connected group of the query's tables.
            aggressive: also delete blocking NULLs and make outliers stand out.
            keep_nulls: never delete NULLs (the variant is about them).
        """
        model = self.model
        special = {a.outer.node.id for a in model.anti} | {o.ref.node.id for o in model.outliers}
        for component in self._components():
            if not any(model.filters_of(n) or n.id in special for n in component):
                continue
            start = max(component, key=lambda n: (len(model.filters_of(n)), n.id in special, -n.id))
            used: dict[int, set[int]] = {}
            for _ in range(witnesses):
                placed = self._witness(editor, start, used)
                self._unblock(editor, placed, aggressive and not keep_nulls)
                if aggressive:
                    self._stand_out(editor, placed)

    def _unblock(self, editor: Editor, placed: dict[int, Row], aggressive: bool) -> None:
        for anti in self.model.anti:
            row = placed.get(anti.outer.node.id)
            if row is None:
                continue
            value = row.get(anti.outer.column)
            inner = anti.inner.node
            rows = editor.rows(inner.table)
            victims = [r for r in rows if value is not None and same(r.get(anti.inner.column), value)]
            if aggressive and anti.null_sensitive:
                victims += [r for r in rows if r.get(anti.inner.column) is None]
            flags = self.checker.check(inner, self.model.filters_of(inner), victims)
            doomed = {id(r) for r, hit in zip(victims, flags) if hit and r is not row}
            if doomed:
                rows[:] = [r for r in rows if id(r) not in doomed]

    def _stand_out(self, editor: Editor, placed: dict[int, Row]) -> None:
        for outlier in self.model.outliers:
            row = placed.get(outlier.ref.node.id)
            measure = outlier.measure
            if row is None or measure is None:
                continue
            table, column = outlier.ref.node.table, outlier.ref.column
            own = sorted(v for v in (r.get(column) for r in editor.rows(table)) if is_numeric(v))
            inner = measure.node.table
            values = sorted(v for v in (r.get(measure.column) for r in editor.rows(inner)) if is_numeric(v))
            if len(own) < 2 or len(values) < 2:
                continue
            editor.assign(table, row, column, own[-1] if outlier.high else own[0])
            filler = values[0] if outlier.high else values[-1]

            key = [(i.column, row.get(o.column)) for i, o in outlier.correlation]
            group = [r for r in editor.rows(inner) if r is not row and all(same(r.get(c), v) for c, v in key)]
            for r in group:
                editor.assign(inner, r, measure.column, filler)
            template = row if inner.lower() == table.lower() else (group or editor.rows(inner))[0]
            copies = [c for c in editor.clones(inner, [template] * 4) if c is not None]
            for copy in copies:
                for i, o in outlier.correlation:
                    copy[i.column] = row.get(o.column)
                copy[measure.column] = filler
            editor.rows(inner).extend(copies)

    def _components(self) -> list[list[Node]]:
        nodes = self.model.positive_nodes()
        parent = {n.id: n.id for n in nodes}

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for edge in self.model.edges:
            a, b = edge.left.node, edge.right.node
            if a.id in parent and b.id in parent:
                parent[find(a.id)] = find(b.id)
        groups: dict[int, list[Node]] = {}
        for n in nodes:
            groups.setdefault(find(n.id), []).append(n)
        return [groups[k] for k in sorted(groups)]

    def _witness(self, editor: Editor, start: Node, used: dict[int, set[int]]) -> dict[int, Row]:
        rows = editor.rows(start.table)
        if not rows:
            return {}
        first = self.pick(editor, start, rows, used.setdefault(start.id, set()))
        placed: dict[int, Row] = {start.id: first}
        queue = [start]
        while queue:
            node = queue.pop(0)
            row = placed[node.id]
            for mine, other in self.model.edges_of(node):
                target = other.node
                if target.id in placed or target.negative:
                    continue
                partner = self._partner(
                    editor, node, row, mine.column, target, other.column, used.setdefault(target.id, set())
                )
                if partner is not None:
                    placed[target.id] = partner
                    queue.append(target)
        return placed

    def pick(self, editor: Editor, node: Node, rows: list[Row], used: set[int]) -> Row:
        """A row of ``node``'s table that satisfies its filters (planted when none does)."""
        filters = self.model.filters_of(node)
        flags = self.checker.check(node, filters, rows)
        good = [r for r, ok in zip(rows, flags) if ok and id(r) not in used]
        rng = editor.rng
        if good:
            row = good[int(rng.integers(len(good)))]
        else:
            fresh = [r for r in rows if id(r) not in used] or rows
            row = fresh[int(rng.integers(len(fresh)))]
            self.solve(editor, node, row)
        used.add(id(row))
        return row

    def _partner(
        self, editor: Editor, node: Node, row: Row, column: str, target: Node, other: str, used: set[int]
    ) -> Row | None:
        """A row of ``target`` joined to ``row`` (``row.column = partner.other``) satisfying its filters."""
        value = row.get(column)
        rows = editor.rows(target.table)
        if not rows or value is None:
            return None
        rng = editor.rng
        partners = [r for r in rows if same(r.get(other), value)]
        filters = self.model.filters_of(target)
        if partners:
            flags = self.checker.check(target, filters, partners)
            good = [r for r, ok in zip(partners, flags) if ok]
            if row in good:
                return row
            choice = (good or partners)[int(rng.integers(len(good or partners)))]
            if not good:
                self.solve(editor, target, choice)
                editor.assign(target.table, choice, other, value)
            used.add(id(choice))
            return choice
        fresh = [r for r in rows if id(r) not in used] or rows
        choice = fresh[int(rng.integers(len(fresh)))]
        self.solve(editor, target, choice)
        if not editor.assign(target.table, choice, other, value) and not editor.assign(
            node.table, row, column, choice.get(other)
        ):
            return None
        used.add(id(choice))
        return choice

    # --- solving one row -------------------------------------------------------------------

    def solve(self, editor: Editor, node: Node, row: Row, skip: frozenset[str] = frozenset()) -> bool:
        """Change ``row`` (of ``node``'s table) so that it satisfies ``node``'s filters, if it can.

        Args:
            editor: the variant's rows.
            node: the query's table occurrence.
            row: a row of its table (changed in place, through ``editor``).
            skip: columns the caller fixes: filters that read one are left alone.

        Returns:
            Whether the row satisfies the (remaining) filters afterwards.
        """
        filters = [f for f in self.model.filters_of(node) if not f.columns & skip]
        if not filters or self.checker.check(node, filters, [row])[0]:
            return True
        table = node.table
        columns = sorted(
            {c for f in filters for c in f.columns},
            key=lambda c: (not any(f.columns == {c} for f in filters), c),
        )
        for column in columns:
            own = [f for f in filters if f.columns == {column}]
            if not own or self.checker.check(node, own, [row])[0]:
                continue
            value = self._choose(editor, node, row, column, own)
            if value is not _NONE:
                editor.assign(table, row, column, value)
        rest = [f for f in filters if len(f.columns) > 1]
        for f in rest:
            if self.checker.check(node, [f], [row])[0]:
                continue
            self._solve_joint(editor, node, row, f, filters)
        return self.checker.check(node, filters, [row])[0]

    def support(self, editor: Editor, node: Node, row: Row) -> None:
        """Make the rows joined to ``row`` satisfy their own filters (one join away)."""
        for mine, other in self.model.edges_of(node):
            if other.node.negative or row.get(mine.column) is None:
                continue
            partners = [
                r for r in editor.rows(other.node.table) if same(r.get(other.column), row.get(mine.column))
            ]
            if partners:
                self.solve(editor, other.node, partners[0], skip=frozenset({other.column}))

    def _choose(self, editor: Editor, node: Node, row: Row, column: str, filters: list[Filter]) -> object:
        table = node.table
        ranked = self.candidates(editor, table, column, filters)
        values = [v for _, v in ranked]
        trials = [{**row, column: v} for v in values]
        flags = self.checker.check(node, filters, trials)
        ok = [
            (rank, v) for (rank, v), f in zip(ranked, flags) if f and editor.can_take(table, row, column, v)
        ]
        if not ok:
            return _NONE
        best = min(rank for rank, _ in ok)
        pool = [v for rank, v in ok if rank == best]
        return pool[int(editor.rng.integers(len(pool)))]

    def _solve_joint(
        self, editor: Editor, node: Node, row: Row, target: Filter, filters: list[Filter]
    ) -> None:
        columns = sorted(target.columns)
        pools = {c: [v for _, v in self.candidates(editor, node.table, c, [target])] for c in columns}
        rng = editor.rng
        trials = []
        for _ in range(24):
            trial = dict(row)
            for c in columns:
                if pools[c]:
                    trial[c] = pools[c][int(rng.integers(len(pools[c])))]
            trials.append(trial)
        flags = self.checker.check(node, filters, trials)
        for trial, ok in zip(trials, flags):
            if ok:
                for c in columns:
                    editor.assign(node.table, row, c, trial[c])
                return

    def candidates(
        self, editor: Editor, table: str, column: str, filters: Sequence[Filter]
    ) -> list[tuple[int, object]]:
        """Candidate values for ``table.column`` under ``filters``, each with a rank.

        A lower rank is closer to the column's observed domain.
        """
        literals: list[object] = []
        for f in filters:
            literals += [v for v in expression_literals(f.expr) if v not in literals]
        rng = editor.rng
        present = [r.get(column) for r in editor.rows(table) if r.get(column) is not None]
        observed = list(dict.fromkeys(present))
        if len(observed) > 6:
            observed = [observed[int(i)] for i in sorted(rng.choice(len(observed), size=6, replace=False))]
        strings = [v for v in literals if isinstance(v, str)]
        numbers = [v for v in literals if is_numeric(v)][:6]
        out: list[tuple[int, object]] = []
        texts = [v for v in observed if isinstance(v, str)]
        for s in strings:
            for v in texts[:3]:
                out += [(0, c) for c in overlays(s, v)]
            out += [(0 if parse_date(s) else 1, s)]
            out += [(1, v) for v in neighbours(s)[1:]]
            if "%" in s or "_" in s:
                out += [(1, v) for v in like_matches(s, texts, rng)]
            with contextlib.suppress(ValueError):
                out.append((2, int(s)) if s.strip().lstrip("-").isdigit() else (2, float(s)))
        for n in numbers:
            out += [(1, v) for v in neighbours(n)]
            out.append((3, str(n)))
            if isinstance(n, int) and 0 <= n <= 300:
                out += [(3, "x" * k) for k in (n + 1, n, max(n - 1, 0))]
        for a, b in permutations(numbers, 2):
            out += [(2, a + b), (2, a - b), (2, a * b), (2, (a + b) / 2)]
            if b:
                out.append((2, a / b))
        out += [(3, v) for v in observed]
        if column not in self.schema.notnull(table):
            out.append((4, None))
        return _ranked_by_domain(out, observed, integer_typed(self.schema.type_of(table, column)))


class _Missing:
    pass


_NONE = _Missing()


def _ranked_by_domain(
    candidates: list[tuple[int, object]], observed: list[object], integer: bool
) -> list[tuple[int, object]]:
    """Candidates without repeats, demoted when their kind differs from the observed values'."""
    kinds = {type(v) for v in observed}
    seen: set = set()
    out = []
    for rank, value in candidates:
        if isinstance(value, float) and value.is_integer() and (integer or int in kinds):
            value = int(value)
        marker = (type(value), value)
        if marker in seen:
            continue
        seen.add(marker)
        if (
            value is not None
            and kinds
            and type(value) not in kinds
            and not (is_numeric(value) and kinds <= {int, float})
        ):
            rank += 3
        if isinstance(value, float) and not value.is_integer() and (integer or kinds == {int}):
            rank += 3
        out.append((rank, value))
    return out


def witness_count(rows: int) -> int:
    """How many witnesses a table of ``rows`` sampled rows gets.

    >>> witness_count(3), witness_count(40), witness_count(400)
    (2, 4, 8)
    """
    return int(np.clip(rows // 10, 2, 8))


__all__ = ["FilterCheck", "Planter", "witness_count"]
