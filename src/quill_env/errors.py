"""Quill's exception tree.

Agent-caused failures (bad SQL, a slow rewrite, a forbidden statement) are *outcomes*: they
become a verdict and a reward and never raise. The exceptions below are for programmer errors
and for a broken installation; every message says what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QuillError(Exception):
    """Base class of every exception Quill raises on purpose."""


# --- configuration and arguments -------------------------------------------------------------


class ConfigError(QuillError, ValueError):
    """An argument or configuration value is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name (suite, task, backend, cost mode, scale) is not known."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = sorted(known)
        hint = difflib.get_close_matches(str(name), known, n=1)
        msg = f"unknown {kind} {name!r}"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        elif known:
            shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
            msg += f"; known: {shown}"
        super().__init__(msg)
        self.kind, self.name, self.known = kind, name, known

    def __str__(self) -> str:
        return self.args[0]


class EnvStateError(QuillError, RuntimeError):
    """The environment was used out of order (e.g. ``step`` before ``reset``)."""


# --- databases and tasks ---------------------------------------------------------------------


class DatabaseError(QuillError):
    """A task database cannot be opened or introspected."""


class EngineError(DatabaseError):
    """The engine failed one of the harness's own trusted statements (never an action's).

    Its message is the engine's and may carry database values: never show it to an agent.
    """


class BaselineError(QuillError):
    """The task's original (slow) query itself fails, so nothing can be compared with it."""


class SuiteError(QuillError):
    """A task suite file is malformed or inconsistent."""


class IndexBuildError(QuillError):
    """The engine could not build an action's indexes (an outcome of the action, not a bug)."""


# --- generated data --------------------------------------------------------------------------


class StoreError(QuillError):
    """A store file is corrupt before its last line, or a record lacks its key."""


# --- installation ----------------------------------------------------------------------------


class MissingExtraError(QuillError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f'{module!r} is not installed; install it with: pip install "quill-sql[{extra}]"')


# --- served environment ----------------------------------------------------------------------


class ServeError(QuillError):
    """The environment server refused a request; ``code`` says why (OpenEnv's error codes)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
