"""Quill's verifiers taskset driven by the verifiers package itself (run by test_verifiers.py).

Run with an interpreter that has ``verifiers`` 0.4 and Quill installed; prints one JSON object
of what it found, and exits non-zero on a failed check.

``python verifiers_check.py ENGINE`` scores finished traces with verifiers' ``Task.score``.
``python verifiers_check.py rollouts`` plays whole episodes through verifiers' own rollout
machinery: the taskset's chat harness (a program verifiers prepares with ``uv``, which must be on
``PATH`` next to this interpreter), its interception server, and a scripted model behind an
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import verifiers.v1 as vf
from verifiers.v1.clients import ModelContext

import quill_verifiers as qv
from quill_env import SQLOptEnv
from quill_env.errors import ConfigError
from quill_env.prompt import extract_sql, format_completion
from quill_env.reward_functions import RewardFunction


def trace_of(task: vf.Task, reply: str) -> vf.Trace:
    """A finished trace whose final reply is ``reply`` (as verifiers' offline validate builds one)."""
    return vf.Trace(
        task=vf.TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
        agent=vf.AgentInfo(config=vf.AgentConfig(), name="check", trainable=False),
        root_reply=reply,
    )


async def main(engine: str) -> dict:
    config = {
        "suites": ["shop"],
        "split": "test",
        "scale": "small",
        "engine": engine,
        "options": {"num_variants": 2},
    }
    env = qv.load_environment(**config)
    tasks = list(env.taskset)
    assert tasks and all(isinstance(t, qv.QuillTask) for t in tasks), tasks
    assert len({t.key for t in tasks}) == len(tasks)
    reward = RewardFunction(["shop"], "small", {"num_variants": 2}, engine=engine)
    checked = []
    other = tasks[1]
    for task in tasks[:2]:
        runner = reward.runner(task.key)
        assert runner.task.query in task.data.prompt_text  # the prompt is the observation
        assert (runner.task.reference or "\0") not in json.dumps(
            task.data.model_dump()
        )  # no answer in the row
        replies = {
            "reference": format_completion(runner.task.reference),
            "identity": format_completion(runner.task.query),
            "garbage": "I would add an index.",
            "drop": format_completion("DROP TABLE users"),
            "other_task": format_completion(
                reward.runner(other.key).task.reference if task is not other else "SELECT 1"
            ),
        }
        for name, reply in replies.items():
            trace = trace_of(task, reply)
            await task.score(trace)
            got = trace.rewards["quill"].value
            want = reward(None, [reply], [task.key])[0]
            assert got == want, (task.key, name, got, want)
            assert trace.info["quill_verdict"] and "quill_correct" in trace.metrics
            checked.append(
                {"task": task.key, "reply": name, "reward": got, "verdict": trace.info["quill_verdict"]}
            )
        assert await task.validate() is True
    return {"engine": engine, "tasks": len(tasks), "checked": checked}


class ScriptedModel(ThreadingHTTPServer):
    """An OpenAI-compatible chat server that answers with the replies it is given, in order."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ModelHandler)
        self.replies: list[str] = []
        self.requests: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ModelHandler(BaseHTTPRequestHandler):
    server: ScriptedModel

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.requests.append(body)
        text = self.server.replies.pop(0) if self.server.replies else "no more replies"
        created, model = int(time.time()), body.get("model")
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            return self._send(
                "application/json",
                json.dumps(
                    {
                        "id": "chat",
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode(),
            )
        chunks = [
            {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": "stop"},
        ]
        events = [
            {
                "id": "chat",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [c],
            }
            for c in chunks
        ]
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self._send("text/event-stream", data.encode())

    def _send(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def local_return(task_id: str, replies: list[str], max_attempts: int) -> tuple[float, int]:
    """The return of the same replies in ``gym``'s env, and how many of them it took."""
    env = SQLOptEnv(
        suite="shop",
        split="all",
        scale="small",
        task_ids=[task_id],
        max_attempts=max_attempts,
        num_variants=2,
    )
    env.reset(options={"task_id": task_id})
    total, steps = 0.0, 0
    for reply in replies:
        _, reward, terminated, truncated, _ = env.step(extract_sql(reply))
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            break
    return total, steps


async def rollouts() -> dict:
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["QUILL_CHECK_KEY"] = "not-a-secret"
    model = ScriptedModel()
    ctx = ModelContext(
        model="scripted", client=vf.EvalClientConfig(base_url=model.url, api_key_var="QUILL_CHECK_KEY")
    )
    config = {"suites": ["shop"], "split": "test", "scale": "small", "options": {"num_variants": 2}}
    reward = RewardFunction(["shop"], "small", {"num_variants": 2})
    tasks = {t.key: t for t in qv.load_environment(**config).taskset}
    first, second = list(tasks)[:2]
    reference = format_completion(reward.runner(first).task.reference)
    wrong = format_completion(reward.runner(second).task.reference)  # another task's answer
    identity = format_completion(reward.runner(first).task.query)
    episodes = {
        "one_reference": (1, [reference]),
        "one_wrong": (1, [wrong]),
        "wrong_identity_reference": (3, [wrong, identity, reference]),
        "reference_first": (3, [reference, identity]),
        "never_right": (2, ["I cannot do that.", wrong]),
    }
    played = []
    for name, (attempts, replies) in episodes.items():
        env = qv.load_environment(max_attempts=attempts, **config)
        assert type(env).__name__ == "QuillEnv", type(env)
        model.replies, model.requests = list(replies), []
        async with env.serving():
            episode = await env.run_episode(tasks[first], ctx)
        assert episode.ok, (name, episode.errors, [t.errors for t in episode.traces])
        (trace,) = episode.traces
        want, steps = local_return(first, replies, attempts)
        got = trace.rewards["quill"].value
        assert abs(got - want) < 1e-9, (name, got, want)
        assert len(model.requests) == steps == trace.metrics["quill_attempts"], (
            name,
            len(model.requests),
            steps,
        )
        for request in model.requests:
            assert not request.get("tools"), request.get("tools")  # the chat harness offers none
            text = json.dumps(request["messages"])
            assert "coding agent" not in text and reward.runner(first).task.query in text
            assert reward.runner(first).task.reference not in json.dumps(request["messages"][:2])
        for later in model.requests[1:]:
            last = later["messages"][-1]
            assert last["role"] == "user" and "Previous attempt: verdict=" in str(last["content"]), last
        played.append(
            {
                "episode": name,
                "reward": got,
                "attempts": steps,
                "verdict": trace.info["quill_verdict"],
                "feedback": [str(r["messages"][-1]["content"])[:120] for r in model.requests[1:]],
            }
        )
    refused = None
    try:
        qv.load_environment(agent={"harness": {"id": "bash"}}, **config)
    except ConfigError as err:
        refused = str(err)
    assert refused and "reference rewrites" in refused, refused
    return {"played": played, "bash_refused": refused}


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "sqlite"
    print(json.dumps(asyncio.run(rollouts() if what == "rollouts" else main(what))))
