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
