"""The verifiers taskset, driven by the ``verifiers`` package itself.

verifiers 0.4 needs ``openai<3`` while the teacher's tests run on openai 3, so it lives in its own
interpreter: this one when it has verifiers, else ``$QUILL_VERIFIERS_PYTHON`` (``.ci/run`` builds
``.venv-verifiers`` with Quill and verifiers and points the variable at it). The checks
(``tests/verifiers_check.py``) load the environment through verifiers' own loader, score
finished traces with verifiers' ``Task.score`` and compare every reward with ``reward_fn``'s.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.interpreters import interpreter, needs

CHECK = Path(__file__).with_name("verifiers_check.py")
PYTHON = interpreter("QUILL_VERIFIERS_PYTHON", "import verifiers.v1, quill_verifiers")
pytestmark = needs(
    PYTHON,
    "QUILL_VERIFIERS_PYTHON",
    'python -m venv .venv-verifiers && .venv-verifiers/bin/pip install -e ".[verifiers,duckdb]"',
)


@pytest.mark.parametrize("engine", ["sqlite", "duckdb"])
def test_verifiers_scores_rollouts_with_the_environments_reward(engine):
    assert PYTHON is not None
    has_engine = subprocess.run([PYTHON, "-c", f"import {engine if engine == 'duckdb' else 'apsw'}"])
    if has_engine.returncode:
        pytest.skip(f"{engine} is not installed in {PYTHON}")
    out = subprocess.run(
        [PYTHON, str(CHECK), engine], capture_output=True, text=True, env=os.environ.copy(), timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    verdicts = {(c["reply"], c["verdict"]) for c in found["checked"]}
    assert found["tasks"] > 2
    assert {v for r, v in verdicts if r == "reference"} <= {"improved", "no_gain"}
    assert {v for r, v in verdicts if r == "identity"} == {"unchanged"}
    assert all(c["reward"] <= 0 for c in found["checked"] if c["reply"] in ("garbage", "drop", "other_task"))


def test_verifiers_plays_multi_turn_episodes_with_the_environments_rewards():
    """Whole episodes through verifiers' rollouts: its harness program, interception server and
    a scripted model on 127.0.0.1 (the harness is prepared with ``uv``, which fetches its
    dependencies from the package index once)."""
    assert PYTHON is not None
    out = subprocess.run(
        [PYTHON, str(CHECK), "rollouts"], capture_output=True, text=True, env=os.environ.copy(), timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    played = {p["episode"]: p for p in found["played"]}
    assert played["one_reference"]["verdict"] == "improved" and played["one_reference"]["reward"] > 0
    assert played["one_wrong"]["reward"] < 0
    # feedback after each failed try, the answer on the third: paid the env's return, less than
    # the same answer given at once
    retried = played["wrong_identity_reference"]
    assert retried["attempts"] == 3 and len(retried["feedback"]) == 2
    assert retried["reward"] < played["reference_first"]["reward"] == played["one_reference"]["reward"]
    assert played["reference_first"]["attempts"] == 1  # an improvement ends the episode
    assert (
        played["never_right"]["attempts"] == 2
        and played["never_right"]["reward"] < played["one_wrong"]["reward"]
    )
    assert "reference rewrites" in found["bash_refused"]
