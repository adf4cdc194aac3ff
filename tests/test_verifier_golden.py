"""Golden verifier fixtures: classic rewrite traps that only the variant databases catch.

Every ``tests/fixtures/verifier/*.sql`` file holds one (original, candidate) pair::

    # expect: equivalent | mismatch
    # why: one line saying what the trap is
    # main: mismatch            (optional; default: the pair agrees on the main database)
    # engines: sqlite           (optional; default: every engine; for traps of one dialect)
    # expect duckdb: equivalent (optional; where an engine's semantics make the pair agree)
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

import pytest
from tests.engines import ENGINES, engine_params, port, write_database

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
    engines: tuple[str, ...] = ENGINES
    expect_on: tuple[tuple[str, str], ...] = ()

    def expected(self, engine: str) -> str:
        return dict(self.expect_on).get(engine, self.expect)


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
        engines = tuple(e.strip() for e in meta.get("engines", ",".join(ENGINES)).split(","))
        assert set(engines) <= set(ENGINES), f"{path.name}: unknown engine in '# engines:'"
        expect_on = tuple((k.split()[1], v) for k, v in meta.items() if k.startswith("expect "))
        assert all(e in ENGINES and v in ("equivalent", "mismatch") for e, v in expect_on), path.name
        pairs.append(Pair(path.stem, expect, meta["why"], main, original, candidate, engines, expect_on))
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


@pytest.fixture(scope="module", params=engine_params())
def main_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(engine, path)``: the main database, written by each engine's backend."""
    path = write_database(
        request.param,
        tmp_path_factory.mktemp(f"golden-{request.param}"),
        "shop",
        [
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT, "
            "referrer_id INTEGER REFERENCES customers(id))",
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), "
            "amount REAL NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL)",
            "CREATE TABLE memberships (customer_id INTEGER NOT NULL REFERENCES customers(id), "
            "tier TEXT NOT NULL, points INTEGER NOT NULL)",
        ],
        {
            "customers": [(i + 1, NAMES[i], CITIES[i % 4], (i + 1) % 3 + 1) for i in range(12)],
            "orders": _orders(),
            "memberships": [(i + 1, TIERS[i % 3], 100 + 37 * i) for i in range(12)],
        },
    )
    return request.param, str(path)


def _evaluate(main_db: tuple[str, str], pair: Pair, **options: object) -> quill_env.EvalResult:
    engine, path = main_db
    if engine not in pair.engines:
        pytest.skip(f"a trap of {', '.join(pair.engines)} semantics only: {pair.why}")
    return quill_env.evaluate(path, port(engine, pair.original), port(engine, pair.candidate), **options)


def test_fixture_inventory() -> None:
    names = [p.name for p in PAIRS]
    assert len(names) == len(set(names))
    assert len(PAIRS) >= 26
    assert sum(p.expect == "equivalent" for p in PAIRS) >= 10


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_main_database_alone(main_db: tuple[str, str], pair: Pair) -> None:
    """Without variants, the pair agrees (so a mismatch is the variants' catch)."""
    result = _evaluate(main_db, pair, num_variants=0, num_twins=0)
    if pair.main == "equivalent":
        assert result.correct is True, (pair.why, result.verdict, result.error)
    else:
        assert result.verdict is Verdict.WRONG_RESULT, (pair.why, result.verdict, result.error)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_with_variants(main_db: tuple[str, str], pair: Pair) -> None:
    result = _evaluate(main_db, pair)
    detail = (pair.why, result.verdict, result.error, result.variants)
    if pair.expected(main_db[0]) == "equivalent":
        assert result.correct is True, detail
        assert all(v.status == "match" for v in result.variants), detail
    else:
        assert result.verdict is Verdict.WRONG_RESULT, detail
