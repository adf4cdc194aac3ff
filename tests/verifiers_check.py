"""Quill's verifiers taskset driven by the verifiers package itself (run by test_verifiers.py).

Run with an interpreter that has ``verifiers`` 0.4 and Quill installed; prints one JSON object
of what it found, and exits non-zero on a failed check.
"""

from __future__ import annotations

import asyncio
import json
import sys

import verifiers.v1 as vf

import quill_verifiers as qv
from quill_env.prompt import format_completion
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


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "sqlite"))))
