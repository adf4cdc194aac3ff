"""The served environment (issue 13): real uvicorn servers on 127.0.0.1, real HTTP and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from tests.interpreters import interpreter, needs  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from quill_env.env import SQLOptEnv  # noqa: E402
from quill_env.errors import MissingExtraError, ServeError  # noqa: E402
from quill_env.serve import MAX_MESSAGE_BYTES, QuillClient, SessionManager, create_app, make_server  # noqa: E402

ENV = {"suite": "shop", "split": "train", "scale": "small"}
TASK = "shop/coupon_lookup"


class Served:
    """A uvicorn server on a free port of 127.0.0.1, in a background thread."""

    def __init__(self, env=None, **app_options):
        self.app = create_app(**(ENV if env is None else env), **app_options)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(self.app, "127.0.0.1", self.port, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        _until(lambda: self.server.started, "the server did not start")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health").json()

    def raw(self):
        return connect(f"ws://127.0.0.1:{self.port}/ws", proxy=None, max_size=None)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def _until(predicate, message, deadline_s=60.0):
    """Wait for ``predicate()`` (a generous deadline against hanging, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, message
        time.sleep(0.02)


def _ask(ws, message) -> dict:
    ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))
    return json.loads(ws.recv(timeout=60))


@pytest.fixture(scope="module")
def served(shop_suite):
    s = Served(max_sessions=20)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def small(shop_suite):
    """A server with room for two sessions."""
    s = Served(max_sessions=2)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def local():
    return SQLOptEnv(**ENV)


def test_health_schema_and_metadata(served, local):
    health = served.health()
    assert health["status"] == "healthy" and health["max_sessions"] == 20
    schema = httpx.get(f"{served.url}/schema").json()
    assert schema["action"]["required"] == ["sql"]
    assert schema["action"]["properties"]["sql"]["maxLength"] == local.action_space.max_length
    assert set(schema["observation"]["properties"]) == set(local.observation_space.spaces)
    assert httpx.get(f"{served.url}/metadata").json()["task_ids"] == [t.id for t in local.tasks]


def test_websocket_round_trip_matches_a_local_env(served, local):
    task = local.find_task(TASK)
    want_obs, want_info = local.reset(options={"task_id": TASK})
    _, want_reward, want_term, _, want_step = local.step(task.reference)
    with QuillClient(served.url) as env:
        obs, info = env.reset(task_id=TASK, episode_id="ep-1")
        assert (
            obs == want_obs
            and info["task_id"] == TASK
            and info["baseline_cost"] == want_info["baseline_cost"]
        )
        assert env.state() == {
            "session_id": env.state()["session_id"],
            "episode_id": "ep-1",
            "step_count": 0,
            "task_id": TASK,
            "done": False,
            "max_attempts": 1,
        }
        obs, reward, terminated, truncated, info = env.step(task.reference)
        assert reward == want_reward > 0
        assert (terminated, truncated) == (want_term, False)
        assert info["verdict"] == want_step["verdict"] == "improved"
        assert info["reward_terms"] == want_step["reward_terms"]
        assert env.state()["step_count"] == 1 and env.state()["done"]
        with pytest.raises(ServeError, match="reset") as err:
            env.step(task.reference)  # the single-step episode has ended
        assert err.value.code == "STATE_ERROR"


def test_an_over_long_action_is_paid_as_a_local_env_pays_it(served, local):
    too_long = "SELECT 1 -- " + "x" * local.action_space.max_length
    local.reset(options={"task_id": TASK})
    _, want_reward, *_, want = local.step(too_long)
    with QuillClient(served.url) as env:
        env.reset(task_id=TASK)
        _, reward, terminated, _, info = env.step(too_long)
    assert (reward, info["verdict"]) == (want_reward, want["verdict"]) == (want_reward, "rejected")
    assert reward < 0 and terminated


def test_sixteen_concurrent_sessions_are_isolated(served, local):
    # eight tasks, two sessions on each (one identity, one reference), every episode open at once
    tasks = [t for t in local.tasks if t.reference][:8]
    jobs = [(t, action) for t in tasks for action in (t.query, t.reference)]
    assert len(jobs) == 16
    expected = []
    for task, action in jobs:
        obs, _ = local.reset(options={"task_id": task.id})
        expected.append((obs["query"], local.step(action)[1]))
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def episode(i: int) -> None:
        task, action = jobs[i]
        try:
            with QuillClient(served.url) as env:
                obs, info = env.reset(task_id=task.id)
                barrier.wait(60)
                state = env.state()
                _, reward, terminated, _, step_info = env.step(action)
                results[i] = (
                    obs["query"],
                    info["task_id"],
                    state["task_id"],
                    step_info["task_id"],
                    reward,
                    terminated,
                )
        except Exception as err:  # reported by the main thread
            barrier.abort()
            results[i] = err

    threads = [threading.Thread(target=episode, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for (task, _), (query, reward), got in zip(jobs, expected, results):
        assert not isinstance(got, Exception), got
        assert got == (query, task.id, task.id, task.id, reward, True)
    _until(lambda: served.health()["active_sessions"] == 0, "sessions were not freed")


def test_a_full_server_refuses_then_accepts_again(small):
    first, second = QuillClient(small.url), QuillClient(small.url)
    first.reset(task_id=TASK)
    second.reset(task_id=TASK)
    assert small.health()["active_sessions"] == 2
    third = QuillClient(small.url)
    with pytest.raises(ServeError, match="full") as err:
        third.reset(task_id=TASK)
    assert err.value.code == "CAPACITY_REACHED"
    third.close()
    response = httpx.post(f"{small.url}/reset", json={"task_id": TASK})
    assert response.status_code == 503 and response.json()["code"] == "CAPACITY_REACHED"
    first.close()  # returns once the server has freed the slot
    with QuillClient(small.url) as again:
        assert again.reset(task_id=TASK)[1]["task_id"] == TASK
        _, reward, *_ = second.step("SELECT 1")  # the other session was untouched
        assert reward < 0
    second.close()
    _until(lambda: small.health()["active_sessions"] == 0, "sessions were not freed")


@pytest.mark.parametrize("when", ["after_reset", "during_step"])
def test_a_dropped_client_frees_its_session(small, when):
    with small.raw() as ws:
        assert _ask(ws, {"type": "reset", "data": {"task_id": TASK}})["type"] == "observation"
        assert small.health()["active_sessions"] == 1
        if when == "during_step":
            ws.send(json.dumps({"type": "step", "data": {"sql": "SELECT * FROM orders"}}))
        ws.socket.close()  # no close frame, no close message: the connection just goes away
    _until(lambda: small.health()["active_sessions"] == 0, "a dropped client kept its session")
    with QuillClient(small.url) as env:  # the server still serves
        assert env.reset(task_id=TASK)[1]["task_id"] == TASK


def test_malformed_websocket_messages_are_errors_and_the_connection_survives(served, local):
    with served.raw() as ws:
        _malformed(ws, local)


def _malformed(ws, local):
    cases = [
        ("not json", "INVALID_JSON"),
        ("[1, 2]", "INVALID_JSON"),
        (b"\xff\xfe", "INVALID_JSON"),
        ({"type": "fly"}, "UNKNOWN_TYPE"),
        ({"data": {}}, "UNKNOWN_TYPE"),
        ({"type": "reset", "extra": 1}, "VALIDATION_ERROR"),
        ({"type": "step", "data": {"sql": "SELECT 1"}}, "STATE_ERROR"),  # step before reset
        ({"type": "reset", "data": {"task_id": "shop/coupon_lookpu"}}, "VALIDATION_ERROR"),
        ({"type": "reset", "data": {"seed": -1}}, "VALIDATION_ERROR"),
        ({"type": "reset", "data": {"seed": "0"}}, "VALIDATION_ERROR"),
        ({"type": "reset", "data": {"options": {"task_id": TASK}}}, "VALIDATION_ERROR"),
        ({"type": "reset", "data": []}, "VALIDATION_ERROR"),
        ({"type": "step", "data": "SELECT 1"}, "VALIDATION_ERROR"),
        ({"type": "step", "data": {"sql": 5}}, "VALIDATION_ERROR"),
        ({"type": "step", "data": {"query": "SELECT 1"}}, "VALIDATION_ERROR"),
        (json.dumps({"type": "step", "data": {"sql": "x" * (MAX_MESSAGE_BYTES + 1)}}), "MESSAGE_TOO_LARGE"),
    ]
    for message, code in cases:
        reply = _ask(ws, message)
        assert reply["type"] == "error" and reply["data"]["code"] == code, (
            message if len(str(message)) < 200 else code,
            reply,
        )
        assert reply["data"]["message"]
    did_you_mean = _ask(ws, {"type": "reset", "data": {"task_id": "shop/coupon_lookpu"}})["data"]["message"]
    assert "did you mean 'shop/coupon_lookup'" in did_you_mean
    # the same connection still runs an episode, and other sessions never noticed
    assert _ask(ws, {"type": "reset", "data": {"task_id": TASK}})["type"] == "observation"
    reply = _ask(ws, {"type": "step", "data": {"sql": "DROP TABLE orders", "metadata": {"k": 1}}})
    assert reply["type"] == "observation" and reply["data"]["info"]["verdict"] == "rejected"
    assert reply["data"]["done"] is True and reply["data"]["reward"] < 0
    ws.send(json.dumps({"type": "close"}))


def test_http_sessions(served):
    url = served.url
    reset = httpx.post(f"{url}/reset", json={"task_id": TASK, "seed": 0})
    assert reset.status_code == 200
    body = reset.json()
    sid = body["session_id"]
    assert body["done"] is False and body["reward"] is None and body["observation"]["query"]
    state = httpx.get(f"{url}/state", params={"session_id": sid}).json()
    assert state["task_id"] == TASK and state["step_count"] == 0
    step = httpx.post(f"{url}/step", json={"session_id": sid, "action": {"sql": "SELECT 1"}}).json()
    assert step["done"] is True and step["info"]["verdict"] == "rejected" and step["reward"] < 0
    again = httpx.post(f"{url}/step", json={"session_id": sid, "action": {"sql": "SELECT 1"}})
    assert again.status_code == 409 and again.json()["code"] == "STATE_ERROR"
    # a new episode in the same session
    assert httpx.post(f"{url}/reset", json={"session_id": sid, "task_id": TASK}).json()["session_id"] == sid
    assert httpx.post(f"{url}/close", json={"session_id": sid}).json() == {"closed": True}
    gone = httpx.post(f"{url}/step", json={"session_id": sid, "action": {"sql": "SELECT 1"}})
    assert gone.status_code == 404 and gone.json()["code"] == "SESSION_ERROR"
    _until(lambda: served.health()["active_sessions"] == 0, "the HTTP session was not freed")


def test_malformed_http_requests_are_4xx(served):
    url = served.url
    before = served.health()["active_sessions"]
    cases = [
        (("post", "/reset"), {"content": b"{"}, 400, "INVALID_JSON"),
        (("post", "/reset"), {"json": {"task_id": "nope"}}, 422, "VALIDATION_ERROR"),
        (("post", "/reset"), {"json": {"session_id": "forged"}}, 404, "SESSION_ERROR"),
        (("post", "/step"), {"json": {"action": {"sql": "SELECT 1"}}}, 404, "SESSION_ERROR"),
        (
            ("post", "/step"),
            {"json": {"action": {"sql": "SELECT 1"}, "session_id": ["x"]}},
            404,
            "SESSION_ERROR",
        ),
        (("post", "/step"), {"json": {"sql": "SELECT 1"}}, 422, "VALIDATION_ERROR"),
        (("post", "/step"), {"content": b"x" * (MAX_MESSAGE_BYTES + 1)}, 413, "MESSAGE_TOO_LARGE"),
        (("get", "/state"), {"params": {"session_id": "forged"}}, 404, "SESSION_ERROR"),
        (("post", "/close"), {"json": {}}, 404, "SESSION_ERROR"),
    ]
    for (method, path), kwargs, status, code in cases:
        response = getattr(httpx, method)(f"{url}{path}", **kwargs)
        assert response.status_code == status, (path, kwargs.keys(), response.text[:200])
        assert response.json()["code"] == code
    sid = httpx.post(f"{url}/reset", json={"task_id": TASK}).json()["session_id"]
    missing = httpx.post(f"{url}/step", json={"session_id": sid})
    assert missing.status_code == 422 and "action" in missing.json()["detail"]
    httpx.post(f"{url}/close", json={"session_id": sid})
    _until(lambda: served.health()["active_sessions"] == before, "a refused reset kept a session")


def test_idle_http_sessions_expire():
    now = [0.0]
    manager = SessionManager(ENV, max_sessions=1, session_timeout=10.0, clock=lambda: now[0])

    async def scenario():
        session = await manager.open("http")
        with pytest.raises(ServeError, match="full"):
            await manager.open("http")
        now[0] = 5.0
        assert await manager.reap() == 0
        now[0] = 20.0
        assert await manager.reap() == 1 and manager.active == 0
        with pytest.raises(ServeError, match="expired"):
            manager.get(session.id)
        await manager.open("ws")  # the slot is free again; WebSocket sessions end with their socket
        assert await manager.reap() == 0

    asyncio.run(scenario())


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(MissingExtraError, match=r"quill-sql\[serve\]"):
        create_app(**ENV)


def test_quill_serve_command(monkeypatch, capsys):
    from quill_cli.main import build_parser, main

    args = build_parser().parse_args(["serve", "--port", "0", "--max-sessions", "3", "--suite", "shop"])
    assert (args.port, args.max_sessions, args.host) == (0, 3, "127.0.0.1")
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", "--suite", "shop", "--scale", "small"]) == 2
    assert 'pip install "quill-sql[serve]"' in capsys.readouterr().err
    assert main(["serve", "--suite", "nope"]) == 2
    assert main(["serve", "--query", "SELECT 1"]) == 2
    assert "--query needs --database" in capsys.readouterr().err


def test_a_users_own_database_is_served(tmp_path):
    """``quill serve --database FILE --query SQL``: the user's queries are the tasks."""
    import apsw

    path = tmp_path / "library.db"
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE loan (id INTEGER PRIMARY KEY, member INTEGER, days INTEGER)")
    db.executemany("INSERT INTO loan (member, days) VALUES (?, ?)", [(i % 97, i % 30) for i in range(5000)])
    db.close()
    slow = "SELECT member, COUNT(*) FROM loan WHERE days > 20 GROUP BY member ORDER BY member"
    server = Served({"database": str(path), "queries": [slow]}, max_sessions=1)
    mine = SQLOptEnv(database=str(path), queries=[slow])
    try:
        mine.reset(seed=0)
        _, want, *_ = mine.step("CREATE INDEX d ON loan(days, member);\n" + slow)
        with QuillClient(server.url) as env:
            obs, _ = env.reset(seed=0)
            assert obs["query"].startswith(slow)
            _, reward, _, _, info = env.step("CREATE INDEX d ON loan(days, member);\n" + slow)
    finally:
        mine.close()
        server.stop()
    assert reward == want and info["verdict"] in ("improved", "no_gain", "unchanged")


def test_importing_quill_env_does_not_import_the_server():
    code = "import sys, quill_env; print([m for m in ('quill_env.serve', 'fastapi', 'uvicorn', 'websockets') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


OPENENV = interpreter("QUILL_OPENENV_PYTHON", "import openenv, quill_env")


@needs(
    OPENENV,
    "QUILL_OPENENV_PYTHON",
    'python -m venv .venv-openenv && .venv-openenv/bin/pip install -e . openenv==0.10.0 "fastmcp-slim[client]"',
)
def test_openenvs_own_client_plays_episodes_on_the_server(served, local):
    """The wire format is OpenEnv's: its GenericEnvClient (WebSocket) resets, steps and reads state."""
    task = local.find_task(TASK)
    actions = [task.reference, task.query, "SELECT 1"]
    out = subprocess.run(
        [OPENENV, str(Path(__file__).with_name("openenv_check.py")), served.url, TASK, *actions],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    episodes = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(episodes) == len(actions)
    for sql, episode in zip(actions, episodes):
        local.reset(options={"task_id": TASK})
        _, want, *_ = local.step(sql)
        assert episode["reward"] == want and episode["done"] and not episode["reset_done"]
        assert episode["query"] == task.query and episode["state"]["task_id"] == TASK
        assert episode["state"]["step_count"] == 1
    assert episodes[0]["reward"] > 0 >= episodes[2]["reward"]


def test_a_multi_attempt_episode_over_the_wire_is_the_local_one(shop_suite):
    """``quill serve --max-attempts 2``: feedback after a failed attempt, the same rewards, then done."""
    server = Served(max_sessions=2, max_attempts=2)
    mine = SQLOptEnv(**ENV, max_attempts=2)
    try:
        task = mine.find_task(TASK)
        attempts = ["SELECT 1", task.reference]
        mine.reset(options={"task_id": TASK})
        want = []
        for sql in attempts:
            obs, reward, terminated, truncated, info = mine.step(sql)
            want.append((obs.get("feedback"), reward, terminated, truncated, info["verdict"]))
        with QuillClient(server.url) as env:
            env.reset(task_id=TASK)
            got = []
            for sql in attempts:
                obs, reward, terminated, truncated, info = env.step(sql)
                got.append((obs.get("feedback"), reward, terminated, truncated, info["verdict"]))
            assert env.state()["max_attempts"] == 2 and env.state()["done"]
    finally:
        mine.close()
        server.stop()
    assert got == want
    assert want[0][0] and not want[0][2] and want[1][2] and want[1][4] == "improved"
