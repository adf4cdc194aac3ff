"""Disk snapshots: how a database file too large to copy into memory is scored (issue 10, item 5).

A file above ``QUILL_SNAPSHOT_MB`` is copied once to a private file under the cache directory;
candidate indexes are built there inside rolled-back savepoints, the user's file is never
written, and the copy is deleted when its owner closes it or, after a crash, by the next process
that makes a snapshot. The threshold is set to 0 here so that a small file takes that path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

import quill_env
from quill_env.backends.sqlite import SQLiteBackend
from quill_env.tasks import cache_dir

SLOW = "SELECT id, total FROM orders WHERE customer = 417"
INDEXED = "CREATE INDEX orders_customer ON orders (customer);\n" + SLOW


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshots() -> set[Path]:
    directory = cache_dir() / "snapshots"
    return set(directory.glob("*.sqlite")) if directory.is_dir() else set()


@pytest.fixture
def orders_db(tmp_path: Path) -> Path:
    path = tmp_path / "orders.db"
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, total REAL)")
    with conn:
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            ((i, (i * 7919) % 1000, (i % 97) * 1.5) for i in range(1, 20001)),
        )
    conn.close()
    return path


def test_a_large_file_is_opened_as_a_private_snapshot_that_is_deleted_on_close(orders_db: Path) -> None:
    before = _snapshots()
    backend = SQLiteBackend.open(orders_db, snapshot_bytes=0)
    made = _snapshots() - before
    assert len(made) == 1
    (snapshot,) = made
    assert snapshot.name.startswith("orders-") and snapshot != orders_db
    result = backend.execute(SLOW)
    assert result.ok and len(result.rows) == 20
    copy = backend.clone()
    assert len(_snapshots() - before) == 2  # the clone is a file of its own
    copy.close()
    backend.close()
    assert _snapshots() - before == set()


def test_index_candidates_on_a_snapshot_give_verdicts_and_leave_the_file_unchanged(
    orders_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUILL_SNAPSHOT_MB", "0")
    digest = _digest(orders_db)
    before = _snapshots()
    result = quill_env.evaluate(str(orders_db), SLOW, INDEXED)
    assert _snapshots() - before, "the database was scored on a disk snapshot"
    assert result.correct and result.verdict in {"improved", "no_gain"}, result
    assert result.speedup > 1.0
    # The index was built in a savepoint that was rolled back: the next candidate starts clean.
    again = quill_env.evaluate(str(orders_db), SLOW, SLOW)
    assert again.verdict == "unchanged"
    wrong = quill_env.evaluate(str(orders_db), SLOW, INDEXED.replace("417", "418"))
    assert wrong.verdict == "wrong_result"
    assert _digest(orders_db) == digest


def test_snapshots_left_by_a_killed_process_are_swept(orders_db: Path) -> None:
    directory = cache_dir() / "snapshots"
    directory.mkdir(parents=True, exist_ok=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = directory / f"orders-{dead_pid}-abc123.sqlite"
    stale.write_bytes(b"left behind")
    alive = directory / f"orders-{os.getppid()}-def456.sqlite"
    alive.write_bytes(b"still in use")
    unrelated = directory / "notes-about-snapshots.sqlite"
    unrelated.write_bytes(b"not ours to judge")
    backend = SQLiteBackend.open(orders_db, snapshot_bytes=0)
    try:
        assert not stale.exists()
        assert alive.exists() and unrelated.exists()
    finally:
        backend.close()
        alive.unlink()
        unrelated.unlink()
