"""Concurrency stress: 32 threads of requests while the GC thread sweeps.

Every thread increments its own key in one shared session and a counter in
its private session (which it regenerates now and then), and leaves
short-lived throwaway sessions behind for the GC to find. Time moves on a
clock that advances a little on every call, and the real GC thread sweeps
every 2 ms. At the end no thread has raised, every thread finished within
the join timeout, and every increment is there: no lost write.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from security_support import Response, call, environ_for

from wsgi_session import SessionMiddleware, get_session
from wsgi_session.providers.memory import MemoryProvider

THREADS = 32
REQUESTS = 300  # per thread
JOIN_TIMEOUT = 120.0  # seconds: far above the ~10 s this takes on a slow machine


class TickingClock:
    """Thread-safe clock that moves 1 ms forward on every read."""

    def __init__(self) -> None:
        self._now = 1_000_000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self._now += 0.001
            return self._now


def stress_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = get_session(environ)
    action = environ["PATH_INFO"]
    key = environ["QUERY_STRING"]
    if action == "/inc":
        value = session.get(key, 0)
        time.sleep(0)  # the app does some I/O: other requests run in between
        session[key] = value + 1
    elif action == "/regenerate":
        session.regenerate()
    elif action == "/throwaway":
        session["junk"] = [key] * 10
    body = repr(session.get(key)).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


class Client:
    """One browser: keeps the cookie its server last set."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookie: str | None = None

    def get(self, path: str, key: str = "") -> Response:
        header = None if self.cookie is None else f"session_id={self.cookie}"
        res = call(self.app, environ_for(path, header, query=key))
        assert res.status == "200 OK", res.status
        value = res.cookie_value()
        if value is not None:
            self.cookie = value or None
        return res


def test_32_threads_with_gc_running_lose_nothing_and_finish() -> None:
    clock = TickingClock()
    provider = MemoryProvider(gc_batch=50)
    # Long-lived sessions, with the GC thread sweeping every 2 ms ...
    mw = SessionMiddleware(
        stress_app, provider=provider, max_lifetime=3600, gc_interval=0.002, clock=clock
    )
    # ... and short-lived ones in the same store (idle 0.05 s, absolute 0.2 s
    # of clock time), so every sweep has something to remove, by recency and
    # by deadline.
    short = SessionMiddleware(
        stress_app,
        provider=provider,
        max_lifetime=0.05,
        absolute_lifetime=0.2,
        gc_interval=None,
        clock=clock,
    )
    shared = Client(mw)
    shared.get("/inc", "created")
    assert shared.cookie
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS, timeout=JOIN_TIMEOUT)

    def worker(n: int) -> None:
        try:
            mine = Client(mw)
            others = Client(short)
            start.wait()
            for i in range(REQUESTS):
                Client.get(shared, "/inc", f"t{n}")  # shared session, own key
                mine.get("/inc", "n")
                if i % 50 == 25:
                    mine.get("/regenerate")
                if i % 10 == 0:
                    others.cookie = None
                    others.get("/throwaway", f"{n}-{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            return
        # Read back through the public API: the private counter is complete.
        final = mine.get("/peek", "n")
        if final.body != str(REQUESTS).encode():
            errors.append(AssertionError(f"thread {n}: private n={final.body!r}"))

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    stuck = [t.name for t in threads if t.is_alive()]
    try:
        assert not stuck, f"deadlock or livelock: {stuck} still running"
        assert errors == [], errors[:3]
        # The GC thread ran meanwhile: nothing ever loaded the throwaway
        # sessions again, so only its sweeps can have removed them.
        assert mw.manager.gc_running
        throwaways_left = len(provider) - 1 - THREADS
        assert throwaways_left < THREADS * REQUESTS // 10
        # Every thread's increments of its own key in the shared session landed.
        for n in range(THREADS):
            assert shared.get("/peek", f"t{n}").body == str(REQUESTS).encode(), n
    finally:
        mw.close()
        short.close()
