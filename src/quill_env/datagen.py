"""Deterministic, vectorized data generation from a declarative suite spec (DESIGN §7).

A suite's ``generator`` maps each table to a row count per scale tier and a generator per
column. Columns are generated as numpy arrays from a seed, so the same spec and seed always give
the same database bytes. Column kinds:

``serial``      1..n (primary keys)
``fk``          a key of ``ref`` (``"table.column"``), Zipf-skewed fan-out with ``skew`` (a > 1)
``int``         integers in ``[low, high]``; ``skew`` makes them Zipf-like
``float``       ``[low, high]`` rounded to ``decimals``; ``dist`` uniform or lognormal (money);
                lognormal takes an optional ``median`` and ``sigma`` (default: median
                ``(low + high) / 4 + 1``, sigma 0.8), clipped to ``[low, high]``
``choice``      one of ``values`` with optional ``weights`` (categorical)
``date``        ISO dates between ``start`` and ``end``; ``timestamp`` adds a time of day.
                With ``after`` (an earlier column of the same table) instead of ``start`` and
                ``end``: that column's value plus ``min_days``..``max_days`` whole days (a
                ``timestamp`` adds up to one more day of seconds, so it never precedes that
                column); NULL where that column is NULL (``shipped_at`` after ``placed_at``)
``text``        ``template`` with ``{i}`` (row number) and ``{word}``, or ``words`` sentences
``bool``        0/1 with probability ``p``

Every kind accepts ``null_rate`` (optional columns) and ``unique`` is implied by ``serial``.

A generator with a ``kind`` is a packaged generator instead: ``{"kind": "tpch", ...}`` is
TPC-H's own ``dbgen`` (:mod:`quill_env.tpch.dbgen`), whose version is part of the data hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from quill_env.errors import SuiteError
from quill_env.tpch import dbgen

WORDS = [
    "alpha",
    "bold",
    "calm",
    "dark",
    "eager",
    "fair",
    "grand",
    "happy",
    "ideal",
    "jolly",
    "keen",
    "lucky",
    "merry",
    "noble",
    "open",
    "prime",
    "quick",
    "rapid",
    "solid",
    "tidy",
    "urban",
    "vivid",
    "warm",
    "young",
    "zesty",
    "amber",
    "brisk",
    "coral",
    "dusty",
    "ember",
    "frost",
    "glade",
    "harbor",
    "ivory",
    "jade",
    "kettle",
    "lemon",
    "maple",
    "north",
    "ocean",
    "pearl",
    "quartz",
    "river",
    "stone",
    "tulip",
]


def _zipf_index(rng: np.random.Generator, n: int, size: int, skew: float) -> np.ndarray:
    """Indices in ``[0, n)`` with Zipf-like frequencies (rank 1 most frequent), shuffled ranks."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    weights = ranks ** (-skew)
    weights /= weights.sum()
    perm = rng.permutation(n)
    return perm[rng.choice(n, size=size, p=weights)]


def _parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SuiteError(f"bad date {text!r} in generator spec (expected YYYY-MM-DD)") from None


def _after(spec: Mapping[str, Any], n: int, rng: np.random.Generator, row: Mapping[str, list]) -> list:
    """A ``date``/``timestamp`` column some whole days after an earlier column of the same table."""
    source = str(spec["after"])
    if source not in row:
        raise SuiteError(f"'after' refers to column {source!r}, which is generated later or missing")
    try:
        base = np.array(["NaT" if v is None else v for v in row[source]], dtype="datetime64[s]")
    except ValueError:
        raise SuiteError(f"'after' column {source!r} does not hold dates") from None
    days = rng.integers(int(spec.get("min_days", 0)), int(spec["max_days"]) + 1, size=n)
    if spec["kind"] == "date":
        text = (base.astype("datetime64[D]") + days.astype("timedelta64[D]")).astype(str)
    else:
        secs = rng.integers(0, 86400, size=n)
        text = (base + (days * 86400 + secs).astype("timedelta64[s]")).astype(str)
    return [None if v == "NaT" else v.replace("T", " ") for v in text.tolist()]


def generate_column(
    spec: Mapping[str, Any],
    n: int,
    rng: np.random.Generator,
    tables: Mapping[str, dict[str, list]],
    row: Mapping[str, list] | None = None,
) -> list:
    """Generate ``n`` values of one column as a Python list (``None`` for NULL).

    ``row`` holds the columns of the same table generated so far (for ``after``).
    """
    kind = spec.get("kind")
    if kind == "serial":
        values: np.ndarray | list = np.arange(1, n + 1, dtype=np.int64)
    elif kind == "fk":
        ref_table, _, ref_col = str(spec["ref"]).partition(".")
        if ref_table not in tables:
            raise SuiteError(f"fk column refers to {ref_table!r}, which is generated later or missing")
        keys = np.asarray(tables[ref_table][ref_col or "id"])
        idx = _zipf_index(rng, len(keys), n, float(spec.get("skew", 1.1))) if len(keys) else np.zeros(0, int)
        values = keys[idx]
    elif kind == "int":
        low, high = int(spec["low"]), int(spec["high"])
        if spec.get("skew"):
            values = low + _zipf_index(rng, high - low + 1, n, float(spec["skew"]))
        else:
            values = rng.integers(low, high + 1, size=n)
    elif kind == "float":
        low, high = float(spec["low"]), float(spec["high"])
        if spec.get("dist") == "lognormal":
            median = float(spec["median"]) if "median" in spec else (low + high) / 4 + 1
            raw = rng.lognormal(mean=np.log(median), sigma=float(spec.get("sigma", 0.8)), size=n)
            values = np.clip(raw, low, high)
        else:
            values = rng.uniform(low, high, size=n)
        values = np.round(values, int(spec.get("decimals", 2)))
    elif kind == "choice":
        options = list(spec["values"])
        weights = np.asarray(spec.get("weights") or [1] * len(options), dtype=np.float64)
        values = [options[i] for i in rng.choice(len(options), size=n, p=weights / weights.sum())]
    elif kind in ("date", "timestamp") and "after" in spec:
        values = _after(spec, n, rng, row or {})
    elif kind in ("date", "timestamp"):
        start, end = _parse_date(spec["start"]), _parse_date(spec["end"])
        days = rng.integers(0, (end - start).days + 1, size=n)
        base = np.datetime64(start.isoformat())
        dates = (base + days.astype("timedelta64[D]")).astype(str)
        if kind == "date":
            values = dates.tolist()
        else:
            secs = rng.integers(0, 86400, size=n)
            values = [
                f"{d} {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for d, s in zip(dates, secs.tolist())
            ]
    elif kind == "text":
        if "template" in spec:
            words = rng.integers(0, len(WORDS), size=n)
            template = str(spec["template"])
            values = [template.format(i=i + 1, word=WORDS[w]) for i, w in enumerate(words.tolist())]
        else:
            lo, hi = int(spec.get("min_words", 3)), int(spec.get("max_words", 12))
            lengths = rng.integers(lo, hi + 1, size=n)
            picks = rng.integers(0, len(WORDS), size=int(lengths.sum()))
            cuts = np.cumsum(lengths)[:-1]
            values = [" ".join(WORDS[j] for j in chunk) for chunk in np.split(picks, cuts)]
    elif kind == "bool":
        values = (rng.random(n) < float(spec.get("p", 0.5))).astype(np.int64)
    else:
        raise SuiteError(f"unknown column kind {kind!r}")
    out = values.tolist() if isinstance(values, np.ndarray) else list(values)
    rate = float(spec.get("null_rate", 0.0))
    if rate > 0:
        mask = rng.random(n) < rate
        out = [None if m else v for v, m in zip(out, mask.tolist())]
    return out


def generate_tables(generator: Mapping[str, Any], scale: str, seed: int) -> dict[str, dict[str, list]]:
    """Generate every table of a spec at ``scale`` as column lists, in spec order.

    Raises:
        SuiteError: the spec is malformed or has no such scale.
        MissingExtraError: a packaged generator the spec names is not installed.
    """
    kind = generator.get("kind")
    if kind == "tpch":
        return dbgen.generate_tables(generator, scale)
    if kind is not None:
        raise SuiteError(f"unknown generator kind {kind!r}; known: 'tpch' (or none: Quill's column kinds)")
    out: dict[str, dict[str, list]] = {}
    for t_index, (name, table) in enumerate(generator["tables"].items()):
        rows = table["rows"]
        if scale not in rows:
            raise SuiteError(f"table {name!r} has no row count for scale {scale!r}; known: {sorted(rows)}")
        n = int(rows[scale])
        rng = np.random.default_rng([seed, t_index])
        out[name] = {}
        for col, spec in table["columns"].items():
            out[name][col] = generate_column(spec, n, rng, out, out[name])
    return out


def generator_version(generator: Mapping[str, Any]) -> str | None:
    """The version of the packaged generator a spec names; ``None`` for Quill's own column kinds.

    >>> generator_version({"tables": {}}) is None
    True
    """
    if generator.get("kind") == "tpch":
        return dbgen.generator_version() or f"{dbgen.PACKAGE} not installed"
    return None


def spec_hash(*parts: Any) -> str:
    """A stable hash of JSON-serializable spec parts (regenerate data when it changes)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
