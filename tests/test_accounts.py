"""Sessions per user through the middleware: list devices, revoke one, log out everywhere."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

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


def make(make_app: Any, **options: Any) -> tuple[SessionMiddleware, list[webtest.TestApp]]:
    holder: dict[str, SessionMiddleware] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["test.manager"] = holder["mw"].manager
        return accounts_app(environ, start_response)

    mw, _ = make_app(app=app, user_key="user_id", **options)
    holder["mw"] = mw
    return mw, [webtest.TestApp(mw) for _ in range(3)]


def test_three_devices_listed_then_logged_out_everywhere_but_this_one(make_app: Any) -> None:
    mw, (laptop, phone, tablet) = make(make_app)
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


def test_revoke_one_device_by_its_handle(make_app: Any) -> None:
    _, (laptop, phone, _) = make(make_app)
    laptop.get("/login", {"user": "alice"})
    phone.get("/login", {"user": "alice"})
    phone_handle = phone.get("/devices").json["mine"]
    assert laptop.get("/revoke", {"handle": phone_handle}).json is True
    assert phone.get("/whoami").json is None
    assert laptop.get("/whoami").json == "alice"
    assert laptop.get("/revoke", {"handle": phone_handle}).json is False


def test_the_index_follows_logout_login_and_expiry(make_app: Any, clock: Any) -> None:
    mw, (laptop, phone, _) = make(make_app, max_lifetime=100)
    laptop.get("/login", {"user": "alice"})
    phone.get("/login", {"user": "alice"})
    old = laptop.get("/devices").json["mine"]
    laptop.get("/login", {"user": "alice"})  # a new id: a new handle, the old one is dead
    assert old not in laptop.get("/devices").json["all"]
    phone.get("/logout")
    assert len(mw.manager.sessions_of("alice")) == 1
    clock.advance(101)
    assert mw.manager.sessions_of("alice") == []


def test_a_request_that_loaded_a_revoked_session_does_not_bring_it_back(make_app: Any) -> None:
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

    mw, client = make_app(app=app, user_key="user_id")
    client.get("/login")
    client.get("/shop")
    assert revoked_midway["n"] == 1
    assert mw.manager.sessions_of("alice") == [] and mw.manager.provider.count() == 0
