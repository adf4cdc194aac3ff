"""Golden verifier fixtures: classic rewrite traps that only the variant databases catch.

Every ``tests/fixtures/verifier/*.sql`` file holds one (original, candidate) pair::

    # expect: equivalent | mismatch
    # why: one line saying what the trap is
    # main: mismatch            (optional; default: the pair agrees on the main database)
    -- original
    SELECT ...;
    -- candidate
    SELECT ...;

The main database below is built so that every mismatch pair *agrees* on it (no NULLs in the
nullable columns, unique names, every customer has a paid order, no value equal to a literal of
a query, no ties, no group of four orders, one membership per customer although nothing makes
``memberships.customer_id`` a key), so a ``wrong_result`` with variants proves the variants
caught the trap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import apsw
import pytest

import quill_env
from quill_env import Verdict

FIXTURES = Path(__file__).parent / "fixtures" / "verifier"


@dataclass(frozen=True)
class Pair:
    name: str
    expect: str
    why: str
    main: str
    original: str
    candidate: str


def load_pairs(directory: Path = FIXTURES) -> list[Pair]:
    """Parse every fixture file of ``directory`` into a :class:`Pair`."""
    pairs = []
    for path in sorted(directory.glob("*.sql")):
        meta: dict[str, str] = {}
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if current is None and stripped.startswith("#"):
                key, _, value = stripped.lstrip("#").partition(":")
                meta[key.strip().lower()] = value.strip()
            elif stripped in ("-- original", "-- candidate"):
                current = sections.setdefault(stripped[3:], [])
            elif current is not None:
                current.append(line)
            elif stripped:
                raise ValueError(f"{path.name}: text outside a section: {line!r}")
        expect = meta.get("expect", "")
        assert expect in ("equivalent", "mismatch"), f"{path.name}: bad or missing '# expect:'"
        assert meta.get("why"), f"{path.name}: missing '# why:'"
        assert set(sections) == {"original", "candidate"}, f"{path.name}: need both sections"
        main = meta.get("main", "equivalent")
        assert main in ("equivalent", "mismatch"), f"{path.name}: bad '# main:'"
        original, candidate = ("\n".join(sections[k]).strip() for k in ("original", "candidate"))
        assert original and candidate, f"{path.name}: empty section"
        pairs.append(Pair(path.stem, expect, meta["why"], main, original, candidate))
    return pairs


PAIRS = load_pairs()

CITIES = ["Paris", "Lyon", "Nice", "Oslo"]
TIERS = ["gold", "silver", "bronze"]
NAMES = ["Ada", "Bob", "Cyd", "Dan", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lea"]


def _orders() -> list[tuple]:
    """Two or three orders per customer; amounts distinct and away from the literals 100/500."""
    rows = []
    days = [d for d in range(1, 32) if d not in (4, 5, 6, 19, 20, 21)]
    for cid in range(1, 13):
        rows.append((cid, 50 + cid * 7.5 + 0.25, "paid"))
        rows.append((cid, 200 + cid * 11 + 0.25, "refunded" if cid in (3, 8) else "shipped"))
        if cid not in (2, 5, 8, 11):
            rows.append((cid, 600 + cid * 13 + 0.25, "paid"))
    return [
        (i + 1, cid, amount, status, f"2024-01-{days[i % len(days)]:02d}")
        for i, (cid, amount, status) in enumerate(rows)
    ]


@pytest.fixture(scope="module")
def main_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("golden") / "shop.db"
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, "
            "referrer_id INTEGER REFERENCES customers(id))"
        )
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), "
            "amount REAL NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            [(i + 1, NAMES[i], CITIES[i % 4], (i + 1) % 3 + 1) for i in range(12)],
        )
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", _orders())
        conn.execute(
            "CREATE TABLE memberships (customer_id INTEGER NOT NULL REFERENCES customers(id), "
            "tier TEXT NOT NULL, points INTEGER NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO memberships VALUES (?, ?, ?)",
            [(i + 1, TIERS[i % 3], 100 + 37 * i) for i in range(12)],
        )
    conn.close()
    return str(path)


def test_fixture_inventory() -> None:
    names = [p.name for p in PAIRS]
    assert len(names) == len(set(names))
    assert len(PAIRS) >= 26
    assert sum(p.expect == "equivalent" for p in PAIRS) >= 10


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_main_database_alone(main_db: str, pair: Pair) -> None:
    """Without variants, the pair agrees (so a mismatch is the variants' catch)."""
    result = quill_env.evaluate(main_db, pair.original, pair.candidate, num_variants=0, num_twins=0)
    if pair.main == "equivalent":
        assert result.correct is True, (pair.why, result.verdict, result.error)
    else:
        assert result.verdict is Verdict.WRONG_RESULT, (pair.why, result.verdict, result.error)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_with_variants(main_db: str, pair: Pair) -> None:
    result = quill_env.evaluate(main_db, pair.original, pair.candidate)
    detail = (pair.why, result.verdict, result.error, result.variants)
    if pair.expect == "equivalent":
        assert result.correct is True, detail
        assert all(v.status == "match" for v in result.variants), detail
    else:
        assert result.verdict is Verdict.WRONG_RESULT, detail
