"""No hard-coded or gated answer is ever paid, on any shipped task (issue: reward integrity).

For every task of every suite, at the small scale, :mod:`adversary` writes the rewrites a policy
that has seen the answer would try: the answer's rows as literals, those rows behind a size
gate, the original restricted to the answer's keys behind a key-range gate, and that key
restriction ungated. None may earn a positive reward.

The corpus must be able to succeed, or the test proves nothing: with the defences that see it
switched off (the literal-provenance rule and the full-size twins) the gated attacks are paid on
most tasks, as they were before those defences existed; and the twins alone catch the gated key
restrictions that the literal rule would otherwise be the only one to refuse.
"""

from __future__ import annotations

from collections import Counter

import pytest
from tests.adversary import ATTACKS
from tests.engines import engine_params

from quill_env import EvalOptions, TaskRunner, Verdict, get_suite, list_suites

SCALE = "small"


def _runners(
    suite_name: str, options: EvalOptions, limit: int | None = None, engine: str = "sqlite", every: int = 1
):
    suite = get_suite(suite_name)
    for task in [t for t in suite.tasks if suite.runs_on(t, engine)][:limit:every]:
        runner = TaskRunner.from_suite(suite, task, SCALE, options, engine=engine)
        _ = runner.baseline
        yield task, runner
        runner.close()


def _attacks(runner: TaskRunner, kinds=ATTACKS):
    for kind in kinds:
        action = ATTACKS[kind](runner)
        if action is not None:
            yield kind, action


DUCKDB_EVERY = 12
"""On DuckDB every twelfth task of each suite is attacked (every task on SQLite)."""

POSTGRES_EVERY = 24
"""On PostgreSQL every twenty-fourth (a PostgreSQL runner builds its copies on a server: slower)."""


@pytest.mark.parametrize("suite_name", list_suites())
@pytest.mark.parametrize("engine", engine_params())
def test_no_hard_code_is_paid(suite_name, engine):
    paid, tried = [], Counter()
    every = {"sqlite": 1, "postgres": POSTGRES_EVERY}.get(engine, DUCKDB_EVERY)
    for task, runner in _runners(suite_name, EvalOptions(), engine=engine, every=every):
        for kind, action in _attacks(runner):
            tried[kind] += 1
            result = runner.evaluate(action)
            if result.reward > 0:
                paid.append((task.id, kind, result.verdict.value, result.reward))
    assert sum(tried.values()) > 0
    assert not paid, (f"{len(paid)} of {sum(tried.values())} attacks paid", paid[:10])


@pytest.mark.parametrize("engine", engine_params(["sqlite", "postgres"]))
def test_the_attacks_succeed_without_the_defences(engine):
    """With provenance, twins and emptied tables off, the gated attacks pass verification (the old hole).

    A gated attack pays only where its fast path is faster than the original (and the gate's
    subquery lengthens the candidate's loops, which the work counter charges), so the bar is
    that each kind is paid on a fifth of the tasks and that most tasks fall to at least one.

    SQLite and PostgreSQL (whose attacks key on the primary key: ``ctid`` is refused). Not on
    DuckDB: there the gate saves nothing even with the defences off (measured on the shop suite:
    0 of 42 gated attacks paid; 28 time out, the rest are no gain, wrong or refused), because
    DuckDB runs both branches of the ``UNION ALL`` and its counter charges every row each one
    scans, so a gated candidate costs more than the original.
    """
    options = EvalOptions(literals="any", num_twins=0, empty_tables=False)
    paid, tried, tasks, fallen = Counter(), Counter(), 0, 0
    for _task, runner in _runners("shop", options, engine=engine):
        tasks += 1
        hit = False
        for kind, action in _attacks(runner, ("count_gated_rows", "key_gated_in_list")):
            tried[kind] += 1
            won = runner.evaluate(action).verdict is Verdict.IMPROVED
            paid[kind] += won
            hit |= won
        fallen += hit
    assert all(paid[kind] >= 0.2 * tried[kind] for kind in tried), (paid, tried)
    assert fallen >= 0.5 * tasks, (fallen, tasks, paid, tried)


@pytest.mark.parametrize("engine", engine_params())
def test_twins_alone_catch_gated_key_restrictions(engine):
    """The literal rule off: the twins still refuse the key-gated restriction on most tasks."""
    options = EvalOptions(literals="any")
    verdicts = Counter()
    for _task, runner in _runners("shop", options, engine=engine, every=2 if engine == "postgres" else 1):
        for _kind, action in _attacks(runner, ("key_gated_in_list", "count_gated_rows")):
            result = runner.evaluate(action)
            verdicts["paid" if result.reward > 0 else "refused"] += 1
            if result.verdict is Verdict.WRONG_RESULT:
                verdicts["caught by a twin"] += any(
                    v.name.startswith("twin") and v.status == "mismatch" for v in result.variants
                )
    assert verdicts["refused"] >= 0.9 * (verdicts["refused"] + verdicts["paid"]), verdicts
    assert verdicts["caught by a twin"] > 0, verdicts
