"""Steering of the data loop toward what the store lacks (DESIGN §1).

The next ``(schema, pattern)`` is drawn with a weight that grows with the rarity of the schema and
of the pattern among kept records, with the pattern's expected help to the missing speedup
buckets, and with the pair's success rate so far; few-shot examples favour rare patterns and
schemas.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quill_env.authoring.taskgen import bucket

BELOW_MIX = "<2x"
"""The bucket of kept records between the acceptance tier (1.5x) and 2x."""


@dataclass
class Steering:
    """What the store lacks: counts by schema, family, pattern and speedup bucket.

    It is rebuilt from the records and the draw log, so a restarted run steers exactly as an
    uninterrupted one.
    """

    target_mix: Mapping[str, float]
    kept: int = 0
    by_schema: Counter[str] = field(default_factory=Counter)
    by_family: Counter[str] = field(default_factory=Counter)
    by_pattern: Counter[str] = field(default_factory=Counter)
    by_bucket: Counter[str] = field(default_factory=Counter)
    family_buckets: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    successes: Counter[tuple[str, str]] = field(default_factory=Counter)
    slow_seen: set[str] = field(default_factory=set)
    shapes: Counter[str] = field(default_factory=Counter)

    def observe_record(self, rec: Mapping[str, Any]) -> None:
        """Count one kept record."""
        self.kept += 1
        self.by_schema[rec["suite"]] += 1
        self.by_family[rec["family"]] += 1
        self.by_pattern.update(rec.get("patterns", ()))
        b = bucket(float(rec["speedup"])) or BELOW_MIX
        self.by_bucket[b] += 1
        self.family_buckets[rec["family"]][b] += 1

    def observe_draw(self, entry: Mapping[str, Any]) -> None:
        """Count one finished draw (kept or not)."""
        if entry.get("family") is None:
            return
        key = (entry["suite"], entry["family"])
        self.attempts[key] += 1
        if entry.get("kept", 0) > 0:
            self.successes[key] += 1
            self.slow_seen.add(entry["query_fingerprint"])
            self.shapes[entry["shape_fingerprint"]] += 1

    def mix(self) -> dict[str, float]:
        """The current speedup mix (shares, with the below-2x share apart)."""
        total = sum(self.by_bucket.values()) or 1
        return {b: round(self.by_bucket.get(b, 0) / total, 4) for b in (*self.target_mix, BELOW_MIX)}

    def _rarity(self, counts: Counter[str], name: str, names: Sequence[str]) -> float:
        mean = sum(counts[n] for n in names) / max(len(names), 1)
        return (mean + 1.0) / (counts[name] + 1.0)

    def _mix_need(self, family: str) -> float:
        total = sum(self.by_bucket.values())
        seen = self.family_buckets.get(family, Counter())
        n_f = sum(seen.values())
        need = 0.0
        for b, share in self.target_mix.items():
            deficit = max(share - (self.by_bucket[b] / total if total else 0.0), 0.0)
            p_b = (seen[b] + share) / (n_f + 1.0)  # the target mix is the prior of an unseen family
            need += p_b * (deficit + 0.05)
        need += 0.01 * seen[BELOW_MIX] / (n_f + 1.0)
        return need**2  # squared: the mix steers as firmly as the coverage terms

    def weights(self, suites: Sequence[str], families: Sequence[str]) -> np.ndarray:
        """Unnormalized draw weights of every ``(suite, family)`` pair (suite-major)."""
        w = np.empty((len(suites), len(families)))
        for i, s in enumerate(suites):
            rs = self._rarity(self.by_schema, s, suites)
            for j, f in enumerate(families):
                rf = self._rarity(self.by_family, f, families)
                key = (s, f)
                feasible = (self.successes[key] + 1.0) / (self.attempts[key] + 2.0)
                w[i, j] = rs * rf * self._mix_need(f) * feasible
        return w.ravel()

    def choose(
        self, rng: np.random.Generator, suites: Sequence[str], families: Sequence[str]
    ) -> tuple[str, str]:
        """Sample the next ``(suite, family)``, favouring what the store lacks."""
        w = self.weights(suites, families)
        idx = int(rng.choice(len(w), p=w / w.sum()))
        return suites[idx // len(families)], families[idx % len(families)]

    def examples(
        self, records: Sequence[Mapping[str, Any]], n: int, rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        """Few-shot examples for a round: records of rare patterns and schemas are favoured.

        Depends only on ``records`` and ``rng``, so a resumed run draws the same examples.
        """
        if not records or n <= 0:
            return []
        fams = Counter(r["family"] for r in records)
        schemas = Counter(r["suite"] for r in records)
        w = np.array([1.0 / (fams[r["family"]] * schemas[r["suite"]]) for r in records])
        picks = rng.choice(len(records), size=min(n, len(records)), replace=False, p=w / w.sum())
        return [
            {
                "suite": records[i]["suite"],
                "pattern": records[i]["family"],
                "patterns": list(records[i].get("patterns", ())),
                "query": records[i]["query"],
                "action": records[i]["action"],
                "speedup": records[i]["speedup"],
            }
            for i in sorted(int(p) for p in picks)
        ]


__all__ = ["BELOW_MIX", "Steering"]
