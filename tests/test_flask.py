"""wsgi_session.flask: ``flask.session``, flash, Flask-Login and Flask-WTF
through Flask's test client and webtest, with the memory store and Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import flask_login
import pytest
import webtest
from conftest import FakeClock
from flask import Flask, flash, get_flashed_messages, make_response, session
from flask_wtf import FlaskForm
from framework_support import CountingMemory, Rendezvous, concurrently
from markupsafe import Markup
from wtforms import StringField

from wsgi_session import Session
from wsgi_session.flask import FlaskSession, FlaskSessionInterface, init_app

pytest_plugins = ["redis_server"]

AppFactory = Callable[..., tuple[Flask, FlaskSessionInterface]]


class User(flask_login.UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


class NameForm(FlaskForm):
    name = StringField("name")


def build(
    static: Path, *, with_login: bool = True, **options: Any
) -> tuple[Flask, FlaskSessionInterface]:
    """A small app using every session feature Flask developers reach for."""
    app = Flask(__name__, static_folder=str(static), static_url_path="/static")
    interface = init_app(app, **options)
    if with_login:
        login = flask_login.LoginManager(app)
        login.user_loader(User)
    rendezvous = Rendezvous()

    @app.get("/")
    def index() -> str:
        session["visits"] = session.get("visits", 0) + 1
        return f"visits={session['visits']}"

    @app.get("/untouched")
    def untouched() -> str:
        return "nothing"

    @app.post("/login/<name>")
    def login_view(name: str) -> str:
        flask_login.login_user(User(name))
        flash(f"Welcome, {name}", "info")
        return "ok"

    @app.post("/logout")
    def logout_view() -> str:
        flask_login.logout_user()
        flash(Markup("<b>bye</b>"))
        return "ok"

    @app.get("/me")
    def me() -> dict[str, Any]:
        user = flask_login.current_user
        return {
            "user": user.id if user.is_authenticated else None,
            "flashes": get_flashed_messages(with_categories=True),
        }

    @app.post("/remember")
    def remember() -> str:
        session.permanent = True
        return "ok"

    @app.post("/forget")
    def forget() -> str:
        session.permanent = False
        return "ok"

    @app.post("/cart")
    def cart() -> str:
        session.setdefault("cart", [])
        session["cart"].append("book")  # changed in place...
        session.modified = True  # ...and Flask's idiom to say so
        return "ok"

    @app.get("/seed")
    def seed() -> str:
        session["a"] = session["b"] = "old"
        return "ok"

    @app.get("/cart-reset")
    def cart_reset() -> str:
        session["cart"] = []
        return "ok"

    @app.get("/write/<key>")
    def write(key: str) -> str:
        session[key] = "new"
        rendezvous.wait()
        return "ok"

    @app.route("/form", methods=["GET", "POST"])
    def form() -> tuple[str, int]:
        form = NameForm()
        if form.validate_on_submit():
            return f"hello {form.name.data}", 200
        return f"token={form.csrf_token.current_token}", 400 if form.errors else 200

    return app, interface


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[AppFactory]:
    """``app, interface = make(**init_app options)``, on memory or a private Redis."""
    (tmp_path / "style.css").write_text("body {}")
    made: list[FlaskSessionInterface] = []

    def factory(**options: Any) -> tuple[Flask, FlaskSessionInterface]:
        options.setdefault("gc_interval", None)
        if request.param == "redis" and "provider" not in options:
            options["provider"] = "redis"
            options["provider_options"] = {"url": request.getfixturevalue("redis_url")}
        app, interface = build(tmp_path, **options)
        made.append(interface)
        return app, interface

    yield factory
    for interface in made:
        interface.close()


def test_flask_session_is_a_wsgi_session(make: AppFactory) -> None:
    app, _ = make()
    with app.test_request_context("/"):
        app.preprocess_request()
        assert isinstance(session._get_current_object(), Session)  # type: ignore[attr-defined]
    client = app.test_client()
    assert client.get("/").text == "visits=1"
    assert client.get("/").text == "visits=2"


def test_no_secret_key_needed(make: AppFactory) -> None:
    app, _ = make()
    assert app.secret_key is None
    client = app.test_client()
    client.post("/login/alice")
    assert client.get("/me").json == {"user": "alice", "flashes": [["info", "Welcome, alice"]]}


def test_flask_login_flow_rotates_the_id(make: AppFactory) -> None:
    app, interface = make()
    client = app.test_client()
    client.get("/")
    before = client.get_cookie("session")
    assert before is not None
    client.post("/login/alice")
    logged_in = client.get_cookie("session")
    assert logged_in is not None and logged_in.value != before.value
    assert interface.manager.load(before.value) is None  # the pre-login id is dead
    assert client.get("/me").json["user"] == "alice"
    assert client.get("/").text == "visits=2"  # the data moved with the session
    assert [s.handle for s in interface.manager.sessions_of("alice")]  # indexed by _user_id

    client.post("/logout")
    after = client.get_cookie("session")
    assert after is not None and after.value != logged_in.value
    assert interface.manager.load(logged_in.value) is None
    me = client.get("/me").json
    assert me["user"] is None
    assert me["flashes"] == [["message", "<b>bye</b>"]]
    # Presenting the logged-in id again logs nobody in.
    replay = app.test_client()
    replay.set_cookie("session", logged_in.value)
    assert replay.get("/me").json["user"] is None


def test_flash_is_shown_once(make: AppFactory) -> None:
    app, _ = make()
    client = app.test_client()
    client.post("/login/bob")
    assert client.get("/me").json["flashes"] == [["info", "Welcome, bob"]]
    assert client.get("/me").json["flashes"] == []


def test_flask_wtf_csrf(make: AppFactory) -> None:
    app, _ = make()
    app.config["SECRET_KEY"] = "flask-wtf-signs-its-tokens-with-this"  # Flask-WTF's own need
    client = app.test_client()
    refused = client.post("/form", data={"name": "x"})
    assert refused.status_code == 400
    token = client.get("/form").text.removeprefix("token=")
    accepted = client.post("/form", data={"name": "carol", "csrf_token": token})
    assert accepted.text == "hello carol"
    other = app.test_client()  # another session: the token is not its own
    other.get("/form")
    assert other.post("/form", data={"name": "x", "csrf_token": token}).status_code == 400


def test_permanent_gives_a_persistent_cookie(make: AppFactory) -> None:
    app, interface = make(max_lifetime=600, permanent_lifetime=7200)
    client = app.test_client()
    first = client.get("/")
    assert "Max-Age" not in first.headers["Set-Cookie"]  # a browser-session cookie
    response = client.post("/remember")
    assert "Max-Age=7200" in response.headers["Set-Cookie"]
    sid = client.get_cookie("session")
    assert sid is not None
    record = interface.manager.load(sid.value)
    assert record is not None and (record.idle, record.persistent) == (7200, True)
    assert "Max-Age=7200" in client.get("/").headers["Set-Cookie"]  # refreshed on use
    response = client.post("/forget")
    assert "Max-Age" not in response.headers["Set-Cookie"]
    record = interface.manager.load(sid.value)
    assert record is not None and (record.idle, record.persistent) == (600, False)


def test_permanent_session_lifetime_from_the_config(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=3)
    interface = init_app(app, gc_interval=None)

    @app.get("/")
    def index() -> str:
        session["user"] = "dora"  # a lifetime alone, on an empty session, is not stored
        session.permanent = True
        return "ok"

    try:
        assert "Max-Age=10800" in app.test_client().get("/").headers["Set-Cookie"]
    finally:
        interface.close()


def test_session_cookie_config_is_honoured_and_options_win(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_DOMAIN="example.com",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PARTITIONED=True,
    )
    interfaces = [init_app(app, gc_interval=None)]

    @app.get("/app/")
    def index() -> str:
        session["x"] = 1
        return "ok"

    try:
        cookie = app.test_client().get("/app/", base_url="https://example.com").headers["Set-Cookie"]
        assert cookie.startswith("sid=")
        for part in ("Path=/app", "Domain=example.com", "Secure", "SameSite=Strict", "Partitioned"):
            assert part in cookie
        assert "HttpOnly" not in cookie
        interfaces.append(init_app(app, gc_interval=None, cookie_name="mine", httponly=True))
        cookie = app.test_client().get("/app/", base_url="https://example.com").headers["Set-Cookie"]
        assert cookie.startswith("mine=") and "HttpOnly" in cookie and "Path=/app" in cookie
    finally:
        for interface in interfaces:
            interface.close()


def test_bad_option_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_lifetime"):
        init_app(Flask(__name__), max_lifetime=-5)
    app = Flask(__name__)
    app.config["SESSION_COOKIE_SAMESITE"] = "sometimes"
    with pytest.raises(ValueError, match="samesite"):
        init_app(app)


def test_static_files_and_untouched_routes_cost_nothing(make: AppFactory) -> None:
    # Without Flask-Login: its after_request hook reads the session on every
    # request (see the next test).
    store = CountingMemory()
    app, _ = make(provider=store, with_login=False)
    client = app.test_client()
    for path in ("/static/style.css", "/untouched"):  # without a cookie
        with client.get(path) as response:
            assert response.status_code == 200
            assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    client.get("/")
    calls = store.calls
    for path in ("/static/style.css", "/untouched"):  # with one
        with client.get(path) as response:
            assert "Set-Cookie" not in response.headers
    assert store.calls == calls


def test_with_flask_login_static_files_load_but_never_write(make: AppFactory) -> None:
    store = CountingMemory()
    app, _ = make(provider=store)
    client = app.test_client()
    client.get("/")
    calls = store.calls
    with client.get("/static/style.css") as response:
        assert "Set-Cookie" not in response.headers
        assert response.headers["Vary"] == "Cookie"  # it was read
    assert store.calls == calls + 1  # one load, nothing written


@pytest.mark.parametrize(
    ("app_vary", "sent"),
    [(None, "Cookie"), ("Accept-Encoding", "Accept-Encoding, Cookie"), ("Cookie", "Cookie")],
    ids=["none", "other", "cookie"],
)
def test_vary_cookie_joins_the_apps_own_vary(app_vary: str | None, sent: str) -> None:
    app = Flask(__name__)
    interface = init_app(app, gc_interval=None)

    @app.get("/")
    def index() -> Any:
        session["n"] = 1
        response = make_response("ok")
        if app_vary is not None:
            response.headers["Vary"] = app_vary
        return response

    with app.test_client().get("/") as response:
        assert response.headers.getlist("Vary") == [sent]  # one header, no token twice
    interface.close()


def test_in_place_change_with_modified(make: AppFactory) -> None:
    app, interface = make()
    client = app.test_client()
    client.post("/cart")
    client.post("/cart")
    sid = client.get_cookie("session")
    assert sid is not None
    record = interface.manager.load(sid.value)
    assert record is not None and record.data["cart"] == ["book", "book"]


def test_concurrent_requests_writing_different_keys_keep_both(make: AppFactory) -> None:
    app, interface = make()
    client = webtest.TestApp(app)
    client.get("/seed")
    concurrently(client, ["/write/a", "/write/b"])  # each read both keys as "old"
    record = interface.manager.load(client.cookies["session"])
    assert record is not None
    assert (record.data["a"], record.data["b"]) == ("new", "new")


def test_modified_after_a_change_in_place_writes_only_that_key(make: AppFactory) -> None:
    """Flask's idiom must not write the other keys back: a write another
    request made to them meanwhile is kept."""
    app, interface = make()
    grown, go = threading.Event(), threading.Event()

    @app.get("/grow")
    def grow() -> str:
        session["cart"].append("pen")
        session.modified = True
        grown.set()
        go.wait(10)  # meanwhile another request writes "b"
        return "ok"

    @app.get("/put-b")
    def put_b() -> str:
        session["b"] = "new"
        return "ok"

    client = webtest.TestApp(app)
    client.get("/seed")
    client.get("/cart-reset")
    cookie = {"Cookie": f"session={client.cookies['session']}"}
    grow_request = threading.Thread(
        target=webtest.TestApp(app).get, args=("/grow",), kwargs={"headers": cookie}
    )
    grow_request.start()
    assert grown.wait(10)
    client.get("/put-b")
    go.set()
    grow_request.join(10)
    record = interface.manager.load(client.cookies["session"])
    assert record is not None
    assert (record.data["cart"], record.data["a"], record.data["b"]) == (["pen"], "old", "new")


def test_session_transaction_in_the_test_client(make: AppFactory) -> None:
    app, _ = make()
    client = app.test_client()
    with client.session_transaction() as sess:
        assert isinstance(sess, FlaskSession)
        sess["visits"] = 41
    assert client.get("/").text == "visits=42"


def test_init_app_in_an_app_factory_and_expiry(tmp_path: Path) -> None:
    clock = FakeClock()

    def create_app() -> Flask:
        app = Flask(__name__)
        init_app(app, max_lifetime=60, gc_interval=None, clock=clock)

        @app.get("/")
        def index() -> str:
            session["n"] = session.get("n", 0) + 1
            return str(session["n"])

        return app

    app = create_app()
    client = app.test_client()
    assert client.get("/").text == "1"
    assert not app.extensions["wsgi_session"].manager.gc_running  # gc_interval=None
    clock.advance(59)
    assert client.get("/").text == "2"  # the idle timeout slides
    clock.advance(61)
    assert client.get("/").text == "1"  # expired: a new session
    app.extensions["wsgi_session"].close()


def test_the_gc_thread_starts_with_the_first_use(tmp_path: Path) -> None:
    app, interface = build(tmp_path, gc_interval=60)
    try:
        assert not interface.manager.gc_running
        app.test_client().get("/")
        assert interface.manager.gc_running
    finally:
        interface.close()
    assert not interface.manager.gc_running


def test_signed_cookie_with_a_secret(make: AppFactory) -> None:
    app, interface = make(secret="a-secret-of-at-least-16-bytes")
    client = app.test_client()
    client.get("/")
    value = client.get_cookie("session")
    assert value is not None
    sid, _, signature = value.value.partition(".")
    assert signature and interface.manager.load(sid) is not None
    assert client.get("/").text == "visits=2"
    forged = app.test_client()
    other = "A" if signature[0] != "A" else "B"
    forged.set_cookie("session", f"{sid}.{other}{signature[1:]}")
    assert forged.get("/").text == "visits=1"  # a bad signature: a new session
