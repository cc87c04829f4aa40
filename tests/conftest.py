"""Shared fixtures: a tiny WSGI app, an injectable clock, a middleware factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest

from wsgi_session import SessionMiddleware, get_session


class FakeClock:
    """A clock tests move by hand: ``clock.advance(61)`` instead of sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def counter_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """GET /: increments and shows ``n``; /peek reads without writing;
    /none never touches the session; /login regenerates; /logout destroys."""
    path = environ.get("PATH_INFO", "/")
    if path == "/none":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"untouched"]
    session = get_session(environ)
    if path == "/login":
        session.regenerate()
        session["user"] = "alice"
    elif path == "/logout":
        session.destroy()
    elif path == "/peek":
        pass
    else:
        session["n"] = session.get("n", 0) + 1
    body = f"n={session.get('n', 0)} user={session.get('user')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(
    clock: FakeClock,
) -> Iterator[Callable[..., tuple[SessionMiddleware, webtest.TestApp]]]:
    """``mw, client = make_app(app=counter_app, **options)``: a middleware on the
    fake clock with no GC thread unless asked, and a cookie-keeping client."""
    made: list[SessionMiddleware] = []

    def factory(
        app: Any = counter_app, **options: Any
    ) -> tuple[SessionMiddleware, webtest.TestApp]:
        options.setdefault("clock", clock)
        options.setdefault("gc_interval", None)
        mw = SessionMiddleware(app, **options)
        made.append(mw)
        return mw, webtest.TestApp(mw)

    yield factory
    for mw in made:
        mw.close()


def require(what: str, env: str, available: bool, reason: str) -> None:
    """Skip when ``available`` is false, unless ``env`` is set (CI), then fail."""
    if available:
        return
    if os.environ.get(env) == "1":
        pytest.fail(f"{reason}, and {env}=1 says it must be there", pytrace=False)
    pytest.skip(reason)
