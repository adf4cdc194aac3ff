"""The verified-example store: append-only JSONL that survives being killed at any moment.

Every record is written as one line, then flushed and fsynced, so a killed process loses at most
the record it was writing. Opening a store repairs a torn last line (it is dropped and the file
truncated to the last complete record) and rebuilds the set of keys, so the same (slow query
fingerprint, rewrite fingerprint) pair is never stored twice, across restarts too.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "records.jsonl")
>>> with DatasetStore(path) as store:
...     store.append({"query_fingerprint": "q1", "action_fingerprint": "a1"})
...     store.append({"query_fingerprint": "q1", "action_fingerprint": "a1"})
True
False
>>> len(DatasetStore(path))
1
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quill_env.errors import StoreError
from quill_env.evaluator import EvalResult
from quill_env.measure import CostMode
from quill_env.reward import Verdict

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
"""The store's file name inside a run directory."""
DRAWS_FILE = "draws.jsonl"
"""The run's log of draws (one line per slow query tried, kept or not)."""


def record_key(record: Mapping[str, Any]) -> str:
    """The de-duplication key of a record: its slow-query and rewrite fingerprints.

    >>> record_key({"query_fingerprint": "ab", "action_fingerprint": "cd"})
    'ab:cd'
    """
    try:
        return f"{record['query_fingerprint']}:{record['action_fingerprint']}"
    except KeyError as err:
        raise StoreError(f"a record needs query_fingerprint and action_fingerprint; missing {err}") from None


def repair(path: str | os.PathLike[str]) -> int:
    """Truncate a JSONL file to its last complete line; the number of bytes dropped."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    with open(path, "rb+") as fh:
        if size == 0:
            return 0
        # Walk back from the end to the last newline; a torn write never ends with one.
        pos, chunk = size, 65536
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
            log.warning("%s: dropped a torn last line (%d bytes)", path, size - keep)
        return size - keep


def read_jsonl(path: str | os.PathLike[str], *, tolerate_torn_tail: bool = True) -> list[dict[str, Any]]:
    """Read a JSONL file without modifying it (a torn last line is skipped when tolerated).

    Raises:
        StoreError: a line other than a torn last one is not valid JSON.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # empty when the file ends with a newline
    if tail.strip() and not tolerate_torn_tail:
        raise StoreError(f"{path}: the last line is incomplete")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise StoreError(f"{path}:{n}: not a JSON record ({err}); the file is corrupt") from None
    return out


class JsonlLog:
    """An append-only JSONL file: every line flushed and fsynced; a torn tail repaired on open.

    Args:
        path: the file (created with its parent directories when missing).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair(self.path)
        self.entries: list[dict[str, Any]] = read_jsonl(self.path, tolerate_torn_tail=False)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one entry durably (one line, flushed and fsynced)."""
        if self._fh.closed:
            raise StoreError(f"{self.path} is closed")
        line = json.dumps(entry, ensure_ascii=False, default=_jsonable) + "\n"
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.entries.append(dict(entry))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries)

    def close(self) -> None:
        """Close the file (entries stay readable)."""
        self._fh.close()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DatasetStore(JsonlLog):
    """The verified examples of a run, de-duplicated by :func:`record_key`.

    Args:
        path: the JSONL file (``records.jsonl`` of a run directory).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self.keys: dict[str, dict[str, Any]] = {}
        for rec in self.entries:
            self.keys.setdefault(record_key(rec), rec)

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every stored record, in order."""
        return self.entries

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Mapping):
            key = record_key(key)
        return key in self.keys

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record with ``key``, if any."""
        return self.keys.get(key)

    def append(self, record: Mapping[str, Any]) -> bool:
        """Store a record durably; ``False`` (and nothing written) when its key is already stored."""
        key = record_key(record)
        if key in self.keys:
            return False
        self.write(record)
        self.keys[key] = self.entries[-1]
        return True


@dataclass
class DataRecord:
    """One verified example of the data loop: a slow query, its rewrite, and how it was scored.

    The scoring fields (verdict through engine) are the :class:`~quill_env.evaluator.EvalResult`'s
    own, taken by name in :meth:`from_result`; the rest say where the example came from. The
    store keeps the JSON form of :meth:`to_dict`.
    """

    id: str
    suite: str
    schema: str
    suite_version: str
    suite_hash: str
    scale: str
    query: str
    output_columns: list[str] | None
    action: str
    family: str
    patterns: list[str]
    verdict: Verdict
    reward: float
    reward_terms: dict[str, float]
    speedup: float | None
    speedup_raw: float | None
    bucket: str
    baseline_cost: float | None
    candidate_cost: float | None
    cost_unit: str
    cost_mode: CostMode
    n_indexes: int
    engine: str
    quill_version: str
    query_fingerprint: str
    action_fingerprint: str
    shape_fingerprint: str
    proposer: str
    model: str | None
    slow_source: str
    iteration: int
    draw: int
    seed: int
    timestamp: str
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """The draw's other scored actions (verdict, reward, speedup, error), for DPO pairs."""
    siblings: list[dict[str, Any]] = field(default_factory=list)
    """The draw's other kept actions and their rewards."""

    @classmethod
    def from_result(cls, result: EvalResult, **origin: Any) -> DataRecord:
        """A record whose scoring fields are ``result``'s and the rest ``origin``.

        Raises:
            TypeError: ``origin`` lacks a field or names one the record does not have.
        """
        return cls(**result.fields_for(cls), **origin)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (verdict and cost mode as their names)."""
        out = asdict(self)
        out["verdict"] = self.verdict.value
        out["cost_mode"] = self.cost_mode.value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DataRecord:
        """Inverse of :meth:`to_dict` (unknown keys are ignored).

        Raises:
            ValueError: an unknown verdict or cost mode.
            TypeError: a field is missing.
        """
        out = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        out["verdict"] = Verdict(out["verdict"])
        out["cost_mode"] = CostMode(out["cost_mode"])
        return cls(**out)


def _jsonable(value: object) -> object:
    if hasattr(value, "value"):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


__all__ = [
    "DRAWS_FILE",
    "DataRecord",
    "RECORDS_FILE",
    "DatasetStore",
    "JsonlLog",
    "StoreError",
    "read_jsonl",
    "record_key",
    "repair",
]
