import math

import pytest

from quill_env import ConfigError, RewardConfig, Verdict
from quill_env.reward import DEFAULT_TIERS, compute_reward, tier_reward


@pytest.mark.parametrize(("speedup", "reward"), DEFAULT_TIERS)
def test_anchors(speedup, reward):
    assert tier_reward(speedup) == pytest.approx(reward)


def test_monotone_and_capped():
    xs = [1.0 + i * 0.37 for i in range(4000)]
    ys = [tier_reward(x) for x in xs]
    assert all(a <= b for a, b in zip(ys, ys[1:]))
    assert tier_reward(1e9) == 0.95 and tier_reward(math.inf) == 0.95


def test_verdict_rewards_and_terms():
    for verdict, value in [("wrong_result", -1.0), ("timeout", -0.5), ("rejected", -1.0), ("unchanged", 0.0)]:
        v, r, terms = compute_reward(Verdict(verdict), None)
        assert r == value and terms == {"verdict": value}
    v, r, terms = compute_reward(Verdict.IMPROVED, 10.0, original_size=100, rewrite_size=50, n_indexes=2)
    assert v is Verdict.IMPROVED
    assert terms == {"tier": 0.7, "readability": 0.025, "indexes": -0.04}
    assert r == pytest.approx(0.685)


def test_config_validation():
    with pytest.raises(ConfigError):
        RewardConfig(tiers=((2.0, 0.5), (1.0, 0.2)))
    with pytest.raises(ConfigError):
        RewardConfig(verdict_rewards={"bogus": 1.0})
    with pytest.raises(ConfigError):
        RewardConfig(index_penalty=-1)
    assert RewardConfig().min_speedup == pytest.approx(1.5)
