"""What is held out for testing, so that generated training data never comes from it.

Quill's splits are separated by schema as well as by query (DESIGN §7): a *held-out schema* is a
shipped suite whose every task is in the test split (``clinic`` and ``logistics``), and within
the other suites the test-split tasks are held out. ``quill generate`` draws from neither by
default, and ``quill export`` and ``quill train`` refuse data that does, unless asked explicitly
(``--include-test-schemas``).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from quill_agents.dedup import shape_fingerprint
from quill_env.errors import ConfigError
from quill_env.tasks import get_suite, list_suites

INCLUDE_FLAG = "--include-test-schemas"
"""The command-line flag that lets held-out data through (``quill generate/export/train``)."""


@functools.cache
def held_out_schemas() -> tuple[str, ...]:
    """The shipped suites whose every task is in the test split (schemas no model trains on).

    >>> held_out_schemas()
    ('clinic', 'logistics')
    """
    out = []
    for name in list_suites():
        tasks = get_suite(name).tasks
        if tasks and all(t.split == "test" for t in tasks):
            out.append(name)
    return tuple(out)


def training_schemas() -> list[str]:
    """The shipped suites that training data may come from (every one that is not held out)."""
    return [n for n in list_suites() if n not in held_out_schemas()]


def check_schemas(
    names: Iterable[str], *, include_test_schemas: bool = False, what: str = "draw from"
) -> None:
    """Refuse held-out schemas among ``names`` unless ``include_test_schemas``.

    Args:
        names: suite names.
        include_test_schemas: allow them (the caller asked explicitly).
        what: the verb of the message (``draw from``, ``export``, ``train on``).

    Raises:
        ConfigError: a held-out schema is named and ``include_test_schemas`` is false.
    """
    held = sorted(set(names) & set(held_out_schemas()))
    if held and not include_test_schemas:
        raise ConfigError(
            f"refusing to {what} the held-out test schema(s) {', '.join(held)}: their tasks form the test "
            f"split, so training on them makes the test score meaningless; pass {INCLUDE_FLAG} "
            "(include_test_schemas=True) to do it anyway"
        )


def held_out_records(records: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """How many of ``records`` come from each held-out schema (by their ``suite`` field).

    >>> held_out_records([{"suite": "shop"}, {"suite": "clinic"}, {"suite": "clinic"}])
    Counter({'clinic': 2})
    """
    held = set(held_out_schemas())
    return Counter(str(r.get("suite")) for r in records if r.get("suite") in held)


def held_out_shapes(suite: Any, schema_map: Mapping[str, Mapping[str, str]]) -> set[str]:
    """Literal-free fingerprints of a suite's test-split queries (generated data must avoid them).

    Args:
        suite: a :class:`~quill_env.tasks.Suite`.
        schema_map: its ``{table: {column: type}}`` map, as the data loop fingerprints with.
    """
    return {shape_fingerprint(t.query, schema_map) for t in suite.split("test")}


__all__ = [
    "INCLUDE_FLAG",
    "check_schemas",
    "held_out_records",
    "held_out_schemas",
    "held_out_shapes",
    "training_schemas",
]
