"""Sessions per user through the middleware: list devices, revoke one, log out everywhere."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import pytest
import webtest

from wsgi_session import SessionMiddleware, get_session


def accounts_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = get_session(environ)
    manager = environ["test.manager"]
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    body: Any = None
    if path == "/login":
        session.regenerate()
        session["user_id"] = query["user"]
    elif path == "/whoami":
        body = session.get("user_id")
    elif path == "/devices":
        body = {
            "mine": session.handle,
            "all": [info.handle for info in manager.sessions_of(session["user_id"])],
        }
    elif path == "/revoke":
        body = manager.revoke(query["handle"])
    elif path == "/logout-others":
        body = manager.revoke_user(session["user_id"], keep=session.handle)
    elif path == "/logout":
        session.destroy()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


pytest_plugins = ["redis_server", "postgres_server"]

STORES = ["memory", "sqlite", "redis", "postgres"]
_tables = itertools.count()


@pytest.fixture(params=STORES)
def store_app(request: pytest.FixtureRequest, make_app: Any, tmp_path: Any) -> Callable[..., Any]:
    """make_app on each store: the index is part of every provider's contract."""
    name = request.param
    if name == "memory":
        options: dict[str, Any] = {}
    elif name == "sqlite":
        options = {"path": str(tmp_path / "sessions.db")}
    elif name == "redis":
        options = {"url": request.getfixturevalue("redis_url")}
    else:
        server = request.getfixturevalue("postgres_server")
        options = {"dsn": server.dsn, "table": f"accounts_{os.getpid()}_{next(_tables)}"}

    def factory(**more: Any) -> Any:
        return make_app(provider=name, provider_options=options or None, **more)

    factory.store = name  # type: ignore[attr-defined]
    return factory


def make(make_app: Any, **options: Any) -> tuple[SessionMiddleware, list[webtest.TestApp]]:
    holder: dict[str, SessionMiddleware] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["test.manager"] = holder["mw"].manager
        return accounts_app(environ, start_response)

    mw, _ = make_app(app=app, user_key="user_id", **options)
    holder["mw"] = mw
    return mw, [webtest.TestApp(mw) for _ in range(3)]


def test_three_devices_listed_then_logged_out_everywhere_but_this_one(store_app: Any) -> None:
    mw, (laptop, phone, tablet) = make(store_app)
    for client in (laptop, phone, tablet):
        client.get("/login", {"user": "alice"})
    stranger = webtest.TestApp(mw)
    stranger.get("/login", {"user": "bob"})
    devices = laptop.get("/devices").json
    assert len(devices["all"]) == 3 and devices["mine"] in devices["all"]
    assert laptop.get("/logout-others").json == 2
    assert laptop.get("/whoami").json == "alice"
    assert phone.get("/whoami").json is None and tablet.get("/whoami").json is None
    assert stranger.get("/whoami").json == "bob"
    assert laptop.get("/devices").json["all"] == [devices["mine"]]


def test_revoke_one_device_by_its_handle(store_app: Any) -> None:
    _, (laptop, phone, _) = make(store_app)
    laptop.get("/login", {"user": "alice"})
    phone.get("/login", {"user": "alice"})
    phone_handle = phone.get("/devices").json["mine"]
    assert laptop.get("/revoke", {"handle": phone_handle}).json is True
    assert phone.get("/whoami").json is None
    assert laptop.get("/whoami").json == "alice"
    assert laptop.get("/revoke", {"handle": phone_handle}).json is False


def test_the_index_follows_logout_login_and_expiry(store_app: Any, clock: Any) -> None:
    mw, (laptop, phone, _) = make(store_app, max_lifetime=100)
    laptop.get("/login", {"user": "alice"})
    phone.get("/login", {"user": "alice"})
    old = laptop.get("/devices").json["mine"]
    laptop.get("/login", {"user": "alice"})  # a new id: a new handle, the old one is dead
    assert old not in laptop.get("/devices").json["all"]
    phone.get("/logout")
    assert len(mw.manager.sessions_of("alice")) == 1
    clock.advance(101)
    assert mw.manager.sessions_of("alice") == []


def test_a_request_that_loaded_a_revoked_session_does_not_bring_it_back(store_app: Any) -> None:
    revoked_midway: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/login":
            session["user_id"] = "alice"
        else:
            session.get("user_id")  # loaded ...
            revoked_midway["n"] = mw.manager.revoke_user("alice")  # ... revoked elsewhere ...
            session["cart"] = ["apple"]  # ... then written
        start_response("200 OK", [])
        return [b""]

    mw, client = store_app(app=app, user_key="user_id")
    client.get("/login")
    client.get("/shop")
    assert revoked_midway["n"] == 1
    assert mw.manager.sessions_of("alice") == [] and mw.manager.provider.count() in (0, None)


def raw_keys(mw: SessionMiddleware, store: str) -> set[str]:
    """Every key the store holds, read from the store itself (as a dump would)."""
    provider: Any = mw.manager.provider
    if store == "memory":
        return {*provider._probation, *provider._protected}
    if store == "sqlite":
        with sqlite3.connect(provider.path) as db:
            return {row[0] for row in db.execute("SELECT sid FROM wsgi_sessions")}
    if store == "postgres":
        import psycopg

        with psycopg.connect(**provider._connect_args) as db:
            return {row[0] for row in db.execute(f"SELECT sid FROM {provider.table}")}
    return {key.decode() for key in provider.client.keys("*")}


def test_a_copy_of_the_store_holds_no_live_id(store_app: Any) -> None:
    mw, clients = make(store_app)
    ids = []
    for n, client in enumerate(clients):
        client.get("/login", {"user": f"user{n}"})
        ids.append(client.cookies["session_id"])
    dump = " ".join(raw_keys(mw, store_app.store))
    assert len(raw_keys(mw, store_app.store)) >= 3
    assert not any(sid in dump for sid in ids)
    # The keys in the dump are no use as cookies either.
    thief = webtest.TestApp(mw)
    for key in raw_keys(mw, store_app.store):
        thief.set_cookie("session_id", key.rsplit(":", 1)[-1][-43:])
        assert thief.get("/whoami").json is None
