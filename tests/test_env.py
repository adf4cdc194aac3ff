import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from tests import pgcluster

import quill_env
from quill_env import EnvStateError
from quill_env.prompt import build_messages
from quill_env.registration import REGISTERED
from quill_env.variants import VariantBuilder

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


def test_check_env_on_duckdb(shop_suite):
    """The same suites on DuckDB: the env passes Gymnasium's checker and scores a reference."""
    pytest.importorskip("duckdb")
    env = gym.make("Quill-v1", suite="shop", scale="small", engine="duckdb")
    assert env.unwrapped.engine == "duckdb"
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["engine"] == "DuckDB"
    assert "Database schema (DuckDB):" in build_messages(obs)[-1]["content"]  # the model is told
    task = env.unwrapped.task
    _obs, reward, terminated, _truncated, info = env.step(task.reference)
    assert terminated and info["verdict"] in ("improved", "no_gain") and reward >= 0
    assert info["engine"].startswith("DuckDB")
    env.close()


@pytest.mark.postgres
@pytest.mark.skipif(bool(pgcluster.unavailable()), reason=str(pgcluster.unavailable()))
def test_check_env_on_postgres(shop_suite):
    """The same suites on a PostgreSQL server: the checker passes and a reference is scored, in
    work mode and in wall mode (timed interleaved on the server)."""
    env = gym.make("Quill-v1", suite="shop", scale="small", engine="postgres")
    assert env.unwrapped.engine == "postgres"
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["engine"] == "PostgreSQL"
    assert "Database schema (PostgreSQL):" in build_messages(obs)[-1]["content"]
    task = env.unwrapped.task
    _obs, reward, terminated, _truncated, info = env.step(task.reference)
    assert terminated and info["verdict"] == "improved" and reward > 0, info["error"]
    assert info["engine"].startswith("PostgreSQL")
    env.close()
    wall = gym.make(
        "Quill-v1", suite="shop", scale="small", engine="postgres", cost="wall",
        wall=quill_env.WallOptions(min_pairs=2, max_pairs=3, time_budget=0.5),
    )  # fmt: skip
    wall.reset(options={"task_id": task.id})
    _obs, _reward, _terminated, _truncated, info = wall.step(task.reference)
    assert info["correct"] and info["cost_mode"] == "wall" and info["wall"], info
    wall.close()


def test_engine_and_database_must_agree(tmp_path, small_db):
    with pytest.raises(quill_env.ConfigError, match="is a sqlite database"):
        gym.make("Quill-v1", database=small_db, queries=["SELECT 1"], engine="duckdb")
    with pytest.raises(quill_env.UnknownNameError):
        gym.make("Quill-v1", engine="oracle")


def _rollout(seed, actions):
    env = gym.make("Quill-v1", scale="small")
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
    env = gym.make("Quill-v1", suite="shop", scale="small")
    obs, info = env.reset(seed=0)
    assert set(obs) == {"schema", "query", "plan", "engine"}
    assert obs["engine"] == "SQLite"
    assert "CREATE TABLE users" in obs["schema"] and "rows" in obs["schema"]
    assert obs["plan"].strip()
    assert info["task_id"].startswith("shop/")
    assert env.observation_space.contains(obs)


def test_step_before_reset_raises(shop_suite):
    env = gym.make("Quill-v1", scale="small").unwrapped
    with pytest.raises(EnvStateError):
        env.step("SELECT 1")
    env.reset(seed=0)
    env.step("SELECT 1")
    with pytest.raises(EnvStateError):
        env.step("SELECT 1")  # single-step episode has ended


def test_multi_turn_feedback(shop_suite):
    env = gym.make("Quill-v1", scale="small", max_attempts=3, task_ids=["shop/coupon_lookup"])
    obs, _ = env.reset(seed=0)
    assert obs["feedback"] == ""
    obs, reward, terminated, _, info = env.step("DELETE FROM orders")
    assert info["verdict"] == "rejected" and reward == -1.0 and not terminated
    assert "verdict=rejected" in obs["feedback"]
    obs, reward, terminated, _, info = env.step(env.unwrapped.task.reference)
    assert info["verdict"] == "improved" and terminated and info["attempt"] == 2


def test_users_own_database(small_db):
    env = gym.make(
        "Quill-v1",
        database=small_db,
        queries=["SELECT id, total FROM orders WHERE coupon_code = 'SAVE-amber'"],
    )
    _obs, info = env.reset(seed=0)
    assert info["task_id"] == "user/q0"
    _, reward, _, _, info = env.step(
        "CREATE INDEX i ON orders(coupon_code); SELECT id, total FROM orders WHERE coupon_code = 'SAVE-amber'"
    )
    assert info["verdict"] == "improved" and reward > 0.25
    names = [v["name"] for v in info["variants"]]
    assert names == [*VariantBuilder.MUTATIONS, "without:orders", "twin-0", "twin-1"]


def test_bad_arguments_raise_typed_errors(shop_suite):
    with pytest.raises(quill_env.UnknownNameError, match="did you mean 'shop'"):
        gym.make("Quill-v1", suite="shopp")
    with pytest.raises(quill_env.ConfigError):
        gym.make("Quill-v1", queries=["SELECT 1"])
    with pytest.raises(quill_env.UnknownNameError):
        gym.make("Quill-v1", cost="fast")
    with pytest.raises(quill_env.UnknownNameError):
        gym.make("Quill-v1", budget_factr=3)


def test_wall_mode_reports_interval(shop_suite):
    env = gym.make(
        "Quill-wall-v1",
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
        "import sys, quill_env, gymnasium as gym; gym.make('Quill-v1');"
        "heavy = [m for m in ('torch', 'trl', 'transformers', 'duckdb', 'psycopg', 'ray', 'verifiers', 'fastapi') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- issue: a user's first day -------------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "sync", "async"])
def test_vector_envs_carry_text_and_score_every_step(shop_suite, mode):
    kwargs = {} if mode is None else {"vectorization_mode": mode}
    if mode is not None:
        kwargs["vector_kwargs"] = {"autoreset_mode": "SameStep"}
    envs = gym.make_vec("Quill-shop-v1", num_envs=2, scale="small", **kwargs)
    try:
        obs, _ = envs.reset(seed=0)
        assert all(q.startswith("SELECT") for q in obs["query"]), obs["query"]
        for _ in range(2):  # SAME_STEP: every step is scored, none is spent on a reset
            obs, _, terminated, _, infos = envs.step(list(obs["query"]))
            assert all(terminated)
            verdicts = list(infos.get("final_info", infos)["verdict"])
            assert set(verdicts) <= {"unchanged", "no_gain", "improved"}, verdicts
            assert all(q.startswith("SELECT") for q in obs["query"])
    finally:
        envs.close()


def test_default_vector_env_is_quills(shop_suite):
    envs = gym.make_vec("Quill-shop-v1", num_envs=2, scale="small")
    try:
        assert envs.metadata["autoreset_mode"].value == "SameStep"
    finally:
        envs.close()


def test_text_spaces_admit_unicode():
    env = gym.make("Quill-shop-v1", scale="small").unwrapped
    assert env.action_space.contains("SELECT name FROM users WHERE city = '東京' -- it’s fine")
    assert env.observation_space["query"].contains("SELECT 'ü' FROM t")
    assert not env.action_space.contains("SELECT '\ud800'")


def test_echoing_the_observation_is_unchanged(shop_suite):
    """The observation's '-- the application reads only' comment never changes identity."""
    task = next(t for t in shop_suite.tasks if t.output_columns)
    env = gym.make("Quill-shop-v1", scale="small")
    obs, _ = env.reset(options={"task_id": task.id})
    assert "-- the application reads only" in obs["query"]
    _, reward, _, _, info = env.step(obs["query"])
    assert info["verdict"] == "unchanged" and reward == 0.0


def test_select_star_with_an_index_is_judged_by_the_columns_read(shop_suite):
    task = next(t for t in shop_suite.tasks if t.output_columns and t.query.startswith("SELECT *"))
    env = gym.make("Quill-shop-v1", scale="small")
    env.reset(options={"task_id": task.id})
    indexes = "\n".join(
        line for line in task.reference.splitlines() if line.upper().startswith("CREATE INDEX")
    )
    _, _, _, _, info = env.step(f"{indexes}\n{task.query}")
    assert info["correct"], info["error"]


def test_runners_are_bounded_and_shared(shop_suite, monkeypatch):
    from quill_env.runners import RunnerCache, runner_cache

    small = RunnerCache(maxsize=2)
    monkeypatch.setattr("quill_env.env.runner_cache", lambda: small)
    env = gym.make("Quill-shop-v1", scale="small").unwrapped
    for task in shop_suite.tasks[:4]:
        env.reset(options={"task_id": task.id})
    assert len(small) == 2
    assert runner_cache() is runner_cache()


def test_typos_get_did_you_mean():
    with pytest.raises(quill_env.UnknownNameError, match="max_attempts"):
        gym.make("Quill-shop-v1", max_attempt=3)
    with pytest.raises(quill_env.UnknownNameError, match="shop/coupon_lookup"):
        gym.make("Quill-shop-v1", task_ids=["shop/coupon_lookp"])


def test_v0_is_retired():
    with pytest.raises(gym.error.DeprecatedEnv, match="Quill-v1"):
        gym.make("Quill-v0")


def test_a_runner_evicted_between_reset_and_step_is_rebuilt(shop_suite, monkeypatch):
    from quill_env.runners import RunnerCache

    tiny = RunnerCache(maxsize=1)
    monkeypatch.setattr("quill_env.env.runner_cache", lambda: tiny)
    env = gym.make("Quill-shop-v1", scale="small").unwrapped
    task, other = shop_suite.tasks[:2]
    env.reset(options={"task_id": task.id})
    env.runner(other)  # evicts and closes the episode's runner
    _, _, _, _, info = env.step(task.query)
    assert info["verdict"] == "unchanged" and info["task_id"] == task.id
