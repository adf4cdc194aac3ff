"""The query-rewrite papers' workload metrics beside fast_p (issue 14, item 3)."""

import pytest

from quill_agents.leaderboard.metrics import p90, rewritten_cost, summarize, workload
from quill_agents.leaderboard.pool import StepRecord
from quill_agents.leaderboard.report import render_leaderboard
from quill_env.reward import Verdict


def _record(verdict, correct, base, cand=None, speedup=None, reward=0.0):
    return StepRecord(
        "agent", "s/t", "s", "s", [], "SELECT 1", verdict, correct, reward, speedup=speedup,
        baseline_cost=base, candidate_cost=cand, cost_unit="vm_steps",
    )  # fmt: skip


RECORDS = [
    _record(Verdict.IMPROVED, True, 100.0, 20.0, speedup=5.0, reward=0.6),
    _record(Verdict.IMPROVED, True, 100.0, 60.0, speedup=1.67, reward=0.3),
    _record(Verdict.UNCHANGED, True, 300.0, 300.0),
    _record(Verdict.TIMEOUT, False, 50.0, 100.0, reward=-0.5),
    _record(Verdict.WRONG_RESULT, False, 400.0, 1.0, reward=-1.0),
]


def test_rewritten_cost_counts_timeouts_at_the_cap_and_falls_back_on_failures():
    assert [rewritten_cost(r) for r in RECORDS] == [20.0, 60.0, 300.0, 100.0, 400.0]
    assert rewritten_cost(RECORDS[3], budget_factor=3.0) == 150.0
    assert rewritten_cost(_record(Verdict.IMPROVED, True, None, 5.0)) is None


def test_workload_metrics_next_to_fast_p():
    w = workload(RECORDS)
    assert w["unit"] == "vm_steps" and w["tasks"] == 5
    assert w["mean"] == pytest.approx((20 + 60 + 300 + 100 + 400) / 5)
    assert w["original_mean"] == pytest.approx((100 + 100 + 300 + 50 + 400) / 5)
    assert w["p90"] == 400.0 and w["original_p90"] == 400.0
    assert w["mean_ratio"] == pytest.approx(176 / 190, rel=1e-5)
    assert w["improved"] == pytest.approx(0.4) and w["faster_2x"] == pytest.approx(0.2)
    assert summarize(RECORDS)["workload"] == w
    assert p90([3.0, 1.0, 2.0]) == 3.0


def test_leaderboard_shows_the_workload_columns():
    summary = summarize(RECORDS)
    summary["timing"] = {"step_mean_s": 0.01}
    run = {
        "run": "r1", "fingerprint": {"split": "test", "suites": []},
        "agents": [{"agent": "agent", "source": "live", "summary": summary}],
    }  # fmt: skip
    page = render_leaderboard([run])
    assert "| mean cost | p90 cost |" in page
    assert "| 92.6% | 100.0% |" in page
