"""A visit counter with log in and log out: wsgi_session's demo.

    python demo_app.py             # http://127.0.0.1:8000 (standard library server)
    gunicorn demo_app:app          # the same app under gunicorn

Set WSGI_SESSION_PROVIDER=redis (and WSGI_SESSION_REDIS_URL) to keep the
sessions in Redis, so several gunicorn workers share them.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Iterable
from typing import Any

from wsgi_session import SessionMiddleware, get_session

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>wsgi_session demo</title></head>
<body>
<h1>wsgi_session demo</h1>
<p id="visits">Visits: {visits}</p>
<p id="user">{user}</p>
<p><a id="visit" href="/">Visit again</a> |
<a id="login" href="/login">Log in</a> |
<a id="logout" href="/logout">Log out</a></p>
</body></html>
"""


def demo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = get_session(environ)
    path = environ.get("PATH_INFO", "/")
    if path == "/login":
        session.regenerate()  # a privilege change: never keep the old id
        session["user"] = "demo"
        return _redirect(start_response)
    if path == "/logout":
        session.destroy()
        return _redirect(start_response)
    if path != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    visits = session.get("visits", 0) + 1
    session["visits"] = visits
    user = session.get("user")
    who = f"Logged in as {html.escape(user)}" if user else "Not logged in"
    body = PAGE.format(visits=visits, user=who).encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _redirect(start_response: Any) -> Iterable[bytes]:
    start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
    return [b""]


def make_app() -> SessionMiddleware:
    provider = os.environ.get("WSGI_SESSION_PROVIDER", "memory")
    options = None
    if provider == "redis":
        options = {"url": os.environ.get("WSGI_SESSION_REDIS_URL", "redis://127.0.0.1:6379/0")}
    return SessionMiddleware(
        demo,
        provider=provider,
        provider_options=options,
        max_lifetime=float(os.environ.get("WSGI_SESSION_MAX_LIFETIME", "1800")),
        gc_interval=float(os.environ.get("WSGI_SESSION_GC_INTERVAL", "60")),
    )


app = make_app()


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    host, port = "127.0.0.1", int(os.environ.get("PORT", "8000"))
    with make_server(host, port, app) as server:
        print(f"wsgi_session demo on http://{host}:{port}/ (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
