"""The security properties again with sessions in Redis (a private redis-server).

Idle expiry in Redis runs on Redis's own clock, so only what the manager's
clock decides (the absolute deadline) is moved with a FakeClock here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from security_support import call, environ_for, issued_id, visit

from wsgi_session import ProviderError, SessionMiddleware, get_session
from wsgi_session.ids import new_id

if TYPE_CHECKING:
    from redis_server import AppFactory, RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis


def test_forged_id_is_refused(redis_app: AppFactory) -> None:
    mw, client = redis_app()
    forged = new_id()
    res = visit(client, forged)
    assert res.text == "n=1 user=None"
    assert issued_id(res) not in (None, forged)
    assert visit(client, forged, "/peek").text == "n=0 user=None"
    assert mw.manager.provider.count() == 1


def test_destroyed_and_regenerated_away_ids_are_refused(redis_app: AppFactory) -> None:
    _, client = redis_app()
    first = issued_id(visit(client, None))
    second = issued_id(visit(client, first, "/login"))
    assert second not in (None, first)
    assert visit(client, first, "/peek").text == "n=0 user=None"
    assert visit(client, second, "/peek").text == "n=1 user=alice"
    visit(client, second, "/logout")
    assert visit(client, second, "/peek").text == "n=0 user=None"


def test_absolute_lifetime_is_enforced_on_load(redis_app: AppFactory, clock: Any) -> None:
    _, client = redis_app(max_lifetime=3600, absolute_lifetime=100)
    sid = issued_id(visit(client, None))
    clock.advance(99)
    assert visit(client, sid).text == "n=2 user=None"
    clock.advance(2)
    res = visit(client, sid)
    assert res.text == "n=1 user=None"
    assert issued_id(res) != sid


def test_requests_that_never_write_store_nothing(redis_app: AppFactory) -> None:
    mw, _ = redis_app()
    for i in range(2000):
        cookie = f"session_id={new_id()}" if i % 2 else None
        res = call(mw, environ_for("/peek", cookie))
        assert res.cookies() == []
    assert mw.manager.provider.count() == 0


def test_no_id_or_value_is_logged_when_redis_fails(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsgi_session")
    marker = "value-" + new_id()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        session["v"] = marker
        start_response("200 OK", [])
        return [b""]

    mw = SessionMiddleware(
        app,
        provider="redis",
        provider_options={"url": own_redis.url, "socket_timeout": 1},
        gc_interval=None,
    )
    try:
        sid = call(mw, environ_for("/")).cookie_value()
        assert sid
        own_redis.stop()
        with pytest.raises(ProviderError):
            call(mw, environ_for("/", f"session_id={sid}"))
    finally:
        mw.close()
    records = [r for r in caplog.records if r.name == "wsgi_session"]
    assert any(r.levelno == logging.WARNING for r in records)
    text = "\n".join(logging.Formatter().format(r) for r in records)
    assert sid not in text
    assert marker not in text


def test_a_revoked_session_never_comes_back_through_regenerate(
    redis_app: AppFactory, rclient: Any
) -> None:
    # Request B has loaded the session; a revoke lands; B then logs in
    # (regenerate). The revoked data must not be stored under a new id.
    holder: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/login":
            assert session["user"] == "alice"  # loaded
            manager = holder["mw"].manager
            for info in manager.sessions_of("alice"):
                manager.revoke(info.handle)  # another request, another process
            session.regenerate()
            body = f"user={session.get('user')}"
        else:
            session["user"] = "alice"
            body = "set"
        start_response("200 OK", [])
        return [body.encode()]

    mw, client = redis_app(app=app, user_key="user")
    holder["mw"] = mw
    client.get("/")
    assert len(mw.manager.sessions_of("alice")) == 1
    assert client.get("/login").text == "user=None"
    assert rclient.keys("*") == []
    assert mw.manager.sessions_of("alice") == []


def test_a_copy_of_the_store_holds_no_usable_id(redis_app: AppFactory, rclient: Any) -> None:
    mw, client = redis_app(user_key="user")
    sids = []
    for _ in range(3):
        client.reset()
        client.get("/login")
        sids.append(client.cookies["session_id"])
    dump = b""
    for k in rclient.keys("*"):
        kind = rclient.type(k)
        members = rclient.hgetall(k).items() if kind == b"hash" else rclient.smembers(k)
        dump += k + repr(list(members)).encode()
    assert len(mw.manager.sessions_of("alice")) == 3
    for sid in sids:
        assert sid.encode() not in dump
        assert visit(client, sid, "/peek").text == "n=0 user=alice"
