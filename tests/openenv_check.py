"""OpenEnv's own client plays episodes on a Quill server (run by test_serve.py).

Run with an interpreter that has ``openenv``: ``python openenv_check.py URL TASK SQL...``; plays
one episode per SQL with ``GenericEnvClient`` and prints one JSON object per episode.
"""

from __future__ import annotations

import asyncio
import json
import sys

from openenv import GenericEnvClient


async def main(url: str, task_id: str, actions: list[str]) -> None:
    for sql in actions:
        async with GenericEnvClient(base_url=url) as env:
            reset = await env.reset(task_id=task_id)
            step = await env.step({"sql": sql})
            state = await env.state()
        print(
            json.dumps(
                {
                    "reset_done": reset.done,
                    "query": reset.observation["query"],
                    "reward": step.reward,
                    "done": step.done,
                    "state": state,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
