"""Scoring on Ray actors: the pool's contract, the same results as local workers, lost actors.

One local Ray instance (2 CPUs) serves the module; pools join it (``ray="local"`` reuses an
instance this process joined). Actors are started by it and inherit this process's environment,
so they see the test ``QUILL_CACHE`` and this checkout's source.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "quill-sql[ray]")')

import quill_env  # noqa: E402
from quill_agents.leaderboard import BenchConfig, parse_agent, run_bench  # noqa: E402
from quill_agents.leaderboard.pool import Player, RunConfig, init_worker, make_jobs, run_job, run_jobs  # noqa: E402
from quill_cli import main  # noqa: E402
from quill_env.errors import ConfigError, MissingExtraError  # noqa: E402
from quill_env.ray_pool import RayPool  # noqa: E402
from quill_env.workers import make_pool  # noqa: E402

TASKS = ["shop/pending_in_january", "shop/orders_on_a_day", "shop/one_user_totals"]
VOLATILE = {"created", "pool", "timestamp", "wall", "timing", "wall_ci"}
"""Fields that differ between two identical runs (clocks, process ids; see ``comparable``); so do ``*seconds``."""

_STATE: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def _remember(tag: str) -> None:
    _STATE.append(tag)


def _state(x: int) -> tuple[int, list[str], int]:
    return os.getpid(), list(_STATE), x


def _environment(_: object) -> tuple[str | None, str]:
    return os.environ.get("QUILL_CACHE"), quill_env.__file__


def _slow_square(x: int) -> int:
    time.sleep(0.2)
    return x * x


def _fail(x: int) -> None:
    raise ValueError(f"bad item {x}")


def _run_job_dying_once(marker: str, job):
    """:func:`run_job`, but the first call to get here kills its actor's process mid-job."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return run_job(job)
    os.close(fd)
    os._exit(1)


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE and not k.endswith("seconds")}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _canonical(data: dict) -> str:
    return json.dumps(_stable(data), sort_keys=True)


# --- the pool --------------------------------------------------------------------------------


def test_actors_run_the_initializer_once_and_keep_its_state():
    with RayPool(2, _remember, ("warm",)) as pool:
        first = list(pool.map(_state, range(6)))
        second = [pool.submit(_state, i).result() for i in range(3)]
        unordered = sorted(x for _, _, x in pool.map(_state, range(5), ordered=False))
    assert [x for _, _, x in first] == list(range(6))
    assert all(state == ["warm"] for _, state, _ in first + second)
    assert len({pid for pid, _, _ in first + second}) == 2
    assert unordered == list(range(5))


def test_actors_see_the_callers_cache_and_source():
    with make_pool(1, ray="local") as pool:
        cache, source = pool.submit(_environment, None).result()
    assert cache == os.environ["QUILL_CACHE"]
    assert Path(source) == Path(quill_env.__file__)


def test_a_failing_call_raises_its_own_exception_type():
    with RayPool(1) as pool:
        with pytest.raises(ValueError, match="bad item 3"):
            pool.submit(_fail, 3).result()
        assert pool.submit(_slow_square, 2).result() == 4  # the actor survives


def test_a_killed_actor_is_replaced_and_its_calls_retried_once():
    with RayPool(2, _remember, ("warm",)) as pool:
        before = pool.actor_pids()
        futures = [pool.submit(_slow_square, i) for i in range(8)]
        pool.kill_actor(0)
        assert [f.result() for f in futures] == [i * i for i in range(8)]
        after = pool.actor_pids()
        assert after[1] == before[1] and after[0] != before[0]
        assert all(s == ["warm"] for _, s, _ in pool.map(_state, range(4)))  # the new one is initialized


def test_a_closed_pool_refuses_work():
    pool = RayPool(1)
    pool.close()
    with pytest.raises(ConfigError, match="closed"):
        pool.submit(_slow_square, 1)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "quill-sql\[ray\]"'):
        make_pool(2, ray="local")


def test_ray_needs_at_least_one_actor():
    with pytest.raises(ConfigError, match="workers >= 1"):
        BenchConfig(agents=[parse_agent("identity")], workers=0, ray="local")
    with pytest.raises(ConfigError, match="workers >= 1"):
        run_jobs(RunConfig(("shop",), "small"), [], 0, ray="local")


# --- the leaderboard on Ray ------------------------------------------------------------------


def _bench(**kwargs):
    config = BenchConfig(
        agents=[parse_agent("identity"), parse_agent("reference"), parse_agent("heuristic")],
        suites=["shop"], scale="small", task_ids=TASKS, **kwargs,
    )  # fmt: skip
    return run_bench(config, run="same").to_dict()


def test_bench_on_ray_is_identical_to_local_workers(shop_suite):
    local = _bench(workers=2)
    on_ray = _bench(workers=2, ray="local")
    assert _canonical(on_ray) == _canonical(local)
    assert len(on_ray["agents"]) == 3 and all(len(a["records"]) == len(TASKS) for a in on_ray["agents"])


def test_a_killed_actor_mid_run_loses_no_record_and_duplicates_none(shop_suite, tmp_path):
    config = RunConfig(("shop",), "small", {"cost": "work"})
    players = [
        Player("identity", agent=parse_agent("identity")),
        Player("reference", agent=parse_agent("reference")),
    ]
    jobs = make_jobs(TASKS, players, 2)
    expected, _ = run_jobs(config, jobs, 0)
    marker = str(tmp_path / "died")
    with RayPool(2, init_worker, (config,)) as pool:
        results = list(pool.map(functools.partial(_run_job_dying_once, marker), jobs, ordered=False))
    assert Path(marker).exists()  # an actor did die mid-job
    got = [r for res in results for r in res.records]
    keys = sorted((r.agent, r.task_id) for r in got)
    assert keys == sorted((r.agent, r.task_id) for r in expected)  # none lost, none twice
    by_key = {(r.agent, r.task_id): _canonical(r.to_dict()) for r in expected}
    assert all(_canonical(r.to_dict()) == by_key[(r.agent, r.task_id)] for r in got)


def test_validate_on_ray_matches_in_process(shop_suite, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["bench", "--agent", "reference", "--suite", "shop", "--scale", "small", "--name", "r",
            "--out", str(out), "--no-plots", "--no-leaderboard", "--workers", "2", "--ray", "local"]  # fmt: skip
    for t in TASKS:
        argv += ["--task", t]
    assert main(argv) == 0
    assert "2 Ray actors (local)" in capsys.readouterr().out
    sub = next(out.glob("r/*.submission.jsonl"))
    reports = []
    for extra in (["--workers", "0"], ["--workers", "2", "--ray", "local"]):
        path = tmp_path / f"report{len(reports)}.json"
        assert main(["validate", str(sub), "--json", str(path), *extra]) == 0
        reports.append(json.loads(path.read_text()))
    assert reports[0]["ok"] and _canonical(reports[1]) == _canonical(reports[0])


# --- the trainers' reward --------------------------------------------------------------------


def test_environment_reward_scores_on_a_ray_pool_as_in_process(shop_suite):
    from quill_agents.trainers import rewards

    task = TASKS[0]
    reference = shop_suite.task(task).reference
    task_ids = [task, task, TASKS[1], task]
    actions = [reference, "SELECT 1", "SELEC nonsense", "SELECT COUNT(*) FROM orders"]
    options = {"num_variants": 2}
    local = rewards.EnvironmentReward(suites=["shop"], scale="small", eval_options=options, workers=0)
    on_ray = rewards.EnvironmentReward(
        suites=["shop"], scale="small", eval_options=options, workers=2, ray_address="local"
    )
    try:
        want = [(r.verdict, r.reward, r.speedup) for r in local.score(task_ids, actions)]
        got = [(r.verdict, r.reward, r.speedup) for r in on_ray.score(task_ids, actions)]
        assert isinstance(on_ray._pool, RayPool)
        # the multi-turn tools run on the same actors
        tool = rewards.tool_environment_factory(reward=on_ray)()
        tool.reset(task_id=task)
        answer = asyncio.run(tool.dry_run(reference))
    finally:
        on_ray.close()
        local.close()
    assert got == want
    assert answer.startswith("verdict=improved")
    with pytest.raises(ConfigError, match="workers >= 1"):
        rewards.EnvironmentReward(workers=0, ray_address="local")
    assert want[0][0].value == "improved"


# --- quill generate --------------------------------------------------------------------------


def _score_dying_once(marker: str, *args):
    """:func:`score_candidates`, but the first call to get here kills its actor's process."""
    from quill_agents.generate import score_candidates

    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return score_candidates(*args)
    os.close(fd)
    os._exit(1)


def test_generate_on_ray_stores_the_same_records_through_a_lost_actor(tmp_path, monkeypatch):
    from quill_agents import generate as loop
    from quill_agents.store import DRAWS_FILE, RECORDS_FILE, read_jsonl

    base = {"target": 6, "suites": ("shop",), "scales": ("small",), "seed": 7}
    loop.generate(loop.GenerateConfig(out=str(tmp_path / "local"), **base))
    marker = tmp_path / "died"
    monkeypatch.setattr(loop, "score_candidates", functools.partial(_score_dying_once, str(marker)))
    loop.generate(loop.GenerateConfig(out=str(tmp_path / "ray"), workers=2, ray="local", **base))
    assert marker.exists()  # an actor died while it scored a draw's candidates

    def read(run: str, name: str) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k not in ("timestamp", "seconds")}
            for r in read_jsonl(tmp_path / run / name)
        ]

    assert len(read("ray", RECORDS_FILE)) == 6
    assert read("ray", RECORDS_FILE) == read("local", RECORDS_FILE)  # none lost, none twice, the same
    assert read("ray", DRAWS_FILE) == read("local", DRAWS_FILE)
