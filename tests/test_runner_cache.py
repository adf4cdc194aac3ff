"""One bounded runner cache per process, shared by the env, ``evaluate``, the pool and the rewards."""

import pytest

import quill_env.runners
from quill_agents.leaderboard.agents import parse_agent
from quill_agents.leaderboard.pool import Job, Player, RunConfig, Worker
from quill_agents.trainers.rewards import EnvironmentReward, TaskRunners, tool_environment_factory
from quill_env import SQLOptEnv, TaskRunner, evaluate
from quill_env.runners import RunnerCache, runner_cache, shared_backend

TASKS = ["shop/pending_in_january", "shop/orders_on_a_day", "shop/one_user_totals"]
EVAL = {"num_variants": 2}


@pytest.fixture
def small_cache(monkeypatch):
    """Replace the process-wide cache by a fresh one of room ``maxsize`` (restored afterwards)."""

    def install(maxsize):
        cache = RunnerCache(maxsize=maxsize)
        monkeypatch.setattr(quill_env.runners, "_SHARED", [cache])
        assert runner_cache() is cache
        return cache

    return install


@pytest.fixture
def closed(monkeypatch):
    """Task ids of the runners closed during the test, in order."""
    ids = []
    close = TaskRunner.close

    def recording_close(self):
        ids.append(self.task.id)
        close(self)

    monkeypatch.setattr(TaskRunner, "close", recording_close)
    return ids


def test_env_pool_rewards_and_tools_share_one_runner(shop_suite, small_cache):
    cache = small_cache(8)
    task_id = TASKS[0]
    env = SQLOptEnv(suite="shop", split="all", scale="small", **EVAL)
    env.reset(options={"task_id": task_id})
    from_env = env.runner(task_id)
    worker = Worker(RunConfig(("shop",), "small", EVAL))
    reward = EnvironmentReward(suites=["shop"], scale="small", eval_options=EVAL, workers=0)
    reward.score([task_id], [shop_suite.task(task_id).query])
    tool = tool_environment_factory(["shop"], "small", EVAL)()
    tool.reset(task_id=task_id)
    assert "verdict=" in tool.dry_run(shop_suite.task(task_id).reference)
    assert worker.runner(task_id) is from_env
    assert TaskRunners(["shop"], "small", EVAL).runner(task_id) is from_env
    assert len(cache) == 1, "every scorer found the environment's runner"


def test_different_options_or_scales_never_collide(shop_suite, small_cache):
    cache = small_cache(8)
    task_id = TASKS[0]
    base = Worker(RunConfig(("shop",), "small", EVAL)).runner(task_id)
    assert TaskRunners(["shop"], "small", {"num_variants": 1}).runner(task_id) is not base
    assert TaskRunners(["shop"], "small", {**EVAL, "cost": "wall"}).runner(task_id) is not base
    assert TaskRunners(["shop"], "medium", EVAL).runner(task_id) is not base
    assert len(cache) == 4


def test_evaluate_shares_the_bounded_cache_and_the_database_copy(shop_suite, small_db, small_cache, closed):
    cache = small_cache(3)
    task = shop_suite.task(TASKS[0])
    first = evaluate(small_db, task.query, task.query, **EVAL)
    again = evaluate(small_db, task.query, task.query, **EVAL)
    assert first.verdict == again.verdict and len(cache) == 1
    worker = Worker(RunConfig(("shop",), "small", EVAL))
    runners = [worker.runner(t) for t in TASKS]
    assert {id(r.backend) for r in runners} == {id(shared_backend(small_db))}
    assert len(cache) == 3
    assert closed == [first.task_id], "the least recently used runner (evaluate's) is closed"
    worker.runner(TASKS[1])
    evaluate(small_db, task.query, task.query, **EVAL)
    assert len(cache) == 3 and closed == [first.task_id, TASKS[0]]


@pytest.mark.parametrize("player", ["actions", "agent"])
def test_pool_scores_a_job_larger_than_the_cache(shop_suite, small_cache, closed, player):
    small_cache(1)
    if player == "actions":
        players = (Player("reference", actions={t: shop_suite.task(t).reference for t in TASKS}),)
    else:
        players = (Player("identity", agent=parse_agent("identity")),)
    worker = Worker(RunConfig(("shop",), "small", EVAL))
    records = worker.run(Job(tuple(TASKS), players)).records
    assert [r.task_id for r in records] == TASKS
    if player == "actions":
        assert all(r.correct for r in records), [(r.verdict, r.error) for r in records]
    else:
        assert [r.verdict for r in records] == ["unchanged"] * 3, [r.error for r in records]
    assert closed, "the job had to evict runners"


def test_closing_the_reward_or_the_pool_leaves_the_env_running(shop_suite, small_cache, closed):
    small_cache(8)
    task = shop_suite.task(TASKS[0])
    env = SQLOptEnv(suite="shop", split="all", scale="small", **EVAL)
    env.reset(options={"task_id": task.id})
    with EnvironmentReward(suites=["shop"], scale="small", eval_options=EVAL, workers=0) as reward:
        reward.score([task.id], [task.reference])
    worker = Worker(RunConfig(("shop",), "small", EVAL))
    worker.run(Job((task.id,), (Player("reference", actions={task.id: task.reference}),)))
    worker.close()
    _, _, _, _, info = env.step(task.reference)
    assert info["correct"], info["error"]
    assert closed == []
