"""The served environment: Quill over OpenEnv's HTTP/WebSocket contract (``quill serve``).

:func:`create_app` builds the FastAPI application and :func:`run` serves it with uvicorn;
:class:`QuillClient` is a session of it over one WebSocket. FastAPI, uvicorn and websockets are
the ``serve`` extra, imported only when a server or a client is made; ``import quill_env``
never imports this package.
"""

from quill_env.serve.client import QuillClient, ws_url
from quill_env.serve.server import create_app, make_server, run, schemas
from quill_env.serve.sessions import SessionManager
from quill_env.serve.wire import MAX_MESSAGE_BYTES, ErrorCode

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ErrorCode",
    "QuillClient",
    "SessionManager",
    "create_app",
    "make_server",
    "run",
    "schemas",
    "ws_url",
]
