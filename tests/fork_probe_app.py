"""A test-only app whose master is warmed up before the server forks.

Imported by the master (uWSGI's default mode, gunicorn ``--preload``), it
serves requests at import time, as an app that warms itself up would: the
id pool, the store (and its Redis connection) and the GC thread then exist
in the master, and every worker starts with a copy of them.

Environment: WSGI_SESSION_PROVIDER (memory or redis), WSGI_SESSION_REDIS_URL,
FORK_PROBE_MAX_LIFETIME, FORK_PROBE_GC_INTERVAL, and FORK_PROBE_BUSY=1 for
a thread that keeps the master's store busy (holding its lock) while the
server forks.

Routes (JSON bodies; ``hold=S`` sleeps S seconds first, so that concurrent
requests spread over all the workers):

- ``/new``: writes a new session (its id is in Set-Cookie).
- ``/count?client=K``: the session remembers the first K it saw and counts
  its requests; answers both.
- ``/stats``: this worker's pid, GC thread and session count.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.util import setup_testing_defaults

from wsgi_session import SessionMiddleware, get_session

LOADED_IN = os.getpid()
GC_THREAD = "wsgi_session-gc"


def inner(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if "hold" in query:
        time.sleep(float(query["hold"]))
    path = environ.get("PATH_INFO", "/")
    result: dict[str, Any] = {"pid": os.getpid()}
    if path == "/new":
        get_session(environ)["pid"] = os.getpid()
    elif path == "/count":
        session = get_session(environ)
        session.setdefault("client", query.get("client"))
        session["n"] = session.get("n", 0) + 1
        result.update(client=session["client"], n=session["n"])
    elif path == "/stats":
        result.update(stats())
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def stats() -> dict[str, Any]:
    manager = app.manager
    # A thread is real only if this process has it: threading's bookkeeping
    # is copied by fork and, with no at-fork hook run, still lists the
    # master's threads as alive.
    tasks = set(os.listdir("/proc/self/task"))
    gc_threads = [t for t in threading.enumerate() if t.name == GC_THREAD]
    return {
        "loaded_in": LOADED_IN,
        "gc_running": manager.gc_running,
        "gc_threads": sum(str(t.native_id) in tasks for t in gc_threads),
        "gc_threads_listed": len(gc_threads),
        "sessions": manager.provider.count() if manager.provider.process_local else None,
    }


app = SessionMiddleware(
    inner,
    provider=os.environ.get("WSGI_SESSION_PROVIDER", "memory"),
    provider_options=(
        {"url": os.environ["WSGI_SESSION_REDIS_URL"]}
        if os.environ.get("WSGI_SESSION_PROVIDER") == "redis"
        else None
    ),
    max_lifetime=float(os.environ.get("FORK_PROBE_MAX_LIFETIME", "600")),
    gc_interval=float(os.environ.get("FORK_PROBE_GC_INTERVAL", "60")),
)


def _request(path: str, cookie: str | None = None) -> tuple[dict[str, Any], str | None]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"], _, environ["QUERY_STRING"] = path.partition("?")
    if cookie:
        environ["HTTP_COOKIE"] = f"session_id={cookie}"
    headers: list[tuple[str, str]] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        headers.extend(response_headers)

    result = app(environ, start_response)
    try:
        body = json.loads(b"".join(result))
    finally:
        getattr(result, "close", lambda: None)()
    sid = next(
        (v.split(";")[0].partition("=")[2] for k, v in headers if k.lower() == "set-cookie"),
        None,
    )
    return body, sid


def _warm_up() -> None:
    """Serve as the master: a new session, then a request that loads it."""
    body, sid = _request("/count?client=warm-up")
    assert sid and body["n"] == 1, body
    body, _ = _request("/count?client=other", sid)
    assert body == {"pid": LOADED_IN, "client": "warm-up", "n": 2}, body
    assert app.manager.gc_running


def _keep_busy(started: threading.Event) -> None:
    """Load a large session without pause: the store's lock is held most of
    the time (its values are copied under it), and with two such threads
    nearly all of it."""
    _, sid = _request("/new")
    assert sid
    app.manager.save(sid, {"big": list(range(200_000))}, ())
    while True:
        app.manager.load(sid)
        started.set()


_warm_up()
if os.environ.get("FORK_PROBE_BUSY") == "1":
    for _ in range(2):
        started = threading.Event()
        busy = threading.Thread(target=_keep_busy, args=(started,), name="fork-busy", daemon=True)
        busy.start()
        started.wait(10)
    # uWSGI forks as soon as the import returns, holding the GIL: give the
    # thread the GIL now, so that it is inside the store when the fork comes.
    time.sleep(0.2)
