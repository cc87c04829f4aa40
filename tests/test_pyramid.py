"""wsgi_session.pyramid: ``request.session`` as an ISession, through webtest,
with the memory store and Redis."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import webtest
from conftest import FakeClock
from framework_support import CountingMemory, Rendezvous, concurrently, csrf_token
from pyramid.config import Configurator
from pyramid.csrf import check_csrf_token
from pyramid.interfaces import ISession, ISessionFactory
from pyramid.request import Request
from pyramid.response import Response
from zope.interface.verify import verifyObject

from wsgi_session.pyramid import PyramidSession, SessionFactory, session_factory, settings_options

pytest_plugins = ["redis_server"]

Make = Callable[..., tuple[webtest.TestApp, SessionFactory]]


def build(settings: dict[str, Any]) -> Any:
    """A Pyramid app on ``config.include("wsgi_session.pyramid")``, CSRF required."""
    rendezvous = Rendezvous()

    def index(request: Request) -> Response:
        session = request.session
        session["visits"] = session.get("visits", 0) + 1
        flashes = session.pop_flash()
        token = request.session.get_csrf_token()
        return Response(
            f'<p>visits={session["visits"]}</p><p>flashes={json.dumps(flashes)}</p>'
            f'<p>user={session.get("auth.userid")}</p>'
            f'<form><input name="csrf_token" value="{token}"></form>'
        )

    def login(request: Request) -> Response:  # a POST: Pyramid checks the CSRF token
        request.session.regenerate()
        request.session["auth.userid"] = request.POST["user"]
        request.session.flash(f"Welcome, {request.POST['user']}")
        return Response("ok")

    def logout(request: Request) -> Response:
        request.session.invalidate()
        request.session.flash("Logged out")
        return Response("ok")

    def untouched(request: Request) -> Response:
        assert isinstance(request.session, PyramidSession)  # made, never used
        return Response("nothing")

    def seed(request: Request) -> Response:
        request.session["a"] = request.session["b"] = "old"
        return Response("ok")

    def write(request: Request) -> Response:
        request.session[request.matchdict["key"]] = "new"
        rendezvous.wait()
        return Response("ok")

    def cart(request: Request) -> Response:
        request.session.setdefault("cart", [])
        request.session["cart"].append("book")
        request.session.changed()
        return Response("ok")

    def check(request: Request) -> Response:
        return Response(str(check_csrf_token(request, raises=False)))

    with Configurator(settings=settings) as config:
        config.include("wsgi_session.pyramid")
        config.set_default_csrf_options(require_csrf=True)
        for name, url, view, method in [
            ("index", "/", index, "GET"),
            ("login", "/login", login, "POST"),
            ("logout", "/logout", logout, "POST"),
            ("untouched", "/untouched", untouched, "GET"),
            ("seed", "/seed", seed, "GET"),
            ("write", "/write/{key}", write, "GET"),
            ("cart", "/cart", cart, "POST"),
            ("check", "/check", check, "GET"),
        ]:
            config.add_route(name, url)
            config.add_view(view, route_name=name, request_method=method)
        app = config.make_wsgi_app()
        return app, config.registry.getUtility(ISessionFactory)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    """``client, factory = make(**settings)``: webtest on an app from .ini-style settings."""
    made: list[SessionFactory] = []

    def factory(**settings: Any) -> tuple[webtest.TestApp, SessionFactory]:
        settings = {"wsgi_session.gc_interval": "none", **settings}
        if request.param == "redis" and "wsgi_session.provider" not in settings:
            settings["wsgi_session.provider"] = "redis"
            url = request.getfixturevalue("redis_url")
            settings["wsgi_session.provider_options"] = json.dumps({"url": url})
        app, made_factory = build(settings)
        made.append(made_factory)
        return webtest.TestApp(app), made_factory

    yield factory
    for made_factory in made:
        made_factory.close()


def test_request_session_provides_isession(make: Make) -> None:
    _, factory = make()
    request = Request.blank("/")
    session = factory(request)
    assert isinstance(session, PyramidSession)
    assert verifyObject(ISession, session)
    assert session.new is True
    assert isinstance(session.created, float)


def test_flash_and_csrf_checked_post(make: Make) -> None:
    client, factory = make()
    page = client.get("/")
    assert "visits=1" in page.text
    before = client.cookies["session"]
    client.post("/login", {"user": "alice"}, status=400)  # no token: refused
    client.post("/login", {"user": "alice", "csrf_token": "forged"}, status=400)
    client.post("/login", {"user": "alice", "csrf_token": csrf_token(page.text)})
    after = client.cookies["session"]
    assert after != before and factory.manager.load(before) is None
    page = client.get("/")
    assert 'flashes=["Welcome, alice"]' in page.text and "user=alice" in page.text
    assert "flashes=[]" in client.get("/").text  # shown once
    assert [s.handle for s in factory.manager.sessions_of("alice")]  # user_key auth.userid
    # The token also works as a header, as Pyramid's check_csrf_token reads it.
    assert client.get("/check", headers={"X-CSRF-Token": csrf_token(page.text)}).text == "True"
    assert client.get("/check", headers={"X-CSRF-Token": "nope"}).text == "False"


def test_invalidate_destroys_the_session(make: Make) -> None:
    client, factory = make()
    page = client.get("/")
    client.post("/login", {"user": "bob", "csrf_token": csrf_token(page.text)})
    logged_in = client.cookies["session"]
    page = client.get("/")
    client.post("/logout", {"csrf_token": csrf_token(page.text)})
    assert factory.manager.load(logged_in) is None
    assert client.cookies["session"] != logged_in  # the flash after it: a new session
    page = client.get("/")
    assert 'flashes=["Logged out"]' in page.text and "user=None" in page.text
    assert "visits=1" in page.text


def test_changed_saves_in_place_changes(make: Make) -> None:
    client, factory = make()
    page = client.get("/")
    for _ in range(2):
        client.post("/cart", {"csrf_token": csrf_token(page.text)})
    record = factory.manager.load(client.cookies["session"])
    assert record is not None and record.data["cart"] == ["book", "book"]


def test_untouched_request_costs_nothing() -> None:
    store = CountingMemory()  # a provider object: settings may hold Python values too
    app, factory = build({"wsgi_session.gc_interval": None, "wsgi_session.provider": store})
    client = webtest.TestApp(app)
    response = client.get("/untouched")
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    client.get("/")
    calls = store.calls
    response = client.get("/untouched")
    assert "Set-Cookie" not in response.headers and store.calls == calls
    factory.close()


@pytest.mark.parametrize(
    ("app_vary", "sent"),
    [(None, "Cookie"), ("Accept-Encoding", "Accept-Encoding, Cookie"), ("Cookie", "Cookie")],
    ids=["none", "other", "cookie"],
)
def test_vary_cookie_joins_the_apps_own_vary(app_vary: str | None, sent: str) -> None:
    def view(request: Request) -> Response:
        request.session["n"] = 1
        response = Response("ok")
        if app_vary is not None:
            response.vary = (app_vary,)
        return response

    factory = session_factory(gc_interval=None)
    with Configurator(session_factory=factory) as config:
        config.add_route("home", "/")
        config.add_view(view, route_name="home")
        app = config.make_wsgi_app()
    response = webtest.TestApp(app).get("/")
    assert response.headers.getall("Vary") == [sent]  # one header, no token twice
    factory.close()


def test_changed_after_a_change_in_place_writes_only_that_key() -> None:
    """``changed()`` must not write the other keys back: a write another
    request made to them meanwhile is kept."""
    grown, go = threading.Event(), threading.Event()

    def seed(request: Request) -> Response:
        request.session.update({"cart": [], "a": "old", "b": "old"})
        return Response("ok")

    def grow(request: Request) -> Response:
        request.session["cart"].append("pen")
        request.session.changed()
        grown.set()
        go.wait(10)  # meanwhile another request writes "b"
        return Response("ok")

    def put_b(request: Request) -> Response:
        request.session["b"] = "new"
        return Response("ok")

    factory = session_factory(gc_interval=None)
    with Configurator(session_factory=factory) as config:
        for name, view in [("seed", seed), ("grow", grow), ("put_b", put_b)]:
            config.add_route(name, "/" + name)
            config.add_view(view, route_name=name)
        app = config.make_wsgi_app()
    client = webtest.TestApp(app)
    client.get("/seed")
    cookie = {"Cookie": f"session={client.cookies['session']}"}
    grow_request = threading.Thread(
        target=webtest.TestApp(app).get, args=("/grow",), kwargs={"headers": cookie}
    )
    grow_request.start()
    assert grown.wait(10)
    client.get("/put_b")
    go.set()
    grow_request.join(10)
    record = factory.manager.load(client.cookies["session"])
    assert record is not None
    assert (record.data["cart"], record.data["a"], record.data["b"]) == (["pen"], "old", "new")
    factory.close()


def test_concurrent_requests_writing_different_keys_keep_both(make: Make) -> None:
    client, factory = make()
    client.get("/seed")
    concurrently(client, ["/write/a", "/write/b"])  # each read both keys as "old"
    record = factory.manager.load(client.cookies["session"])
    assert record is not None
    assert (record.data["a"], record.data["b"]) == ("new", "new")


def test_settings_are_read_from_the_ini_strings() -> None:
    options = settings_options(
        {
            "pyramid.reload_templates": "false",
            "wsgi_session.max_lifetime": "1800",
            "wsgi_session.secure": "true",
            "wsgi_session.samesite": "Strict",
            "wsgi_session.provider_options": '{"max_sessions": 10}',
            "wsgi_session.user_key": "none",
            "wsgi_session.hash_ids": "no",
        }
    )
    assert options == {
        "max_lifetime": 1800.0,
        "secure": True,
        "samesite": "Strict",
        "provider_options": {"max_sessions": 10},
        "user_key": None,
        "hash_ids": False,
    }
    with pytest.raises(ValueError, match="wsgi_session.max_lifetme"):
        settings_options({"wsgi_session.max_lifetme": "5"})
    with pytest.raises(ValueError, match="max_lifetime"):
        session_factory(max_lifetime=0)


def test_cookie_options_and_expiry() -> None:
    clock = FakeClock()
    factory = session_factory(
        cookie_name="sid", secure=True, samesite="Strict", max_lifetime=60, gc_interval=None,
        clock=clock,
    )  # fmt: skip

    def view(request: Request) -> Response:
        request.session["n"] = request.session.get("n", 0) + 1
        return Response(str(request.session["n"]))

    with Configurator() as config:
        config.set_session_factory(factory)
        config.add_route("index", "/")
        config.add_view(view, route_name="index")
        client = webtest.TestApp(config.make_wsgi_app(), extra_environ={"wsgi.url_scheme": "https"})
    first = client.get("/")
    cookie = first.headers["Set-Cookie"]
    assert cookie.startswith("sid=") and "Secure" in cookie and "SameSite=Strict" in cookie
    assert "HttpOnly" in cookie
    clock.advance(59)
    assert client.get("/").text == "2"
    clock.advance(61)
    assert client.get("/").text == "1"
    factory.close()


def test_pyramids_session_csrf_storage_policy_works_too() -> None:
    from pyramid.csrf import SessionCSRFStoragePolicy, get_csrf_token

    factory = session_factory(gc_interval=None)

    def form(request: Request) -> Response:
        return Response(get_csrf_token(request))

    def post(request: Request) -> Response:
        return Response("accepted")

    with Configurator() as config:
        config.set_session_factory(factory)
        config.set_csrf_storage_policy(SessionCSRFStoragePolicy())
        config.set_default_csrf_options(require_csrf=True)
        config.add_route("form", "/form")
        config.add_view(form, route_name="form", request_method="GET")
        config.add_view(post, route_name="form", request_method="POST")
        client = webtest.TestApp(config.make_wsgi_app())
    token = client.get("/form").text
    client.post("/form", {"csrf_token": "forged"}, status=400)
    assert client.post("/form", {"csrf_token": token}).text == "accepted"
    record = factory.manager.load(client.cookies["session"])
    assert record is not None and record.data["_csrft_"] == token  # kept in our store
    factory.close()
