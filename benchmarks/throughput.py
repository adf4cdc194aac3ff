"""Throughput at scale (issue: quill bench), measured side by side in one run.

Writes benchmarks/results/throughput.json with, for the shop suite (split "all", a fixed task
list, reference actions), steps per second of:
- one ``Quill-v1`` env;
- ``SyncVectorEnv`` of 2 envs;
- ``AsyncVectorEnv`` of 2 envs (``shared_memory=False``, autoreset SAME_STEP);
- the evaluation process pool (quill_agents.leaderboard.pool, on quill_env.workers.WorkerPool)
  with 1 and 2 spawned workers;
- the served environment (``quill serve`` in its own process, the ``serve`` extra) with 1, 4 and
  16 concurrent WebSocket sessions (``quill_env.serve.QuillClient``, one thread each);
- the same evaluation jobs on Ray actors (``quill_env.ray_pool.RayPool``, the ``ray`` extra) with
  1 and 2 actors of a local Ray instance;
each after a warm-up (every baseline computed) and each against the bare-execution limit: the
same candidate executions run directly through the backend (benchmarks/common.py ``bare_seconds``),
measured in the same run. Target: 2 workers reach at least 1.7x one worker.
Also: the first vs the repeated evaluation of a task (the repeat must not re-run the slow query)
and the peak RSS of every worker.

Run: .venv/bin/python benchmarks/throughput.py [--scale medium] [--passes 2] [--rounds 5]
     [--no-served] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import apsw
import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

import quill_env
from common import bare_seconds
from quill_agents.baselines import ReferenceAgent
from quill_agents.leaderboard.pool import Player, RunConfig, init_worker, make_jobs, peak_rss_mb, run_job
from quill_env import TaskRunner, get_suite
from quill_env.workers import WorkerPool

OUT = Path(__file__).resolve().parent / "results" / "throughput.json"
SUITE = "shop"


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident memory of another process (Linux VmHWM), else its current RSS via psutil."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except Exception:
        return None


def make_env(scale: str):
    return gym.make("Quill-v1", suite=SUITE, split="all", scale=scale)


class EnvFactory:
    """A picklable env constructor (AsyncVectorEnv ships it to its workers)."""

    def __init__(self, scale: str) -> None:
        self.scale = scale

    def __call__(self):
        return make_env(self.scale)


# --- measurements ----------------------------------------------------------------------------


def bare_limit(tasks, scale: str, repeats: int) -> dict[str, float]:
    """Median bare seconds of every task's reference (warm runners)."""
    suite = get_suite(SUITE)
    out = {}
    for task in tasks:
        runner = TaskRunner.from_suite(suite, task, scale)
        _ = runner.baseline
        out[task.id] = statistics.median(bare_seconds(runner, task.reference) for _ in range(repeats))
        runner.close()
    return out


def against_bare(steps: list[str], seconds: float, bare: dict[str, float], workers: int) -> dict:
    bare_total = sum(bare[t] for t in steps)
    sps = len(steps) / seconds
    bare_sps = len(steps) / bare_total
    return {
        "steps": len(steps),
        "seconds": round(seconds, 4),
        "steps_per_s": round(sps, 2),
        "bare_steps_per_s_one_core": round(bare_sps, 2),
        "bare_steps_per_s_limit": round(bare_sps * workers, 2),
        "share_of_bare_limit": round(sps / (bare_sps * workers), 4),
    }


class SingleEnv:
    """One ``Quill-v1`` env stepping the task list in order."""

    workers = 1

    def __init__(self, tasks, scale: str, passes: int) -> None:
        self.tasks, self.passes = tasks, passes
        self.env = make_env(scale)

    def warm(self) -> None:
        for task in self.tasks:
            self.env.reset(options={"task_id": task.id})
            self.env.step(task.reference)

    def round(self) -> list[str]:
        steps = []
        for _ in range(self.passes):
            for task in self.tasks:
                self.env.reset(options={"task_id": task.id})
                self.env.step(task.reference)
                steps.append(task.id)
        return steps

    def rss(self) -> dict:
        return {"main": round(peak_rss_mb(), 1)}

    def close(self) -> None:
        self.env.close()


class VectorEnv:
    """``SyncVectorEnv`` or ``AsyncVectorEnv`` (shared_memory=False) of 2 envs, one-step episodes.

    Tasks come from each sub-env's seeded RNG (autoreset SAME_STEP); the action is looked up
    from the observed query, and the executed tasks are recorded for the bare limit.
    """

    def __init__(self, kind: str, tasks, scale: str, passes: int, n_envs: int = 2) -> None:
        self.kind, self.tasks, self.passes, self.n = kind, tasks, passes, n_envs
        self.agent = ReferenceAgent(tasks)
        self.by_query = {t.query.strip(): t.id for t in tasks}
        fns = [EnvFactory(scale) for _ in range(n_envs)]
        if kind == "sync":
            self.envs = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            self.envs = AsyncVectorEnv(fns, shared_memory=False, autoreset_mode=AutoresetMode.SAME_STEP)
        self.workers = n_envs if kind == "async" else 1
        self.obs = None

    def warm(self) -> None:
        for task in self.tasks:  # every sub-env computes every baseline
            self.envs.reset(options={"task_id": task.id})
            self.envs.step([task.reference] * self.n)
        self.obs, _ = self.envs.reset(seed=list(range(self.n)))

    def round(self) -> list[str]:
        steps = []
        for _ in range(self.passes * len(self.tasks) // self.n):
            queries = [q.split("\n-- the application reads only:")[0].strip() for q in self.obs["query"]]
            steps += [self.by_query[q] for q in queries]
            self.obs, _, _, _, _ = self.envs.step([self.agent.act({"query": q}) for q in self.obs["query"]])
        return steps

    def rss(self) -> dict:
        if self.kind == "async":
            return {str(p.pid): round(vm_hwm_mb(p.pid) or 0.0, 1) for p in self.envs.processes}
        return {"main": round(peak_rss_mb(), 1)}

    def close(self) -> None:
        self.envs.close()


class EvalPool:
    """The leaderboard's spawn pool; every worker is warmed with every task before timing."""

    def __init__(self, tasks, scale: str, passes: int, workers: int) -> None:
        ids = [t.id for t in tasks]
        config = RunConfig((SUITE,), scale, {"cost": "work"})
        actions = {t.id: t.reference for t in tasks}
        players = [Player(f"reference#{i}", actions=actions) for i in range(passes)]
        self.jobs = make_jobs(ids, players, workers)
        self.workers = workers
        self.pool = self.make_pool(workers, config, ids)
        self.peak: dict[str, float] = {}

    def make_pool(self, workers: int, config: RunConfig, ids: list[str]):
        self.barrier = mp.get_context("spawn").Barrier(workers + 1)
        return WorkerPool(workers, init_worker, (config, ids, self.barrier))

    def warm(self) -> None:
        # Workers start on demand: one call each starts them all, and each waits at the barrier
        # once it has computed every baseline.
        started = [self.pool.submit(os.getpid) for _ in range(self.workers)]
        self.barrier.wait()
        for future in started:
            future.result()

    def round(self) -> list[str]:
        results = list(self.pool.map(run_job, self.jobs, ordered=False))
        if not all(r.verdict == "improved" for res in results for r in res.records):
            raise RuntimeError("a reference action did not verify")
        for res in results:
            self.peak[str(res.pid)] = round(max(self.peak.get(str(res.pid), 0.0), res.peak_rss_mb), 1)
        return [r.task_id for res in results for r in res.records]

    def rss(self) -> dict:
        return dict(self.peak)

    def close(self) -> None:
        self.pool.close()


class RayEvalPool(EvalPool):
    """The same jobs on Ray actors; each actor builds every task's runner in its initializer."""

    def make_pool(self, workers: int, config: RunConfig, ids: list[str]):
        from quill_env.ray_pool import RayPool

        return RayPool(workers, init_worker, (config, ids))

    def warm(self) -> None:
        self.pool.actor_pids()  # answered once every actor's initializer (the warm-up) has run


class ServedSessions:
    """``sessions`` WebSocket sessions of one ``quill serve`` process, each on its own thread.

    A round plays every task ``passes`` times, the episodes dealt round-robin to the sessions,
    which run at once; each session has built every task's runner in the warm-up (a session
    owns its runners).
    """

    def __init__(self, url: str, tasks, passes: int, sessions: int) -> None:
        from quill_env.serve import QuillClient

        self.tasks, self.passes, self.workers = tasks, passes, 1  # one server process
        self.clients = [QuillClient(url) for _ in range(sessions)]

    def _play(self, client, tasks, out: list) -> None:
        for task in tasks:
            client.reset(task_id=task.id)
            _, _, _, _, info = client.step(task.reference)
            if info["verdict"] != "improved":
                raise RuntimeError(f"a reference action did not verify over the wire: {task.id}")
            out.append(task.id)

    def _together(self, shares) -> list[str]:
        outs = [[] for _ in shares]
        errors = []

        def run(i: int) -> None:
            try:
                self._play(self.clients[i], shares[i], outs[i])
            except Exception as err:  # reported after the threads have joined
                errors.append(err)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(shares))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [t for out in outs for t in out]

    def warm(self) -> None:
        self._together([self.tasks] * len(self.clients))

    def round(self) -> list[str]:
        episodes = [t for _ in range(self.passes) for t in self.tasks]
        n = len(self.clients)
        return self._together([episodes[i::n] for i in range(n)])

    def rss(self) -> dict:
        return {}

    def close(self) -> None:
        for client in self.clients:
            client.close()


class Server:
    """``quill serve`` in a process of its own, on a free port of 127.0.0.1."""

    def __init__(self, scale: str, max_sessions: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "quill_cli", "serve", "--port", str(port), "--suite", SUITE,
                   "--split", "all", "--scale", scale, "--max-sessions", str(max_sessions)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("quill serve did not start")
            time.sleep(0.1)

    def peak_rss_mb(self) -> float | None:
        return vm_hwm_mb(self.process.pid)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def _available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def cpu_control(n: int = 5_000_000) -> dict:
    """Pure-Python CPU work in 1 vs 2 processes: the scaling this machine allows right now."""
    start = time.perf_counter()
    _burn(n)
    one = time.perf_counter() - start
    with WorkerPool(2) as pool:
        list(pool.map(_burn, [10, 10]))
        start = time.perf_counter()
        list(pool.map(_burn, [n, n]))
        two = time.perf_counter() - start
    return {"one_process_s": round(one, 3), "two_processes_twice_the_work_s": round(two, 3),
            "scaling": round(2 * one / two, 3)}  # fmt: skip


def measure(rigs: dict, bare, rounds: int) -> dict:
    """Warm every rig, then run ``rounds`` rounds, rotating through the rigs (fair under noise)."""
    out = {}
    for name, rig in rigs.items():
        start = time.perf_counter()
        rig.warm()
        out[name] = {"warmup_s": round(time.perf_counter() - start, 3), "rounds_s": []}
    steps = {}
    for _ in range(rounds):
        for name, rig in rigs.items():
            start = time.perf_counter()
            steps[name] = rig.round()
            out[name]["rounds_s"].append(round(time.perf_counter() - start, 4))
    for name, rig in rigs.items():
        best = min(out[name]["rounds_s"])
        median = statistics.median(out[name]["rounds_s"])
        out[name].update(against_bare(steps[name], best, bare, rig.workers))
        out[name]["steps_per_s_median_round"] = round(len(steps[name]) / median, 2)
        out[name]["peak_rss_mb"] = rig.rss()
        rig.close()
    return out


def baseline_caching(tasks, scale: str) -> dict:
    """First evaluation (cold caches), a repeat in the same runner (memory cache), and a new
    runner in a new process's shoes (disk cache): only the cold one may run the slow query."""
    suite = get_suite(SUITE)
    rows = {}
    previous = os.environ.get("QUILL_CACHE")
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["QUILL_CACHE"] = fresh  # no baseline on disk yet
        try:
            for task in tasks:
                timings, runs = [], []
                for runner_index in range(2):
                    runner = TaskRunner.from_suite(suite, task, scale)
                    calls = {"n": 0}
                    original = runner._run_original

                    def counted(backend, *args, _original=original, _calls=calls, _runner=runner, **kw):
                        # the full-size runs (main database and twins), which the disk cache saves;
                        # the original's runs on the tiny one-table-emptied copies are not cached
                        _calls["n"] += backend is _runner.backend
                        return _original(backend, *args, **kw)

                    runner._run_original = counted  # counts executions of the slow original
                    for _ in range(2 - runner_index):
                        before = calls["n"]
                        start = time.perf_counter()
                        runner.evaluate(task.reference)
                        timings.append(time.perf_counter() - start)
                        runs.append(calls["n"] - before)
                    runner.close()
                rows[task.id] = {
                    "cold_s": round(timings[0], 4),
                    "repeat_same_runner_s": round(timings[1], 4),
                    "new_runner_disk_cache_s": round(timings[2], 4),
                    "slow_query_runs": {"cold": runs[0], "repeat": runs[1], "disk": runs[2]},
                }
        finally:
            if previous is None:
                os.environ.pop("QUILL_CACHE", None)
            else:
                os.environ["QUILL_CACHE"] = previous
    return {
        "per_task": rows,
        "median_cold_s": round(statistics.median(r["cold_s"] for r in rows.values()), 4),
        "median_repeat_s": round(statistics.median(r["repeat_same_runner_s"] for r in rows.values()), 4),
        "median_disk_s": round(statistics.median(r["new_runner_disk_cache_s"] for r in rows.values()), 4),
        "repeat_never_reruns_slow_query": all(
            r["slow_query_runs"]["repeat"] == 0 and r["slow_query_runs"]["disk"] == 0 for r in rows.values()
        ),
        "cold_runs_slow_query": all(r["slow_query_runs"]["cold"] > 0 for r in rows.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--passes", type=int, default=2, help="passes over the task list per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per rig")
    parser.add_argument("--bare-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the figures (default {OUT})")
    parser.add_argument("--no-served", action="store_true", help="skip the served-environment rigs")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray rigs")
    args = parser.parse_args()
    served = not args.no_served and _available("fastapi") and _available("uvicorn")
    on_ray = not args.no_ray and _available("ray")
    suite = get_suite(SUITE)
    suite.database(args.scale)
    suite.database("variant")
    tasks = [t for t in suite.split("all") if t.reference]
    started = time.time()
    control_before = cpu_control()
    bare = bare_limit(tasks, args.scale, args.bare_repeats)
    rigs = {
        "single_env": SingleEnv(tasks, args.scale, args.passes),
        "sync_vector_2": VectorEnv("sync", tasks, args.scale, args.passes),
        "async_vector_2": VectorEnv("async", tasks, args.scale, args.passes),
        "pool_1": EvalPool(tasks, args.scale, args.passes, 1),
        "pool_2": EvalPool(tasks, args.scale, args.passes, 2),
    }
    server = None
    if served:
        server = Server(args.scale, max_sessions=1 + 4 + 16)
        for n in (1, 4, 16):
            rigs[f"served_{n}"] = ServedSessions(server.url, tasks, args.passes, n)
    if on_ray:
        import ray

        # one logical CPU per actor of both rigs (they are alive together and measured in turns)
        ray.init(num_cpus=1 + 2, include_dashboard=False, logging_level="warning")
        for n in (1, 2):
            rigs[f"ray_{n}"] = RayEvalPool(tasks, args.scale, args.passes, n)
    result = {
        "quill_version": quill_env.__version__,
        "engine": f"SQLite {apsw.sqlite_lib_version()}",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "suite": {"name": suite.name, "version": suite.version, "hash": suite.hash},
        "scale": args.scale,
        "tasks": [t.id for t in tasks],
        "passes_per_round": args.passes,
        "rounds": args.rounds,
        "method": "every rig warmed (all baselines computed), then rounds rotate through the rigs; "
        "steps_per_s is from the best round, steps_per_s_median_round from the median",
        "bare_seconds_per_task": {k: round(v, 6) for k, v in bare.items()},
        **measure(rigs, bare, args.rounds),
        "baseline_caching": baseline_caching(tasks, args.scale),
    }
    if server is not None:
        result["served_server_peak_rss_mb"] = server.peak_rss_mb()
        server.close()
    if on_ray:
        ray.shutdown()
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["machine"]["cpu_scaling_control"] = {"before": control_before, "after": cpu_control()}
    one = result["pool_1"]["steps_per_s"]
    result["scaling"] = {
        "pool_2_over_pool_1": round(result["pool_2"]["steps_per_s"] / one, 3),
        "pool_2_over_pool_1_median_rounds": round(
            result["pool_2"]["steps_per_s_median_round"] / result["pool_1"]["steps_per_s_median_round"], 3
        ),
        "async_2_over_single_env": round(
            result["async_vector_2"]["steps_per_s"] / result["single_env"]["steps_per_s"], 3
        ),
        "target": 1.7,
    }
    if served:
        result["scaling"].update(
            {
                f"served_{n}_over_pool_1": round(result[f"served_{n}"]["steps_per_s"] / one, 3)
                for n in (1, 4, 16)
            }
        )
    if on_ray:
        result["scaling"]["ray_1_over_pool_1"] = round(result["ray_1"]["steps_per_s"] / one, 3)
        result["scaling"]["ray_2_over_pool_2"] = round(
            result["ray_2"]["steps_per_s"] / result["pool_2"]["steps_per_s"], 3
        )
    result["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key in rigs:
        r = result[key]
        print(f"{key:15s} {r['steps_per_s']:8.1f} steps/s  (bare limit {r['bare_steps_per_s_limit']:8.1f}; "
              f"{r['share_of_bare_limit']:.0%} of it; warm-up {r['warmup_s']:.1f}s; rss {r['peak_rss_mb']})")  # fmt: skip
    sc, bc = result["scaling"], result["baseline_caching"]
    print(f"scaling: pool 2/1 workers = {sc['pool_2_over_pool_1']:.2f}x, async 2 envs / 1 env = "
          f"{sc['async_2_over_single_env']:.2f}x (target >= 1.7)")  # fmt: skip
    if served:
        print(
            "served / pool_1: "
            + ", ".join(f"{n} sessions {sc[f'served_{n}_over_pool_1']:.2f}x" for n in (1, 4, 16))
        )
    if on_ray:
        print(
            f"ray: 1 actor / pool_1 = {sc['ray_1_over_pool_1']:.2f}x, 2 actors / pool_2 = {sc['ray_2_over_pool_2']:.2f}x"
        )
    print(f"baseline caching: cold {bc['median_cold_s'] * 1000:.1f} ms, repeat {bc['median_repeat_s'] * 1000:.1f} ms, "
          f"new runner from disk {bc['median_disk_s'] * 1000:.1f} ms (median); the slow query runs only cold: "
          f"{bc['cold_runs_slow_query'] and bc['repeat_never_reruns_slow_query']}")  # fmt: skip
    ctl = result["machine"]["cpu_scaling_control"]
    print(f"control: pure-Python CPU work scales {ctl['before']['scaling']:.2f}x / {ctl['after']['scaling']:.2f}x "
          f"on 2 processes (before / after); load average {result['machine']['load_average_at_start']}")  # fmt: skip
    print(f"wrote {args.out} in {result['seconds']}s")


if __name__ == "__main__":
    main()
