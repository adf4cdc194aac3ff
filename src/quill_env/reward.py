"""The reward: tiered speedup, verdict vocabulary, readability and index terms.

The reward is a small pipeline of pure terms combined by :class:`RewardConfig`; every term is
reported separately so a training run can see why a completion earned what it earned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from quill_env.errors import ConfigError


class Verdict(str, Enum):
    """The closed vocabulary of outcomes of one action (``info["verdict"]``)."""

    IMPROVED = "improved"
    """Correct, and at least the first tier faster."""
    NO_GAIN = "no_gain"
    """Correct, but below the first tier (speedup < 1.5 by default)."""
    UNCHANGED = "unchanged"
    """Canonically the same query as the original and no index."""
    WRONG_RESULT = "wrong_result"
    """Returns different results on the main database or on a variant."""
    TIMEOUT = "timeout"
    """Stopped at the budget relative to the baseline's cost."""
    SYNTAX_ERROR = "syntax_error"
    """Not SQL the engine accepts (parse or prepare error), or no SQL at all."""
    REJECTED = "rejected"
    """Refused by the sandbox policy or the anti-reward-hacking checks."""
    RUNTIME_ERROR = "runtime_error"
    """Accepted and prepared, but failed while running."""

    def __str__(self) -> str:
        return self.value

    @property
    def correct(self) -> bool:
        """Whether this verdict means the results were verified equal."""
        return self in (Verdict.IMPROVED, Verdict.NO_GAIN, Verdict.UNCHANGED)


DEFAULT_TIERS: tuple[tuple[float, float], ...] = (
    (1.0, 0.00),
    (1.5, 0.25),
    (2.0, 0.45),
    (5.0, 0.60),
    (10.0, 0.70),
    (50.0, 0.85),
    (1000.0, 0.95),
)

DEFAULT_VERDICT_REWARDS: dict[str, float] = {
    "no_gain": 0.0,
    "unchanged": 0.0,
    "wrong_result": -1.0,
    "timeout": -0.5,
    "syntax_error": -1.0,
    "rejected": -1.0,
    "runtime_error": -1.0,
}


@dataclass(frozen=True)
class RewardConfig:
    """Every knob of the reward in one place (DESIGN §2).

    Args:
        tiers: ``(speedup, reward)`` anchors, increasing in both; the reward is interpolated
            linearly in ``log(speedup)`` between anchors and constant above the last one.
        verdict_rewards: the fixed reward of every verdict other than ``improved``.
        acceptance: the smallest tier reward that counts as an improvement (0.25 = 1.5x).
        readability_weight: the readability term's bound; it lies in
            ``[-readability_weight, +readability_weight]`` and applies to ``improved`` only.
        index_penalty: subtracted per ``CREATE INDEX`` in an improved action.
        max_indexes: the most ``CREATE INDEX`` statements one action may carry.
    """

    tiers: tuple[tuple[float, float], ...] = DEFAULT_TIERS
    verdict_rewards: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_VERDICT_REWARDS))
    acceptance: float = 0.25
    readability_weight: float = 0.05
    index_penalty: float = 0.02
    max_indexes: int = 3

    def __post_init__(self) -> None:
        if len(self.tiers) < 2:
            raise ConfigError("RewardConfig.tiers needs at least two (speedup, reward) anchors")
        speeds = [s for s, _ in self.tiers]
        rewards = [r for _, r in self.tiers]
        if any(s <= 0 for s in speeds) or speeds != sorted(set(speeds)):
            raise ConfigError("RewardConfig.tiers: speedups must be positive and increasing")
        if rewards != sorted(rewards):
            raise ConfigError("RewardConfig.tiers: rewards must be non-decreasing")
        unknown = set(self.verdict_rewards) - {v.value for v in Verdict}
        if unknown:
            raise ConfigError(f"RewardConfig.verdict_rewards: unknown verdicts {sorted(unknown)}")
        missing = set(DEFAULT_VERDICT_REWARDS) - set(self.verdict_rewards)
        if missing:
            raise ConfigError(f"RewardConfig.verdict_rewards: missing verdicts {sorted(missing)}")
        if not 0 <= self.readability_weight <= 1:
            raise ConfigError("RewardConfig.readability_weight must lie in [0, 1]")
        if self.index_penalty < 0:
            raise ConfigError("RewardConfig.index_penalty must be >= 0")
        if self.max_indexes < 0:
            raise ConfigError("RewardConfig.max_indexes must be >= 0")

    @property
    def min_speedup(self) -> float:
        """The speedup at which the tier reward first reaches ``acceptance``."""
        return inverse_tier(self.acceptance, self.tiers)


def tier_reward(speedup: float, tiers: tuple[tuple[float, float], ...] = DEFAULT_TIERS) -> float:
    """Map a speedup to its tier reward, linear in ``log(speedup)`` between anchors.

    >>> tier_reward(1.5), tier_reward(1000.0), tier_reward(5000.0)
    (0.25, 0.95, 0.95)
    >>> round(tier_reward(math.sqrt(2 * 5)), 3)   # halfway between 2x and 5x in log space
    0.525
    >>> tier_reward(0.5)
    0.0
    """
    if not math.isfinite(speedup) and speedup > 0:
        return tiers[-1][1]
    if speedup <= tiers[0][0]:
        return tiers[0][1]
    for (s0, r0), (s1, r1) in zip(tiers, tiers[1:]):
        if speedup <= s1:
            t = (math.log(speedup) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return round(r0 + t * (r1 - r0), 12)
    return tiers[-1][1]


def inverse_tier(reward: float, tiers: tuple[tuple[float, float], ...] = DEFAULT_TIERS) -> float:
    """The smallest speedup whose tier reward is at least ``reward``.

    >>> inverse_tier(0.25), inverse_tier(0.95)
    (1.5, 1000.0)
    """
    if reward <= tiers[0][1]:
        return tiers[0][0]
    for (s0, r0), (s1, r1) in zip(tiers, tiers[1:]):
        if reward <= r1 and r1 > r0:
            t = (reward - r0) / (r1 - r0)
            return round(math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0))), 9)
    return math.inf


def readability_term(original_size: int, rewrite_size: int, weight: float = 0.05) -> float:
    """Reward shorter rewrites a little and penalize bloated ones, within ``[-weight, weight]``.

    Sizes are AST node counts. A rewrite of the same size scores 0; half the size scores
    ``+weight/2``; twice the size scores ``-weight/2``; the term saturates at 4x either way.

    >>> readability_term(100, 100)
    0.0
    >>> readability_term(100, 50), readability_term(100, 200)
    (0.025, -0.025)
    """
    if original_size <= 0 or rewrite_size <= 0:
        return 0.0
    ratio = math.log2(original_size / rewrite_size) / 2.0
    return round(weight * max(-1.0, min(1.0, ratio)), 6)


def index_term(n_indexes: int, penalty: float = 0.02) -> float:
    """The cost of the indexes an action creates.

    >>> index_term(0), index_term(2)
    (0.0, -0.04)
    """
    return round(-penalty * n_indexes, 6) + 0.0  # never -0.0


def compute_reward(
    verdict: Verdict,
    speedup: float | None,
    *,
    original_size: int = 0,
    rewrite_size: int = 0,
    n_indexes: int = 0,
    config: RewardConfig | None = None,
) -> tuple[Verdict, float, dict[str, float]]:
    """Combine the terms into the reward of one action.

    A correct rewrite whose tier reward is below ``config.acceptance`` becomes ``no_gain``.

    Returns:
        The final verdict, the total reward and every term by name.

    >>> v, r, terms = compute_reward(Verdict.IMPROVED, 10.0)
    >>> v.value, r, terms["tier"]
    ('improved', 0.7, 0.7)
    >>> compute_reward(Verdict.IMPROVED, 1.2)[:2]
    (<Verdict.NO_GAIN: 'no_gain'>, 0.0)
    >>> compute_reward(Verdict.WRONG_RESULT, None)[1]
    -1.0
    """
    config = config or RewardConfig()
    if verdict is Verdict.IMPROVED:
        tier = tier_reward(speedup or 0.0, config.tiers)
        if tier >= config.acceptance:
            terms = {
                "tier": tier,
                "readability": readability_term(original_size, rewrite_size, config.readability_weight),
                "indexes": index_term(n_indexes, config.index_penalty),
            }
            return verdict, round(sum(terms.values()), 6), terms
        verdict = Verdict.NO_GAIN
    value = config.verdict_rewards[verdict.value]
    return verdict, value, {"verdict": value}
