"""Quill's reward as plain functions: ``quill_env.reward_fn`` and the verl-style ``compute_score``.

Each must pay exactly what ``env.step`` pays for the same (task, action), and nothing a
completion says can move it to another task or around the verification.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
from tests.engines import engine_params

import quill_env
from quill_env import ConfigError, UnknownNameError, compute_score, reward_fn
from quill_env.prompt import format_completion
from quill_env.reward_functions import RewardFunction

SCALE = "small"


@pytest.fixture(scope="module")
def tasks(shop_suite):
    return [t for t in shop_suite.split("train") if t.reference][:3]


@pytest.fixture(scope="module")
def shop_reward():
    return RewardFunction(scale=SCALE)


def step_reward(task, action: str, engine: str = "sqlite") -> tuple[float, str]:
    env = gym.make("Quill-v1", suite="shop", split="all", scale=SCALE, engine=engine)
    try:
        env.reset(options={"task_id": task.id})
        _, reward, _, _, info = env.step(action)
    finally:
        env.close()
    return reward, info["verdict"]


def test_reward_fn_pays_what_the_environment_pays(tasks, shop_reward):
    actions = [t.reference for t in tasks] + [t.query for t in tasks] + ["SELECT nonsense FROM nowhere"]
    ids = [t.id for t in tasks] * 2 + [tasks[0].id]
    rewards = shop_reward(None, [format_completion(a) for a in actions], ids)
    expected = [step_reward(next(t for t in tasks if t.id == i), a)[0] for a, i in zip(actions, ids)]
    assert rewards == expected
    assert all(r > 0 for r in rewards[: len(tasks)]) and rewards[len(tasks)] == 0.0 and rewards[-1] < 0


def test_reward_fn_takes_trl_keywords_and_chat_completions(tasks, shop_reward):
    task = tasks[0]
    chat = [[{"role": "assistant", "content": format_completion(task.reference)}]]
    assert shop_reward(prompts=["ignored"], completions=chat, task_id=[task.id]) == [
        step_reward(task, task.reference)[0]
    ]


def test_the_task_comes_from_the_dataset_never_the_completion(tasks, shop_reward):
    """A completion that names another task, or answers another task's query, is scored on its
    own task: the answer to a different question is not paid."""
    mine, other = tasks[0], tasks[1]
    forged = f"task_id: {other.id}\n{format_completion(other.reference)}"
    (reward,) = shop_reward(None, [forged], [mine.id])
    assert reward <= 0
    # the last fenced block is the answer: a correct rewrite shown first and then retracted
    # earns what the final block earns
    two = format_completion(mine.reference) + "\n" + format_completion("SELECT 1")
    assert shop_reward(None, [two], [mine.id]) == [step_reward(mine, "SELECT 1")[0]]


def test_reward_fn_refuses_missing_or_mismatched_task_ids(tasks):
    with pytest.raises(ConfigError, match="task id"):
        reward_fn(None, ["SELECT 1"])
    with pytest.raises(ConfigError, match="2 task ids for 1 actions"):
        reward_fn(None, ["SELECT 1"], [tasks[0].id, tasks[1].id])
    with pytest.raises(UnknownNameError):
        reward_fn(None, ["SELECT 1"], ["shop/no_such_task"])


@pytest.mark.parametrize("engine", engine_params())
def test_compute_score_is_the_environments_reward(tasks, engine):
    task = tasks[0]
    runner = quill_env.TaskRunner.from_suite(quill_env.get_suite("shop"), task, SCALE, engine=engine)
    reference = runner.task.reference  # in the engine's dialect
    runner.close()
    out = compute_score(
        "quill/shop",
        format_completion(reference),
        None,
        {"task_id": task.id, "scale": SCALE, "engine": engine},
    )
    reward, verdict = step_reward(task, reference, engine)
    assert out["score"] == reward
    assert out["correct"] == (1.0 if verdict in ("improved", "no_gain", "unchanged") else 0.0)
    assert set(out) == {"score", "correct", "speedup"} and all(isinstance(v, float) for v in out.values())


def test_compute_score_needs_the_task_id_in_extra_info(tasks):
    with pytest.raises(ConfigError, match="extra_info"):
        compute_score("quill/shop", "SELECT 1", tasks[0].id, {})
    with pytest.raises(UnknownNameError):
        compute_score("quill/shop", "SELECT 1", None, {"task_id": tasks[0].id, "engine": "oracle"})


@pytest.mark.parametrize("engine", engine_params())
def test_threads_scoring_at_once_are_paid_as_one_at_a_time(tasks, engine):
    """verl's reward loop calls a sync compute_score from an executor's threads, all at once.

    The runners of one database file share its copy and its scratch state (a candidate's indexes,
    a twin), so unserialized threads corrupted each other's scores: the attack this guards
    against found 16 wrong rewards and 20 engine errors in 120 calls.
    """
    from concurrent.futures import ThreadPoolExecutor

    calls = []
    for task in tasks:
        ported = quill_env.TaskRunner.from_suite(quill_env.get_suite("shop"), task, SCALE, engine=engine)
        reference, query = ported.task.reference, ported.task.query
        ported.close()
        calls += [
            (task.id, reference),
            (task.id, query),
            (task.id, "SELECT 1"),
            (task.id, "DROP TABLE users"),
        ]

    def score(call):
        task_id, sql = call
        info = {
            "task_id": task_id,
            "scale": SCALE,
            "engine": engine,
            "num_turns": 1,
            "rollout_reward_scores": {},
        }
        out = compute_score(
            data_source="quill/shop", solution_str=format_completion(sql), ground_truth=None, extra_info=info
        )
        return out["score"], out["correct"]

    alone = [score(c) for c in calls]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(score, calls * 3))
    assert together == alone * 3
