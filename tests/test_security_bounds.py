"""Floods: requests that never write store nothing; writers stay within max_sessions."""

from __future__ import annotations

import tracemalloc
from typing import Any

from security_support import call, environ_for

from wsgi_session import Manager, SessionMiddleware
from wsgi_session.ids import new_id
from wsgi_session.providers.memory import MemoryProvider


def reader(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["wsgi_session.session"]
    body = repr(session.get("n")).encode()  # reads, so the cookie is parsed
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def writer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["wsgi_session.session"]
    session["n"] = session.get("n", 0) + 1
    body = repr(session["n"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def test_flood_of_readers_stores_nothing() -> None:
    with SessionMiddleware(reader, gc_interval=None) as mw:
        forged = f"session_id={new_id()}"
        for i in range(100_000):
            # Most come without a cookie; some with a made-up id.
            res = call(mw, environ_for("/", forged if i % 10 == 0 else None))
            assert res.cookies() == []
        assert len(mw.manager.provider) == 0


def test_flood_of_writers_stays_under_max_sessions_and_keeps_the_recent() -> None:
    provider = MemoryProvider(max_sessions=1000)
    with SessionMiddleware(writer, provider=provider, gc_interval=None) as mw:
        regulars = {}  # cookie -> visits: users active throughout the flood
        for _ in range(10):
            cookie = call(mw, environ_for("/")).cookie_value()
            assert cookie
            regulars[cookie] = 1
        flood = []
        for i in range(5000):
            cookie = call(mw, environ_for("/")).cookie_value()
            assert cookie
            flood.append(cookie)
            assert len(provider) <= 1000
            if i % 100 == 0:
                for regular in regulars:
                    res = call(mw, environ_for("/", f"session_id={regular}"))
                    regulars[regular] += 1
                    assert res.body == str(regulars[regular]).encode()
        assert len(provider) == 1000
        assert provider.stats()["evicted"] == 5010 - 1000
        # The regulars kept their sessions, and so did the latest visitors ...
        for regular, visits in regulars.items():
            assert call(mw, environ_for("/", f"session_id={regular}")).body == str(
                visits + 1
            ).encode()
        for cookie in flood[-900:]:
            assert call(mw, environ_for("/", f"session_id={cookie}")).body == b"2"
        # ... while the earliest were evicted: their cookies start over.
        assert call(mw, environ_for("/", f"session_id={flood[0]}")).body == b"1"


def test_flood_with_absolute_lifetime_keeps_memory_bounded() -> None:
    """Absolute deadlines are indexed too; evicted sessions must not leave
    that index growing with every visitor."""
    provider = MemoryProvider(max_sessions=100)
    manager = Manager(provider, max_lifetime=60, absolute_lifetime=86_400, gc_interval=None)
    for _ in range(200):  # warm up: the store is full before measuring
        manager.create({"n": 1})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(50_000):
            manager.create({"n": 1})
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(provider) == 100
    # 50,000 retained index entries with their ids would take about 8 MB;
    # a bounded index takes a few tens of kB.
    assert grown < 1_000_000, grown
    manager.close()


def test_max_sessions_through_provider_options() -> None:
    with SessionMiddleware(writer, provider_options={"max_sessions": 5}, gc_interval=None) as mw:
        for _ in range(20):
            call(mw, environ_for("/"))
        assert len(mw.manager.provider) == 5
