"""A counter on the SQLite provider, for tests/test_sqlite_gunicorn.py.

    WSGI_SESSION_SQLITE_PATH=/tmp/s.db gunicorn -w 4 --pythonpath tests gunicorn_sqlite_app:app

GET / counts visits; /login regenerates the id and logs in as alice;
/logout destroys the session. Every page names the worker that served it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from wsgi_session import SessionMiddleware, get_session


def counter(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = get_session(environ)
    path = environ.get("PATH_INFO", "/")
    if path == "/login":
        session.regenerate()
        session["user"] = "alice"
    elif path == "/logout":
        session.destroy()
    else:
        session["n"] = session.get("n", 0) + 1
    body = f"n={session.get('n', 0)} user={session.get('user')} pid={os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = SessionMiddleware(
    counter,
    provider="sqlite",
    provider_options={"path": os.environ["WSGI_SESSION_SQLITE_PATH"]},
)
