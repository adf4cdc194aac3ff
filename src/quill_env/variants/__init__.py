"""Adversarial, coverage-guided variant databases for test-suite verification (DESIGN §3, §10).

A rewrite is correct only if it matches the original on the main database *and* on K small
variants of the same schema. Variants start from a sample of a source database (the user's own
database, or a suite generator's tiny tier) seeded with the rows behind the original's answer,
and are then mutated adversarially while respecting the declared constraints (NOT NULL, keys,
foreign keys, multi-column ones included) and each column's observed value domain: NULLs,
duplicates, parents without children, values on the query's literals, ties, empty tables,
groups sized at HAVING thresholds, aggregates landing on literals, near-duplicates, strings
near string literals, skewed measures. The original is run on each variant, and witnesses of
its answer are planted where it returned nothing, so a wrong rewrite has rows to disagree on.

One concept per module: :mod:`.schema` (constraints), :mod:`.source` (reading the source),
:mod:`.sampling`, :mod:`.query` (what the query asks), :mod:`.literals`, :mod:`.planting`,
:mod:`.edit` (key-preserving edits), :mod:`.mutations`, :mod:`.grouping`, :mod:`.values`,
:mod:`.materialize`, and :mod:`.builder` which puts them together.
"""

from quill_env.variants.builder import Variant, VariantBuilder
from quill_env.variants.literals import query_literals

__all__ = ["Variant", "VariantBuilder", "query_literals"]
