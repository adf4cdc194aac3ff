"""The served environment's wire format: OpenEnv's JSON messages, checked before they reach an env.

A WebSocket message is ``{"type": "reset" | "step" | "state" | "close", "data": {...}}``; the
server answers ``{"type": "observation" | "state" | "error", "data": {...}}``. An observation's
data is ``{"observation", "reward", "done"}`` as in OpenEnv, plus Quill's ``terminated``,
``truncated`` and ``info`` (the env's ``info`` dict, JSON-safe). Every check here raises
:class:`~quill_env.errors.ServeError` with one of :class:`ErrorCode`, never anything else, so
junk from a client becomes an error message and never reaches an environment.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any

from quill_env.action_policy import MAX_ACTION_CHARS
from quill_env.errors import ServeError

MAX_MESSAGE_BYTES = 12 * MAX_ACTION_CHARS + 65_536
"""The largest request accepted: room for the longest action with every character escaped."""

MAX_ID_CHARS = 255
"""The longest ``task_id`` or ``episode_id`` accepted."""


class ErrorCode(str, enum.Enum):
    """Why a request was refused (OpenEnv's ``WSErrorCode`` values, plus Quill's own)."""

    INVALID_JSON = "INVALID_JSON"
    """The message is not a JSON object."""
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    """The message ``type`` is not reset, step, state or close."""
    VALIDATION_ERROR = "VALIDATION_ERROR"
    """A field is missing, of the wrong type or unknown (including an unknown task id)."""
    EXECUTION_ERROR = "EXECUTION_ERROR"
    """The environment failed; details are in the server's log, never sent to the client."""
    CAPACITY_REACHED = "CAPACITY_REACHED"
    """Every session slot is taken: try again after one closes."""
    SESSION_ERROR = "SESSION_ERROR"
    """The session is unknown, expired or closed."""
    STATE_ERROR = "STATE_ERROR"
    """The call is out of order (``step`` before ``reset``, or after the episode ended)."""
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    """The request is larger than :data:`MAX_MESSAGE_BYTES`."""

    @property
    def http_status(self) -> int:
        """The HTTP status of this error on the HTTP endpoints."""
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.EXECUTION_ERROR: 500,
    ErrorCode.CAPACITY_REACHED: 503,
    ErrorCode.SESSION_ERROR: 404,
    ErrorCode.STATE_ERROR: 409,
    ErrorCode.MESSAGE_TOO_LARGE: 413,
}


def refuse(code: ErrorCode, message: str) -> ServeError:
    """A :class:`ServeError` with ``code`` (raise it)."""
    return ServeError(code.value, message)


def parse_object(raw: str | bytes, limit: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """The JSON object in ``raw``.

    >>> parse_object('{"type": "state"}')
    {'type': 'state'}
    >>> parse_object('[1]')
    Traceback (most recent call last):
    quill_env.errors.ServeError: the message must be a JSON object, got list

    Raises:
        ServeError: ``raw`` is over ``limit`` bytes, not UTF-8, not JSON or not an object.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise refuse(ErrorCode.MESSAGE_TOO_LARGE, f"the message is {size:,} bytes; the limit is {limit:,}")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise refuse(ErrorCode.INVALID_JSON, f"invalid JSON: {err}") from None
    if not isinstance(value, dict):
        raise refuse(ErrorCode.INVALID_JSON, f"the message must be a JSON object, got {type(value).__name__}")
    return value


def only_keys(data: Mapping[str, Any], allowed: set[str], what: str) -> None:
    """Refuse ``data`` if it has a key outside ``allowed`` (a typo must not be ignored silently).

    Raises:
        ServeError: an unknown key (``VALIDATION_ERROR``).
    """
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise refuse(
            ErrorCode.VALIDATION_ERROR,
            f"unknown field {unknown[0]!r} in {what}; allowed: {', '.join(sorted(allowed))}",
        )


def _string(data: Mapping[str, Any], key: str, limit: int, what: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise refuse(ErrorCode.VALIDATION_ERROR, f"{what}.{key} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise refuse(
            ErrorCode.VALIDATION_ERROR, f"{what}.{key} is {len(value):,} characters; the limit is {limit:,}"
        )
    return value


def reset_args(data: Any) -> dict[str, Any]:
    """The ``seed``, ``task_id`` and ``episode_id`` of a reset request (each optional).

    >>> reset_args({"seed": 3, "task_id": "shop/coupon_lookup"})
    {'seed': 3, 'task_id': 'shop/coupon_lookup', 'episode_id': None}

    Raises:
        ServeError: a field of the wrong type or an unknown field (``VALIDATION_ERROR``).
    """
    if not isinstance(data, dict):
        raise refuse(ErrorCode.VALIDATION_ERROR, "reset data must be an object")
    only_keys(data, {"seed", "task_id", "episode_id"}, "reset data")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63):
        raise refuse(
            ErrorCode.VALIDATION_ERROR, f"reset data.seed must be an integer in [0, 2**63), got {seed!r}"
        )
    return {
        "seed": seed,
        "task_id": _string(data, "task_id", MAX_ID_CHARS, "reset data"),
        "episode_id": _string(data, "episode_id", MAX_ID_CHARS, "reset data"),
    }


def step_action(data: Any) -> str:
    """The SQL text of a step's action ``{"sql": ...}`` (OpenEnv's optional ``metadata`` is allowed).

    >>> step_action({"sql": "SELECT 1"})
    'SELECT 1'

    An action longer than the action space's limit is passed on: the environment scores it
    ``rejected`` with its penalty, as a local one does, so a policy is paid the same either way
    (only the message size, :data:`MAX_MESSAGE_BYTES`, bounds it here).

    Raises:
        ServeError: no ``sql`` string, or an unknown field.
    """
    if not isinstance(data, dict):
        raise refuse(ErrorCode.VALIDATION_ERROR, 'the action must be an object {"sql": "..."}')
    only_keys(data, {"sql", "metadata"}, "the action")
    sql = _string(data, "sql", MAX_MESSAGE_BYTES, "action")
    if sql is None:
        raise refuse(ErrorCode.VALIDATION_ERROR, 'the action needs "sql": the SQL text to score')
    return sql


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, enums, tuples and non-finite floats made JSON-safe.

    Non-finite floats become ``None`` (JSON has no NaN or infinity).

    >>> import numpy as np
    >>> jsonable({"a": np.float64(1.5), "b": (np.int32(2), float("inf")), 3: np.bool_(True)})
    {'a': 1.5, 'b': [2, None], '3': True}
    >>> type(jsonable(np.float64(1.5)))
    <class 'float'>
    """
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, float):  # numpy's float64 is a float: made a plain one
        return float(value) if math.isfinite(value) else None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist())
    return str(value)


def dumps(message: Any) -> str:
    """``message`` as JSON text (strict: made :func:`jsonable` first)."""
    return json.dumps(jsonable(message), allow_nan=False)


def error_message(err: ServeError) -> dict[str, Any]:
    """The WebSocket error message of ``err``.

    >>> error_message(refuse(ErrorCode.STATE_ERROR, "call reset first"))
    {'type': 'error', 'data': {'message': 'call reset first', 'code': 'STATE_ERROR'}}
    """
    return {"type": "error", "data": {"message": str(err), "code": err.code}}


def http_status(err: ServeError) -> int:
    """The HTTP status of ``err`` (500 for a code this module does not know)."""
    try:
        return ErrorCode(err.code).http_status
    except ValueError:
        return 500


__all__ = [
    "MAX_ID_CHARS",
    "MAX_MESSAGE_BYTES",
    "ErrorCode",
    "dumps",
    "error_message",
    "http_status",
    "jsonable",
    "only_keys",
    "parse_object",
    "refuse",
    "reset_args",
    "step_action",
]
