"""Submissions: JSONL files of ``{task_id, action}`` with optional claims, and their checks.

A line is one task::

    {"task_id": "shop/coupon_lookup", "action": "CREATE INDEX ...; SELECT ...",
     "verdict": "improved", "speedup": 22.9, "reward": 0.78, "model": "qwen2.5-7b-sft"}

``verdict``, ``speedup`` and ``reward`` are *claims*; ``scale`` and ``cost`` say how they were
measured; every other key is free metadata. Reading never raises on a bad line: each problem
becomes an :class:`Issue` that names the line and the task.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quill_agents.leaderboard.pool import StepRecord, Unscored
from quill_env.measure import CostMode
from quill_env.reward import Verdict, tier_reward

CLAIMS = ("verdict", "speedup", "reward")
"""Keys whose values re-validation must reproduce."""
SETTINGS = ("scale", "cost")
"""Keys that say how the claims were measured (one value per file)."""

WORK_REL_TOL = 1e-6
"""Relative tolerance of a ``work``-mode speedup or reward (deterministic: only float noise)."""


@dataclass(frozen=True)
class Issue:
    """One problem with a submission, located by line and task.

    Args:
        kind: ``malformed_json``, ``not_an_object``, ``missing_task_id``, ``unknown_task``,
            ``missing_action``, ``duplicate_task``, ``bad_claim``, ``inconsistent_setting``,
            ``verdict_mismatch``, ``tier_mismatch``, ``speedup_mismatch``, ``reward_mismatch`` or
            ``task_error``.
        message: what is wrong, in words.
        line: the 1-based line number (``None`` for the whole file).
        task_id: the task, when the line names one.
    """

    kind: str
    message: str
    line: int | None = None
    task_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        if self.task_id:
            where += f" ({self.task_id})"
        return f"{where}: {self.kind}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"line": self.line, "task_id": self.task_id, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Entry:
    """One well-formed line: the task, the action, the claims and free metadata."""

    line: int
    task_id: str
    action: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Submission:
    """A parsed submission: its usable entries, the problems found, and file-wide settings."""

    path: str
    entries: list[Entry]
    issues: list[Issue]
    settings: dict[str, Any]
    lines: int

    @property
    def label(self) -> str:
        """The name to show: the ``model`` or ``agent`` metadata, else the file name."""
        for entry in self.entries:
            for key in ("model", "agent", "name"):
                if isinstance(entry.meta.get(key), str) and entry.meta[key]:
                    return entry.meta[key]
        return Path(self.path).name.removesuffix(".jsonl").removesuffix(".submission")

    def actions(self) -> dict[str, str]:
        """The action of every entry, by task id."""
        return {e.task_id: e.action for e in self.entries}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_claims(raw: Mapping[str, Any], n: int, task_id: str) -> tuple[dict[str, Any], list[Issue]]:
    claims, issues = {}, []
    verdicts = [v.value for v in Verdict]
    if "verdict" in raw and raw["verdict"] is not None:
        if raw["verdict"] in verdicts:
            claims["verdict"] = raw["verdict"]
        else:
            hint = difflib.get_close_matches(str(raw["verdict"]), verdicts, n=1)
            issues.append(
                Issue(
                    "bad_claim",
                    f"unknown verdict {raw['verdict']!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(verdicts)}"),
                    n,
                    task_id,
                )
            )
    for key in ("speedup", "reward"):
        if key in raw and raw[key] is not None:
            if _number(raw[key]) and (key != "speedup" or raw[key] > 0):
                claims[key] = float(raw[key])
            else:
                what = "a positive number" if key == "speedup" else "a number"
                issues.append(
                    Issue("bad_claim", f"claimed {key} must be {what}, got {raw[key]!r}", n, task_id)
                )
    return claims, issues


def parse_submission(
    lines: Iterable[str], known_tasks: Iterable[str], path: str = "<submission>"
) -> Submission:
    """Parse submission lines; every problem becomes an :class:`Issue`, nothing raises.

    Args:
        lines: the file's lines.
        known_tasks: every task id that may be named.
        path: the file name, for messages.

    >>> sub = parse_submission(['{"task_id": "shop/a", "action": "SELECT 1"}', '{oops',
    ...                         '{"task_id": "shop/b"}', '{"task_id": "shop/a", "action": "SELECT 2"}'],
    ...                        ["shop/a", "shop/b"])
    >>> for issue in sub.issues:
    ...     print(issue)
    line 2: malformed_json: not valid JSON: Expecting property name enclosed in double quotes (column 2)
    line 3 (shop/b): missing_action: no "action" (a string of SQL)
    line 4 (shop/a): duplicate_task: shop/a is already given on line 1
    """
    known = set(known_tasks)
    entries: list[Entry] = []
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    settings: dict[str, Any] = {}
    setting_line: dict[str, int] = {}
    count = 0
    for n, text in enumerate(lines, 1):
        count = n
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            issues.append(Issue("malformed_json", f"not valid JSON: {err.msg} (column {err.colno})", n))
            continue
        except RecursionError:
            issues.append(Issue("malformed_json", "not valid JSON (nested too deeply)", n))
            continue
        if not isinstance(raw, dict):
            issues.append(Issue("not_an_object", f"expected a JSON object, got {type(raw).__name__}", n))
            continue
        task_id = raw.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            issues.append(Issue("missing_task_id", 'no "task_id" (a string such as "shop/coupon_lookup")', n))
            continue
        if task_id not in known:
            hint = difflib.get_close_matches(task_id, known, n=1)
            msg = f"unknown task {task_id!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            issues.append(Issue("unknown_task", msg, n, task_id))
            continue
        action = raw.get("action")
        if not isinstance(action, str) or not action.strip():
            issues.append(Issue("missing_action", 'no "action" (a string of SQL)', n, task_id))
            continue
        if task_id in seen:
            issues.append(
                Issue("duplicate_task", f"{task_id} is already given on line {seen[task_id]}", n, task_id)
            )
            continue
        seen[task_id] = n
        claims, bad = _check_claims(raw, n, task_id)
        issues += bad
        for key in SETTINGS:
            if key in raw:
                if key not in settings:
                    settings[key], setting_line[key] = raw[key], n
                elif raw[key] != settings[key]:
                    issues.append(
                        Issue(
                            "inconsistent_setting",
                            f"{key} {raw[key]!r} differs from {settings[key]!r} on line {setting_line[key]}",
                            n,
                            task_id,
                        )
                    )
        meta = {k: v for k, v in raw.items() if k not in ("task_id", "action", *CLAIMS, *SETTINGS)}
        entries.append(Entry(n, task_id, action, claims, meta))
    return Submission(path, entries, issues, settings, count)


def read_submission(path: str | os.PathLike[str], known_tasks: Iterable[str]) -> Submission:
    """Read and parse a submission file (see :func:`parse_submission`).

    Raises:
        OSError: the file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return parse_submission(text.splitlines(), known_tasks, str(path))


def write_submission(
    path: str | os.PathLike[str], records: Sequence[StepRecord], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write a submission of scored records, with their outcomes as claims (so it re-validates).

    Args:
        path: the JSONL file to write.
        records: one agent's records.
        meta: extra keys on every line (``agent``, ``model``, ``scale``, ``cost`` ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            if not r.action:
                continue
            line = {"task_id": r.task_id, "action": r.action, "verdict": r.verdict.value, "reward": r.reward}
            if r.speedup is not None:
                line["speedup"] = r.speedup
            fh.write(json.dumps({**line, **(meta or {})}) + "\n")
    return path


def _close(a: float, b: float, rel: float = WORK_REL_TOL) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def _fmt(speedup: float | None) -> str:
    return "no speedup" if speedup is None else f"{speedup:.4g}x"


def check_claims(entry: Entry, record: StepRecord) -> list[Issue]:
    """Compare an entry's claims with the re-run: verdict, speedup tier and reward.

    In ``work`` mode the re-run is deterministic, so a speedup or reward must also agree to
    :data:`WORK_REL_TOL`; in ``wall`` mode a claimed tier must lie within the tiers of the
    re-run's confidence interval.
    """
    issues: list[Issue] = []
    line, task = entry.line, entry.task_id
    if isinstance(record.verdict, Unscored):
        return [Issue(record.verdict.value, record.error or record.verdict.value, line, task)]
    claims = entry.claims
    verdict_ok = "verdict" not in claims or claims["verdict"] == record.verdict
    if not verdict_ok:
        detail = f" ({record.error})" if record.error else ""
        issues.append(
            Issue(
                "verdict_mismatch",
                f"claimed verdict {claims['verdict']}, the re-run gives {record.verdict}{detail}",
                line,
                task,
            )
        )
    wall = record.wall if record.cost_mode is CostMode.WALL else None
    if "speedup" in claims and verdict_ok:
        claimed = claims["speedup"]
        tier = tier_reward(claimed)
        actual = record.speedup if record.correct else None
        if actual is None:
            if tier > 0:
                issues.append(
                    Issue(
                        "tier_mismatch",
                        f"claimed speedup {_fmt(claimed)} (tier {tier:.3f}), "
                        f"the re-run gives {record.verdict} with no speedup",
                        line,
                        task,
                    )
                )
        elif wall:
            lo, hi = tier_reward(wall["lower"]), tier_reward(wall["upper"])
            if not lo - 1e-9 <= tier <= hi + 1e-9:
                issues.append(
                    Issue(
                        "tier_mismatch",
                        f"claimed speedup {_fmt(claimed)} (tier {tier:.3f}) lies outside "
                        f"the re-run's interval {_fmt(wall['lower'])}-{_fmt(wall['upper'])} "
                        f"(tiers {lo:.3f}-{hi:.3f})",
                        line,
                        task,
                    )
                )
        elif not _close(tier, tier_reward(actual)):
            issues.append(
                Issue(
                    "tier_mismatch",
                    f"claimed speedup {_fmt(claimed)} (tier {tier:.3f}), "
                    f"the re-run gives {_fmt(actual)} (tier {tier_reward(actual):.3f})",
                    line,
                    task,
                )
            )
        elif not _close(claimed, actual):
            issues.append(
                Issue(
                    "speedup_mismatch",
                    f"claimed speedup {claimed!r}, the re-run gives {actual!r} (work mode is deterministic)",
                    line,
                    task,
                )
            )
    if "reward" in claims and verdict_ok:
        claimed = claims["reward"]
        if wall and record.verdict is Verdict.IMPROVED:
            rest = record.reward - record.reward_terms.get("tier", 0.0)
            lo, hi = tier_reward(wall["lower"]) + rest, tier_reward(wall["upper"]) + rest
            if not lo - 1e-6 <= claimed <= hi + 1e-6:
                issues.append(
                    Issue(
                        "reward_mismatch",
                        f"claimed reward {claimed:+.4f} lies outside the "
                        f"re-run's interval {lo:+.4f}..{hi:+.4f}",
                        line,
                        task,
                    )
                )
        elif not _close(claimed, record.reward):
            issues.append(
                Issue(
                    "reward_mismatch",
                    f"claimed reward {claimed:+.6f}, the re-run gives {record.reward:+.6f}",
                    line,
                    task,
                )
            )
    return issues


__all__ = [
    "CLAIMS",
    "SETTINGS",
    "Entry",
    "Issue",
    "Submission",
    "check_claims",
    "parse_submission",
    "read_submission",
    "write_submission",
]
