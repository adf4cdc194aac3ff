"""The multi-turn tool environments: the async tools never wait on one another, and a batch's
episodes are scored together with exactly the environment's rewards.

TRL decides per method whether a tool is sync or async (``inspect.iscoroutinefunction``), runs
async tools on its event loop, and (in its async trainer) keeps many rollouts in flight at once.
A tool that blocks the loop, or a reward computed one episode after another, would serialize
every rollout behind the slowest; these tests fail if either happens.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from quill_agents.trainers.rewards import (
    AsyncSQLToolEnvironment,
    EnvironmentReward,
    SQLToolEnvironment,
    ToolEpisodeMetrics,
    tool_environment_factory,
)
from quill_env.errors import ConfigError, EnvStateError, UnknownNameError
from quill_env.prompt import format_completion

TASKS = ("shop/coupon_lookup", "shop/orders_of_email")
EVAL = {"num_variants": 2}


@pytest.fixture(scope="module")
def pooled():
    """A reward with two worker processes, shared by the module's tests (spawning is slow)."""
    with EnvironmentReward(["shop"], "small", EVAL, workers=2) as reward:
        yield reward


def test_the_async_tools_are_coroutines_with_the_sync_tools_answers(pooled, shop_suite):
    for name in ("query_plan", "dry_run"):  # what TRL reads to run a tool on its event loop
        assert inspect.iscoroutinefunction(getattr(AsyncSQLToolEnvironment, name))
        assert not inspect.iscoroutinefunction(getattr(SQLToolEnvironment, name))
    env = tool_environment_factory(reward=pooled)()
    assert isinstance(env, AsyncSQLToolEnvironment)
    sync = tool_environment_factory(["shop"], "small", EVAL)()
    assert isinstance(sync, SQLToolEnvironment)
    task = shop_suite.task(TASKS[0])
    candidates = [task.reference, task.query, "SELECT FROM orders WHERE", "DROP TABLE orders"]
    env.reset(task_id=TASKS[0])
    sync.reset(task_id=TASKS[0])

    async def calls():
        return await asyncio.gather(*(tool(c) for c in candidates for tool in (env.query_plan, env.dry_run)))

    answers = asyncio.run(calls())
    expected = [tool(c) for c in candidates for tool in (sync.query_plan, sync.dry_run)]
    assert answers == expected
    assert answers[1].startswith("verdict=improved")
    assert env.tool_calls == sync.tool_calls == 2 * len(candidates)
    env.submit(format_completion(task.reference))
    sync.submit(format_completion(task.reference))
    assert env.get_reward() == sync.get_reward() > 0.25


class _Gated(EnvironmentReward):
    """A reward whose tools finish only once ``parties`` of them are running at the same time."""

    def __init__(self, parties: int) -> None:
        super().__init__(["shop"], "small", EVAL, workers=0)
        self.barrier = threading.Barrier(parties, timeout=30)
        self.threads = ThreadPoolExecutor(parties)

    def tool_output(self, task_id: str, tool: str, sql: str) -> Future[str]:
        def answer() -> str:
            self.barrier.wait()  # BrokenBarrierError unless the other calls are in flight too
            return f"{tool} on {task_id}"

        return self.threads.submit(answer)


def test_many_rollouts_tool_calls_are_in_flight_at_once():
    reward = _Gated(parties=4)
    envs = [AsyncSQLToolEnvironment(reward) for _ in range(4)]
    for env, task_id in zip(envs, TASKS * 2):
        env.reset(task_id=task_id)

    async def rollouts():
        return await asyncio.gather(*(env.dry_run("SELECT 1") for env in envs))

    assert asyncio.run(rollouts()) == [f"dry_run on {t}" for t in TASKS * 2]
    reward.threads.shutdown()


class _Counting(EnvironmentReward):
    """An in-process reward that records every batch it scores."""

    def __init__(self) -> None:
        super().__init__(["shop"], "small", EVAL, workers=0)
        self.batches: list[list[str]] = []

    def score(self, task_ids, actions):
        self.batches.append(list(task_ids))
        return super().score(task_ids, actions)


def test_a_batchs_episodes_are_scored_together_with_the_environments_rewards(shop_suite):
    reward = _Counting()
    envs = [AsyncSQLToolEnvironment(reward) for _ in range(5)]
    answers = []
    for i, env in enumerate(envs[:4]):
        task = shop_suite.task(TASKS[i % 2])
        env.reset(task_id=task.id)
        answer = task.reference if i < 2 else task.query
        env.submit(format_completion(answer))
        answers.append((task.id, answer))
    envs[4].reset(task_id=TASKS[0])  # never submits
    rewards = [env.get_reward() for env in envs]
    assert reward.batches == [[TASKS[0], TASKS[1], TASKS[0], TASKS[1]], [TASKS[0]]]
    sync = tool_environment_factory(["shop"], "small", EVAL)()
    expected = []
    for task_id, answer in [*answers, (TASKS[0], None)]:
        sync.reset(task_id=task_id)
        if answer is not None:
            sync.submit(answer)
        expected.append(sync.get_reward())
    assert rewards == expected
    assert rewards[4] == -1.0  # nothing submitted
    assert len(reward.history) == 5

    # a new submission after scoring is scored again; the metrics function batches too
    envs[2].submit(format_completion(shop_suite.task(TASKS[0]).reference))
    for env in envs[:2]:
        env.reset(task_id=TASKS[1])
    logged = {}
    metrics = ToolEpisodeMetrics()(environments=envs, log_metric=logged.__setitem__)
    assert reward.batches[2:] == [[TASKS[1], TASKS[1], TASKS[0]]]
    assert metrics[2] == rewards[0] and metrics[3:] == rewards[3:]
    assert metrics[:2] == [-1.0, -1.0] and logged["quill/submitted"] == pytest.approx(2 / 5)


def test_bad_uses_are_clear_errors(pooled):
    env = tool_environment_factory(reward=pooled)()
    with pytest.raises(EnvStateError, match="reset"):
        asyncio.run(env.dry_run("SELECT 1"))
    with pytest.raises(UnknownNameError):
        env.reset(task_id="shop/no_such_task")
    with pytest.raises(ConfigError, match="task_id"):
        env.reset(prompt="no task id")
    with pytest.raises(ConfigError, match="either workers or a reward"):
        tool_environment_factory(workers=2, reward=pooled)
    with pytest.raises(ConfigError, match="unknown tool"):
        pooled.tool_output(TASKS[0], "drop_table", "SELECT 1")
