"""The shape of the shipped task distribution (issue: task suites)."""

import hashlib
from collections import Counter

import pytest

from quill_env import fingerprint, get_suite, list_suites
from quill_env.authoring.taskgen import TARGET_MIX, candidates, mix

SUITES = [get_suite(n) for n in list_suites()]
ALL = [t for s in SUITES for t in s.tasks]


def test_at_least_eight_generated_schemas_plus_shop():
    assert len(SUITES) >= 9
    for suite in SUITES:
        tables = suite.generator["tables"]
        assert 2 <= len(tables) <= 8, suite.name
        assert suite.scales == ["small", "medium", "large"], suite.name


def test_split_sizes():
    splits = Counter(t.split for t in ALL)
    assert splits["train"] >= 500 and splits["test"] >= 120, splits


def test_test_schemas_are_disjoint_from_training():
    train_schemas = {t.schema for t in ALL if t.split == "train"}
    test_schemas = {t.schema for t in ALL if t.split == "test"}
    assert len(test_schemas - train_schemas) >= 2
    held_out = [t for t in ALL if t.split == "test" and t.schema in train_schemas]
    assert held_out, "the other test tasks are held-out queries of training schemas"


def test_no_canonical_query_appears_twice():
    prints = Counter(fingerprint(t.query) for t in ALL)
    dups = [fp for fp, n in prints.items() if n > 1]
    assert not dups, f"{len(dups)} duplicated canonical queries"


def test_measured_mix_is_near_target():
    measured = mix(ALL, "medium")
    for bucket, share in TARGET_MIX.items():
        assert abs(measured[bucket] - share) <= 0.10, measured
    assert all(t.reference_speedup.get("small", 0) >= 1.5 for t in ALL if t.reference is not None)


@pytest.mark.parametrize("suite", [s for s in SUITES if s.name != "shop"][:3], ids=lambda s: s.name)
def test_generation_is_deterministic(suite, tmp_path, monkeypatch):
    digests = []
    for sub in ("a", "b"):
        monkeypatch.setenv("QUILL_CACHE", str(tmp_path / sub))
        digests.append(hashlib.sha256(suite.database("small").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    first = [(c.family, c.query, c.reference) for c in candidates(suite, 25, seed=11)]
    second = [(c.family, c.query, c.reference) for c in candidates(suite, 25, seed=11)]
    assert first == second and len(first) >= 10
