"""Coverage-guided samples of the source database.

A uniform sample of a few dozen rows per table rarely holds a row that a selective query
returns, so every variant's sample is seeded from the query's lineage on the source
(:mod:`quill_env.lineage`):

1. a random subset of the answer's rows (whole lineage tuples, so joined rows stay together);
2. children of those rows through every foreign key, a few per parent (the rows a correlated
   subquery or a join to a child table reaches);
3. random rows, so rows outside the answer (the ones a wrong rewrite lets in) are there too;
4. the parent closure: every row a sampled foreign key references, by the whole key tuple
   (multi-column keys such as TPC-H's ``lineitem(l_partkey, l_suppkey) -> partsupp``), repeated
   until nothing is missing, so foreign keys hold by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from quill_env.lineage import ScopeLineage
from quill_env.variants.schema import Data, Schema
from quill_env.variants.source import Key, Source

CHILDREN_PER_PARENT = 3
"""Children fetched per seeded parent and foreign key."""

CLOSURE_ROUNDS = 6
"""Rounds of fetching missing parents (a self-reference may chain)."""

PARENTS_PER_KEY = 3
"""Parent rows fetched per missing key value when the referenced columns are not unique."""


class Sampler:
    """Samples of one source database.

    Args:
        source: the source's tables.
        schema: its constraints.
        rows_per_table: random rows per table (seeds and parents come on top).
    """

    def __init__(self, source: Source, schema: Schema, rows_per_table: int) -> None:
        self.source = source
        self.schema = schema
        self.rows_per_table = rows_per_table

    def sample(self, rng: np.random.Generator, lineage: Sequence[ScopeLineage] = ()) -> Data:
        """One sample: lineage seeds, their children, random rows, and the parent closure.

        Args:
            rng: the variant's random generator (every choice comes from it).
            lineage: the query's lineage on the source (:func:`quill_env.lineage.lineage_scopes`).

        Returns:
            Rows per table, parents before children; every foreign key holds unless the source
            itself breaks it (the variant's foreign-key pass then repairs it).
        """
        chosen: dict[str, dict[Key, tuple]] = {info.name: {} for info in self.schema.order}
        seeds = self._seeds(rng, lineage)
        for name, keys in seeds.items():
            chosen[name].update(self.source.table(name).rows(sorted(keys)))
        self._children(rng, chosen, {n: dict(rows) for n, rows in chosen.items()})
        for info in self.schema.order:
            self._random(rng, info.name, chosen[info.name])
        self._close(chosen)
        return {
            info.name: [dict(zip(info.column_names, row)) for row in chosen[info.name].values()]
            for info in self.schema.order
        }

    def _seeds(self, rng: np.random.Generator, lineage: Sequence[ScopeLineage]) -> dict[str, set[Key]]:
        seeds: dict[str, set[Key]] = {}
        scopes = [s for s in lineage if s.rows]
        if not scopes:
            return seeds
        budget = max(1, self.rows_per_table // 2)
        share = max(1, budget // len(scopes))
        for scope in scopes:
            n = min(len(scope.rows), share)
            for i in sorted(rng.choice(len(scope.rows), size=n, replace=False)):
                for table, rowid in zip(scope.tables, scope.rows[int(i)]):
                    key = table.lower()
                    if (
                        isinstance(rowid, int)
                        and key in self.schema.tables
                        and self.source.table(key).has_rowid
                    ):
                        seeds.setdefault(self.schema.tables[key].name, set()).add((rowid,))
        return seeds

    def _children(
        self,
        rng: np.random.Generator,
        chosen: dict[str, dict[Key, tuple]],
        seeded: dict[str, dict[Key, tuple]],
    ) -> None:
        for link in self.schema.links:
            parents = seeded.get(link.parent, {})
            if not parents or link.child not in chosen:
                continue
            parent_columns = self.schema.info(link.parent).column_names
            positions = [parent_columns.index(c) for c in link.ref_columns]
            keys = {tuple(row[p] for p in positions) for row in parents.values()}
            table = self.source.table(link.child)
            found = table.matching(link.columns, keys, limit=CHILDREN_PER_PARENT * 8 * len(keys))
            child_positions = [table.columns.index(c) for c in link.columns]
            by_parent: dict[tuple, list] = {}
            for key, row in found:
                by_parent.setdefault(tuple(row[p] for p in child_positions), []).append((key, row))
            added = 0
            for value in sorted(by_parent, key=repr):
                group = by_parent[value]
                picks = rng.choice(len(group), size=min(CHILDREN_PER_PARENT, len(group)), replace=False)
                for i in sorted(picks):
                    key, row = group[int(i)]
                    if key not in chosen[link.child] and added < self.rows_per_table:
                        chosen[link.child][key] = row
                        added += 1

    def _random(self, rng: np.random.Generator, name: str, rows: dict[Key, tuple]) -> None:
        table = self.source.table(name)
        keys = table.keys()
        n = min(max(self.rows_per_table // 2, self.rows_per_table - len(rows)), len(keys))
        if n <= 0:
            return
        picks = sorted(keys[int(i)] for i in rng.choice(len(keys), size=n, replace=False))
        rows.update((k, r) for k, r in table.rows(p for p in picks if p not in rows))

    def _close(self, chosen: dict[str, dict[Key, tuple]]) -> None:
        for _ in range(CLOSURE_ROUNDS):
            added = False
            for link in self.schema.links:
                child_columns = self.schema.info(link.child).column_names
                parent_columns = self.schema.info(link.parent).column_names
                cpos = [child_columns.index(c) for c in link.columns]
                ppos = [parent_columns.index(c) for c in link.ref_columns]
                required = {tuple(row[p] for p in cpos) for row in chosen[link.child].values()}
                required = {v for v in required if None not in v}
                present = {tuple(row[p] for p in ppos) for row in chosen[link.parent].values()}
                missing = required - present
                if not missing:
                    continue
                limit = None if link.parent_unique else PARENTS_PER_KEY * len(missing)
                for key, row in self.source.table(link.parent).matching(
                    link.ref_columns, missing, limit=limit
                ):
                    if key not in chosen[link.parent]:
                        chosen[link.parent][key] = row
                        added = True
            if not added:
                return


__all__ = ["Sampler"]
