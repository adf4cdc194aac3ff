import json
import os

import pytest

from quill_agents.store import DatasetStore, JsonlLog, StoreError, read_jsonl, record_key, repair


def rec(q: str, a: str, **extra) -> dict:
    return {"query_fingerprint": q, "action_fingerprint": a, "reward": 0.5, **extra}


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_append_is_durable_before_close(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    store = DatasetStore(path)
    assert store.append(rec("q1", "a1"))
    # flushed and fsynced per record: visible to a reader while the store is still open
    assert [json.loads(x)["action_fingerprint"] for x in lines(path)] == ["a1"]
    assert store.append(rec("q1", "a2"))
    assert len(lines(path)) == 2
    store.close()


def test_resume_rebuilds_records_and_keys(tmp_path):
    path = tmp_path / "records.jsonl"
    with DatasetStore(path) as store:
        for i in range(3):
            store.append(rec(f"q{i}", "a", draw=i))
    with DatasetStore(path) as store:
        assert len(store) == 3
        assert [r["draw"] for r in store] == [0, 1, 2]
        assert "q1:a" in store and rec("q2", "a") in store
        assert store.get("q0:a")["draw"] == 0
        assert store.append(rec("q3", "a"))
    assert len(lines(path)) == 4


def test_duplicates_are_refused_across_restarts(tmp_path):
    path = tmp_path / "records.jsonl"
    with DatasetStore(path) as store:
        assert store.append(rec("q", "a", n=1))
        assert not store.append(rec("q", "a", n=2))
    size = path.stat().st_size
    with DatasetStore(path) as store:
        assert not store.append(rec("q", "a", n=3))
        assert len(store) == 1 and store.get("q:a")["n"] == 1
    assert path.stat().st_size == size


def test_torn_last_line_is_dropped_and_file_truncated(tmp_path):
    path = tmp_path / "records.jsonl"
    with DatasetStore(path) as store:
        store.append(rec("q1", "a"))
        store.append(rec("q2", "a"))
    good = path.read_bytes()
    with open(path, "ab") as fh:  # a write cut off by SIGKILL: no newline, invalid JSON
        fh.write(b'{"query_fingerprint": "q3", "action_fing')
    # reading without repairing tolerates the torn tail and leaves the file alone
    assert len(read_jsonl(path)) == 2
    assert path.read_bytes() != good
    with DatasetStore(path) as store:
        assert len(store) == 2
        assert path.read_bytes() == good
        assert "q3:a" not in store
        assert store.append(rec("q3", "a"))
    assert [json.loads(x)["query_fingerprint"] for x in lines(path)] == ["q1", "q2", "q3"]


def test_repair_of_a_file_with_no_complete_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1')
    assert repair(path) == 7
    assert path.read_bytes() == b""
    assert repair(tmp_path / "missing.jsonl") == 0


def test_corruption_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"query_fingerprint": "q", "action_fingerprint": "a"}\nnot json\n{"x": 1}\n')
    with pytest.raises(StoreError, match=":2:"):
        DatasetStore(path)
    with pytest.raises(StoreError):
        record_key({"query_fingerprint": "q"})


def test_jsonl_log_appends_any_entry(tmp_path):
    path = tmp_path / "draws.jsonl"
    with JsonlLog(path) as log:
        log.write({"draw": 0})
        log.write({"draw": 1, "kept": 2})
    with open(path, "ab") as fh:
        fh.write(b'{"draw": 2, "ke')
    with JsonlLog(path) as log:
        assert [e["draw"] for e in log] == [0, 1]
    assert os.path.getsize(path) == len(b'{"draw": 0}\n{"draw": 1, "kept": 2}\n')
