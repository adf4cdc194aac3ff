"""Other interpreters that some tests drive: frameworks whose pins conflict with the dev env's.

verifiers 0.4 needs ``openai<3`` and ``mcp==2``; OpenEnv's client needs ``mcp<2`` through
fastmcp. Each gets a virtual environment of its own (``.ci/run`` builds them and exports the
variables below); a test finds it here, or skips with the command that makes one.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def interpreter(variable: str, probe: str) -> str | None:
    """This interpreter if ``probe`` imports in it, else ``$variable``'s if it does there."""
    for python in filter(None, [sys.executable, os.environ.get(variable)]):
        if subprocess.run([python, "-c", probe], capture_output=True).returncode == 0:
            return python
    return None


def needs(python: str | None, variable: str, setup: str) -> pytest.MarkDecorator:
    """Skip unless ``python`` was found, saying how to make one."""
    return pytest.mark.skipif(
        python is None, reason=f"no interpreter here or in ${variable} has the framework ({setup})"
    )
