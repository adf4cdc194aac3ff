"""A client of ``quill serve``: the identity and reference actions on a served environment.

Start a server first (``pip install "quill-sql[serve]"``)::

    quill serve --port 8000 --suite shop --scale small

then run ``python examples/serve_client.py``.
"""

from quill_env import get_suite
from quill_env.serve import QuillClient

suite = get_suite("shop")
with QuillClient("http://127.0.0.1:8000") as env:
    for task in suite.split("train")[:3]:
        for action in (task.query, task.reference):
            obs, info = env.reset(task_id=task.id)
            obs, reward, terminated, truncated, info = env.step(action)
            print(f"{task.id:35} {info['verdict']:10} reward {reward:+.3f}")
