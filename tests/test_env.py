import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import quill_env
from quill_env import EnvStateError
from quill_env.registration import REGISTERED

ALL_IDS = sorted(REGISTERED)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_check_env_on_every_registered_id(env_id, shop_suite):
    kwargs = {"scale": "small"}
    if "wall" in env_id:
        kwargs["wall"] = quill_env.WallOptions(min_pairs=2, max_pairs=3, time_budget=0.2)
    env = gym.make(env_id, **kwargs)
    assert env.spec.nondeterministic == ("wall" in env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def _rollout(seed, actions):
    env = gym.make("Quill-v0", scale="small")
    out = []
    obs, info = env.reset(seed=seed)
    for pick in actions:
        task = env.unwrapped.task
        action = task.reference if pick == "reference" else task.query
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((info["task_id"], obs["query"], reward, info["verdict"], info["speedup"]))
        assert terminated and not truncated
        obs, info = env.reset()
    env.close()
    return out


def test_same_seed_same_episodes(shop_suite):
    actions = ["reference", "identity", "reference", "reference"]
    first, second = _rollout(7, actions), _rollout(7, actions)
    assert first == second
    assert len({row[0] for row in first}) > 1  # the seed drives task choice


def test_observation_has_schema_query_and_plan(shop_suite):
    env = gym.make("Quill-v0", suite="shop", scale="small")
    obs, info = env.reset(seed=0)
    assert set(obs) == {"schema", "query", "plan"}
    assert "CREATE TABLE users" in obs["schema"] and "rows" in obs["schema"]
    assert obs["plan"].strip()
    assert info["task_id"].startswith("shop/")
    assert env.observation_space.contains(obs)


def test_step_before_reset_raises(shop_suite):
    env = gym.make("Quill-v0", scale="small").unwrapped
    with pytest.raises(EnvStateError):
        env.step("SELECT 1")
    env.reset(seed=0)
    env.step("SELECT 1")
    with pytest.raises(EnvStateError):
        env.step("SELECT 1")  # single-step episode has ended


def test_multi_turn_feedback(shop_suite):
    env = gym.make("Quill-v0", scale="small", max_attempts=3, task_ids=["shop/coupon_lookup"])
    obs, _ = env.reset(seed=0)
    assert obs["feedback"] == ""
    obs, reward, terminated, _, info = env.step("DELETE FROM orders")
    assert info["verdict"] == "rejected" and reward == -1.0 and not terminated
    assert "verdict=rejected" in obs["feedback"]
    obs, reward, terminated, _, info = env.step(env.unwrapped.task.reference)
    assert info["verdict"] == "improved" and terminated and info["attempt"] == 2


def test_users_own_database(small_db):
    env = gym.make(
        "Quill-v0",
        database=small_db,
        queries=["SELECT id, total FROM orders WHERE coupon_code = 'SAVE-amber'"],
    )
    _obs, info = env.reset(seed=0)
    assert info["task_id"] == "user/q0"
    _, reward, _, _, info = env.step(
        "CREATE INDEX i ON orders(coupon_code); SELECT id, total FROM orders WHERE coupon_code = 'SAVE-amber'"
    )
    assert info["verdict"] == "improved" and reward > 0.25
    assert len(info["variants"]) == 8


def test_bad_arguments_raise_typed_errors(shop_suite):
    with pytest.raises(quill_env.UnknownNameError, match="did you mean 'shop'"):
        gym.make("Quill-v0", suite="shopp")
    with pytest.raises(quill_env.ConfigError):
        gym.make("Quill-v0", queries=["SELECT 1"])
    with pytest.raises(quill_env.UnknownNameError):
        gym.make("Quill-v0", cost="fast")
    with pytest.raises(quill_env.UnknownNameError):
        gym.make("Quill-v0", budget_factr=3)


def test_wall_mode_reports_interval(shop_suite):
    env = gym.make(
        "Quill-wall-v0",
        scale="small",
        task_ids=["shop/order_count_per_user"],
        wall=quill_env.WallOptions(min_pairs=3, max_pairs=5, time_budget=1.0),
    )
    env.reset(seed=0)
    _, _reward, _, _, info = env.step(env.unwrapped.task.reference)
    assert info["verdict"] == "improved"
    wall = info["wall"]
    assert wall["lower"] <= wall["point"] <= wall["upper"] and wall["pairs"] >= 3
    assert info["speedup"] == wall["lower"]  # tier from the conservative bound


def test_import_stays_light():
    code = (
        "import sys, quill_env, gymnasium as gym; gym.make('Quill-v0');"
        "heavy = [m for m in ('torch', 'trl', 'transformers', 'duckdb', 'psycopg', 'ray') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
