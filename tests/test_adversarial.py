"""An adversarial review's findings: each test once broke a promise through the public API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import webtest

from wsgi_session import Manager, Session, SessionMiddleware, get_session
from wsgi_session.cookies import MAX_CANDIDATES, SessionCookie
from wsgi_session.ids import new_id
from wsgi_session.providers.memory import MemoryProvider

pytest_plugins = ["redis_server"]

STORES = ["memory", "sqlite", "redis"]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, dict[str, Any] | None]:
    """A provider name and its options: memory, a SQLite file, a private Redis."""
    name = request.param
    if name == "memory":
        return name, None
    if name == "sqlite":
        return name, {"path": str(tmp_path / "sessions.db")}
    return name, {"url": request.getfixturevalue("redis_url")}


# -- cookie tossing ------------------------------------------------------------


def _user_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = get_session(environ)
    path = environ["PATH_INFO"]
    if path == "/login":
        session.regenerate()
        session["user"] = environ["QUERY_STRING"]
    elif path == "/logout":
        session.destroy()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session.get("user")).encode()]


def _cookie_of(res: webtest.TestResponse, name: str = "session_id") -> str:
    for header in res.headers.getall("Set-Cookie"):
        pair = header.split(";", 1)[0]
        key, _, value = pair.partition("=")
        if key == name and value:
            return value
    raise AssertionError("no session cookie set")


def _as(mw: SessionMiddleware, header: str) -> str:
    return webtest.TestApp(mw).get("/", headers={"Cookie": header}).text


@pytest.mark.parametrize("secret", [None, "s" * 32], ids=["unsigned", "signed"])
def test_dead_ids_in_front_cannot_push_the_victims_cookie_out_of_sight(
    make_app: Any, secret: str | None
) -> None:
    """Tossing: the attacker sends its own live id after enough dead ones that
    the victim's cookie falls beyond the candidates looked up. With a secret,
    the dead ids are the attacker's own logged-out (still signed) cookies."""
    mw, _ = make_app(app=_user_app, secret=secret)
    victim = _cookie_of(webtest.TestApp(mw).get("/login?alice"))
    attacker = _cookie_of(webtest.TestApp(mw).get("/login?mallory"))
    dead = []
    for _ in range(MAX_CANDIDATES - 1):
        client = webtest.TestApp(mw)
        cookie = _cookie_of(client.get("/login?x"))
        client.get("/logout")
        dead.append(cookie)
    assert _as(mw, f"session_id={victim}") == "alice"
    # Browsers send longer paths first: the tossed cookies come before the victim's.
    tossed = "; ".join(f"session_id={v}" for v in (*dead, attacker, victim))
    assert _as(mw, tossed) == "None"  # ambiguous: fail closed, neither account
    assert _as(mw, f"session_id={victim}") == "alice"  # and the victim is not logged out


def test_a_header_of_made_up_ids_still_costs_at_most_the_candidates(make_app: Any) -> None:
    """The fix for the test above must not turn a long header into more lookups."""
    loads = []

    class Counting(MemoryProvider):
        def load(self, sid: str, now: float) -> Any:
            loads.append(sid)
            return super().load(sid, now)

    mw, _ = make_app(app=_user_app, provider=Counting())
    assert _as(mw, "; ".join(f"session_id={new_id()}" for _ in range(100))) == "None"
    assert len(loads) <= MAX_CANDIDATES


# -- values changed in place ---------------------------------------------------


def _in_place_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = get_session(environ)
    path = environ["PATH_INFO"]
    if path == "/new":
        session["items"] = []
        session["items"].append((1, 2))  # a tuple is stored as a list, as at assignment
    elif path == "/append":
        session["items"].append((3, 4))
    elif path == "/int-key":
        session["items"].append({5: "five"})  # a dict key that JSON would turn into "5"
    elif path == "/object":
        session.setdefault("things", []).append(object())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(session.get("items")).encode()]


def test_a_value_changed_in_place_is_stored_as_an_assignment_would_be(
    make_app: Any, store: tuple[str, dict[str, Any] | None]
) -> None:
    """Every store gives back the same value: lists, never the tuples put in place."""
    name, options = store
    _, client = make_app(app=_in_place_app, provider=name, provider_options=options)
    client.get("/new")
    assert client.get("/").text == "[[1, 2]]"
    client.get("/append")
    assert client.get("/").text == "[[1, 2], [3, 4]]"


@pytest.mark.parametrize("path", ["/int-key", "/object"])
def test_a_value_no_store_can_hold_fails_clearly_when_put_in_place(
    make_app: Any, store: tuple[str, dict[str, Any] | None], path: str
) -> None:
    """A value refused at assignment is refused when put in place too, the
    same way on every store (memory kept it, Redis failed with json's error),
    and the stored session keeps its last good state."""
    name, options = store
    _, client = make_app(app=_in_place_app, provider=name, provider_options=options)
    client.get("/new")
    with pytest.raises(TypeError, match="session value for key '(items|things)'"):
        client.get(path)
    assert client.get("/").text == "[[1, 2]]"


def test_max_session_bytes_holds_for_changes_in_place_and_setdefault(make_app: Any) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/grow":
            session.setdefault("cart", []).append("x" * 500)
        elif environ["PATH_INFO"] == "/grow-stored":
            session["cart"].append("y" * 500)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(repr(session.get("cart")))).encode()]

    _, client = make_app(app=app, max_session_bytes=800)
    client.get("/grow")  # 500 bytes: fine
    with pytest.raises(ValueError, match="max_session_bytes=800"):
        client.get("/grow-stored")  # in place, past the bound
    assert client.get("/").text == str(len(repr(["x" * 500])))  # not stored
    _, fresh = make_app(app=app, max_session_bytes=400)
    with pytest.raises(ValueError, match="max_session_bytes=400"):
        fresh.get("/grow")  # setdefault, then in place, on a new session


def test_a_refused_value_is_not_quoted_in_the_error(make_app: Any) -> None:
    """An exception message ends up in logs: it names the key, never the value."""
    manager = Manager(gc_interval=None)
    session = Session(manager, SessionCookie(), None)
    with pytest.raises(TypeError) as refused:
        session["card"] = {("4111111111111111", "12/30"): "visa"}
    assert "4111" not in str(refused.value) and "card" in str(refused.value)
    manager.close()


# -- user ids ------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    ["bob\ud800", "bob\x00", "b o\nb", "bob%s*"],
    ids=["surrogate", "nul", "space", "pattern"],
)
def test_any_str_user_id_is_indexed_on_every_store(
    make_app: Any, store: tuple[str, dict[str, Any] | None], user: str
) -> None:
    """Any str is a user (values allow lone surrogates, say from a JSON body's
    "\\ud800"); SQLite raised a bare UnicodeEncodeError at save (a 500)."""
    name, options = store

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/login":
            session["user_id"] = user
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    mw, client = make_app(app=app, provider=name, provider_options=options, user_key="user_id")
    client.get("/login")
    client.get("/login")
    assert len(mw.manager.sessions_of(user)) == 1
    assert mw.manager.sessions_of("bob\ufffd") == [] and mw.manager.sessions_of("bob") == []
    assert mw.manager.revoke_user(user) == 1
    assert mw.manager.sessions_of(user) == []


def test_revoke_user_refuses_a_keep_that_is_not_a_handle() -> None:
    manager = Manager(gc_interval=None, user_key="user")
    with pytest.raises(TypeError, match="keep"):
        manager.revoke_user("alice", keep=42)  # type: ignore[arg-type]
    manager.close()


# -- log out everywhere racing a regenerate ------------------------------------


class _RegeneratesDuringRevoke(MemoryProvider):
    """A real memory store in which, once, a request of the user regenerates
    its session just after revoke_user listed the sessions (the moment an
    attacker holding a stolen cookie would aim for)."""

    def __init__(self) -> None:
        super().__init__()
        self.race: Callable[[], None] | None = None

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Any]]:
        found = super().sessions_of(user, now)
        race, self.race = self.race, None
        if race is not None:
            race()
        return found


def test_log_out_everywhere_ends_a_session_renamed_meanwhile(clock: Any) -> None:
    provider = _RegeneratesDuringRevoke()
    manager = Manager(provider, gc_interval=None, user_key="user", clock=clock)
    thief = Session(manager, SessionCookie(), None)
    thief["user"] = "alice"
    thief.save()
    stolen = thief.sid
    assert stolen is not None
    renamed: list[str | None] = []

    def regenerate() -> None:
        # Another thread, as another request would be.
        t = threading.Thread(target=lambda: renamed.append(manager.regenerate(stolen)))
        t.start()
        t.join()

    provider.race = regenerate
    manager.revoke_user("alice")
    new = renamed[0]
    assert new is not None  # the thief's request did regenerate
    assert manager.sessions_of("alice") == []
    assert manager.load(new) is None
    manager.close()


# -- handles (these held; kept as regression tests) -----------------------------


def test_a_crafted_handle_revokes_no_session_of_a_user_it_does_not_name(
    make_app: Any, store: tuple[str, dict[str, Any] | None]
) -> None:
    """A handle carries its user: bob's digest under alice's name, or a bare
    digest (a session without a user is in no index), revokes nothing."""
    name, options = store
    mw, _ = make_app(app=_user_app, provider=name, provider_options=options, user_key="user")
    manager = mw.manager
    webtest.TestApp(mw).get("/login?alice")
    anonymous = Session(manager, SessionCookie(), None)
    anonymous["cart"] = [1]
    anonymous.save()
    bob = webtest.TestApp(mw)
    bob.get("/login?bob")
    (handle,) = [info.handle for info in manager.sessions_of("bob")]
    digest = handle.partition(".")[0]
    (alice,) = manager.sessions_of("alice")
    alice_part = alice.handle.partition(".")[2]
    anonymous_handle = anonymous.handle
    assert anonymous_handle is not None and "." not in anonymous_handle
    for crafted in (
        f"{digest}.{alice_part}",
        digest,
        f"{digest}.",
        anonymous_handle,
        f"{anonymous_handle}.{alice_part}",
        f"{digest}.!!",
        f"{digest}.\udcff",
    ):
        assert manager.revoke(crafted) is False
    assert bob.get("/").text == "bob"
    assert anonymous.sid is not None and manager.load(anonymous.sid) is not None
    assert manager.revoke(handle) is True and bob.get("/").text == "None"


# -- changes in place while a body streams -------------------------------------


def _streaming_app(environ: dict[str, Any], start_response: Any) -> Any:
    session = get_session(environ)
    path = environ["PATH_INFO"]
    if path == "/setdefault":
        cart = session.setdefault("cart", [])
        session["visits"] = session.get("visits", 0) + 1  # the save at the headers writes
    elif path == "/assigned":
        session["cart"] = []
        cart = session["cart"]
    else:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(session.get("cart")).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body() -> Any:
        yield b"first chunk: the headers (and the session) went out"
        cart.append(path)  # saved when the body is closed, as the docs promise

    return body()


@pytest.mark.parametrize("path", ["/setdefault", "/assigned"])
def test_a_list_changed_in_place_while_the_body_streams_is_saved(
    make_app: Any, store: tuple[str, dict[str, Any] | None], path: str
) -> None:
    name, options = store
    _, client = make_app(app=_streaming_app, provider=name, provider_options=options)
    client.get(path)  # a new session: stored at the headers, changed after
    assert client.get("/").text == repr([path])
    client.get(path)  # a stored one
    assert client.get("/").text == repr([path] * (2 if path == "/setdefault" else 1))


def test_a_list_made_circular_or_too_deep_in_place_fails_clearly(clock: Any) -> None:
    """No RecursionError, no json message: the error names the key, as at assignment."""
    manager = Manager(gc_interval=None, clock=clock)
    for make_bad in ("circular", "deep"):
        session = Session(manager, SessionCookie(), None)
        session["tree"] = []
        session.save()
        tree = session["tree"]
        if make_bad == "circular":
            tree.append(tree)
        else:
            for _ in range(5000):
                tree.append([])
                tree = tree[-1]
        assert session.modified
        with pytest.raises(ValueError, match="session value for key 'tree'"):
            session.save()
    manager.close()


# -- concurrent requests at log in ---------------------------------------------


@pytest.mark.parametrize(
    "then",
    ["write", "regenerate"],
)
def test_a_request_racing_a_regenerate_does_not_delete_the_new_cookie(
    make_app: Any, then: str
) -> None:
    """The login request moves the session to a new id and sets its cookie;
    a request that loaded the old id just before, and writes, finds it gone.
    Its writes go, but its response must not delete the cookie: the browser
    may already hold the new id under that name (the user would be logged
    out right after logging in). Nor must a second regenerate that finds the
    session gone. A dead id left in a cookie is harmless."""
    mw: SessionMiddleware
    moved: list[str | None] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/race":
            old = session.sid  # loaded
            assert old is not None
            moved.append(mw.manager.regenerate(old))  # the log in, in another request
            if then == "write":
                session["last_seen"] = "/race"
            else:
                session.regenerate()  # a rotation of its own
        else:
            session["n"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b""]

    mw, client = make_app(app=app)
    client.get("/")
    res = client.get("/race")
    assert moved[0] is not None and mw.manager.load(moved[0]) is not None
    assert res.headers.getall("Set-Cookie") == []


# -- lifetimes no clock or store can hold --------------------------------------


@pytest.mark.parametrize(
    "option", ["max_lifetime", "absolute_lifetime", "gc_interval"], ids=lambda o: o
)
def test_a_lifetime_past_what_timers_and_stores_hold_is_refused_at_construction(
    option: str,
) -> None:
    """``sys.maxsize`` seconds ("never") passed the check, then Redis refused
    every session (PEXPIRE out of range) and the GC thread died at its first
    wait (OverflowError: timestamp out of range)."""
    with pytest.raises(ValueError, match=option):
        Manager(**{option: 2**63})
    Manager(**{option: 10**9}).close()  # about 31 years: fine everywhere


def test_set_lifetime_refuses_an_idle_timeout_no_store_can_hold(clock: Any) -> None:
    manager = Manager(gc_interval=None, clock=clock)
    session = Session(manager, SessionCookie(), None)
    session["a"] = 1
    with pytest.raises(ValueError, match="idle"):
        session.set_lifetime(1e300, persistent=True)
    manager.close()


def test_a_long_lifetime_works_on_redis(make_app: Any, redis_url: str) -> None:
    _, client = make_app(provider="redis", provider_options={"url": redis_url}, max_lifetime=10**9)
    client.get("/")
    assert client.get("/").text.startswith("n=2")


# -- PEP 3333 ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["session", "HTTP_COOKIE", "wsgi.input", "wsgi.session"])
def test_an_environ_key_pep_3333_does_not_allow_is_refused_at_construction(key: str) -> None:
    """A key without a dot must hold a str (wsgiref.validate fails every
    request), and may be the server's own (HTTP_COOKIE); wsgi.* is the server's."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    with pytest.raises(ValueError, match="environ_key"):
        SessionMiddleware(app, environ_key=key, gc_interval=None)
