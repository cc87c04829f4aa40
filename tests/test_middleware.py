"""SessionMiddleware end to end through webtest: cookies, laziness, expiry,
the response plumbing (start_response, write, close, streaming, errors)."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import webtest
from conftest import FakeClock, counter_app

from wsgi_session import Record, SessionMiddleware, UnknownProviderError, get_session
from wsgi_session.providers.memory import MemoryProvider


def data_of(mw: SessionMiddleware, sid: str | None) -> dict[str, Any] | None:
    """The stored data of ``sid``, or None if it is not live."""
    record = None if sid is None else mw.manager.load(sid)
    return None if record is None else record.data


def cookie_of(response: webtest.TestResponse) -> str | None:
    """The session id the response sets ('' for a deletion), or None."""
    values = [v for v in response.headers.getall("Set-Cookie") if v.startswith("session_id=")]
    assert len(values) <= 1
    return values[0].split(";")[0].split("=", 1)[1] if values else None


def test_untouched_request_stores_nothing_and_sends_no_cookie(make_app) -> None:
    mw, client = make_app()
    r = client.get("/none")
    assert r.text == "untouched"
    assert "Set-Cookie" not in r.headers
    assert "Vary" not in r.headers
    assert len(mw.manager.provider) == 0


def test_reading_visitor_gets_empty_session_and_no_cookie(make_app) -> None:
    mw, client = make_app()
    r = client.get("/peek")
    assert r.text == "n=0 user=None"
    assert "Set-Cookie" not in r.headers
    assert r.headers["Vary"] == "Cookie"
    assert len(mw.manager.provider) == 0


def test_first_write_stores_and_sets_a_safe_cookie(make_app) -> None:
    mw, client = make_app()
    r = client.get("/")
    (header,) = r.headers.getall("Set-Cookie")
    value, *attrs = [part.strip() for part in header.split(";")]
    assert value.startswith("session_id=")
    assert len(value.split("=", 1)[1]) == 43
    assert attrs == ["Path=/", "HttpOnly", "SameSite=Lax"]
    assert len(mw.manager.provider) == 1


def test_cookie_round_trip_keeps_the_session(make_app) -> None:
    _, client = make_app()
    sid = cookie_of(client.get("/"))
    r = client.get("/")
    assert r.text == "n=2 user=None"
    assert cookie_of(r) is None  # nothing new to tell the client
    assert client.get("/").text == "n=3 user=None"
    assert client.cookies["session_id"] == sid


def test_sliding_idle_timeout(make_app, clock: FakeClock) -> None:
    _, client = make_app(max_lifetime=100)
    first = cookie_of(client.get("/"))
    for _ in range(5):
        clock.advance(90)  # each visit slides the expiry
        client.get("/peek")
    assert client.get("/").text == "n=2 user=None"
    clock.advance(101)
    r = client.get("/")
    assert r.text == "n=1 user=None"  # the old session was dead, without any GC
    assert cookie_of(r) not in (None, first)


def test_absolute_lifetime_ends_a_busy_session(make_app, clock: FakeClock) -> None:
    _, client = make_app(max_lifetime=100, absolute_lifetime=250)
    client.get("/")
    for _ in range(4):
        clock.advance(60)
        client.get("/")
    assert client.get("/peek").text == "n=5 user=None"
    clock.advance(20)  # 260 s after creation, 20 s after the last use
    assert client.get("/peek").text == "n=0 user=None"


@pytest.mark.parametrize(
    "header",
    [
        "session_id=" + "A" * 43,  # well-formed but unknown: forged
        "session_id=short",
        "session_id=" + "A" * 44,
        "session_id=" + "A" * 42 + "!",
        'session_id="' + "A" * 43,  # broken quote
        "session_id=",
        "session_id",
        ";;;; ; =; ==",
        "session_id=\x00\x01\x7f" + "A" * 40,
        "session_id=\xe9\xff" + "A" * 41,
        "a=1; session_id=" + "B" * 43 + "; session_id=" + "C" * 43,
        "x=" + "y" * 100_000,
    ],
    ids=[
        "forged",
        "short",
        "long",
        "bad-alphabet",
        "broken-quote",
        "empty",
        "no-equals",
        "junk",
        "control-bytes",
        "non-ascii",
        "duplicates",
        "huge",
    ],
)
def test_bad_or_foreign_cookies_mean_a_fresh_session(make_app, header: str) -> None:
    mw, client = make_app()
    r = client.get("/", headers={"Cookie": header})
    assert r.status_int == 200
    assert r.text == "n=1 user=None"
    sid = cookie_of(r)
    assert sid and sid not in header  # never the client's id
    assert len(mw.manager.provider) == 1


def test_quoted_cookie_value_is_accepted(make_app) -> None:
    mw, client = make_app()
    sid = cookie_of(client.get("/"))
    client.cookies.clear()
    r = client.get("/", headers={"Cookie": f'other="a b"; session_id="{sid}"'})
    assert r.text == "n=2 user=None"


def test_duplicate_cookie_names_try_each_well_formed_value(make_app) -> None:
    _, client = make_app()
    sid = cookie_of(client.get("/"))
    client.cookies.clear()
    stale = "Z" * 43
    r = client.get("/", headers={"Cookie": f"session_id={stale}; session_id={sid}"})
    assert r.text == "n=2 user=None"


def test_regenerate_moves_data_to_a_new_id_and_kills_the_old(make_app) -> None:
    _, client = make_app()
    old = cookie_of(client.get("/"))
    r = client.get("/login")
    new = cookie_of(r)
    assert new and new != old
    assert r.text == "n=1 user=alice"
    client.cookies.clear()
    assert client.get("/peek", headers={"Cookie": f"session_id={old}"}).text == "n=0 user=None"
    assert client.get("/peek", headers={"Cookie": f"session_id={new}"}).text == "n=1 user=alice"


def test_regenerate_on_a_session_created_in_the_same_request(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        session["a"] = 1
        session.save()  # stored now, under a first id
        first = session.sid
        session.regenerate()
        assert session.sid not in (None, first)
        session["b"] = 2
        start_response("200 OK", [])
        return [first.encode()]

    mw, client = make_app(app=app)
    r = client.get("/")
    sid = cookie_of(r)
    assert sid != r.text
    assert data_of(mw, sid) == {"a": 1, "b": 2}
    assert mw.manager.load(r.text) is None
    assert len(mw.manager.provider) == 1


def test_destroy_removes_state_and_deletes_the_cookie(make_app) -> None:
    mw, client = make_app()
    sid = cookie_of(client.get("/"))
    r = client.get("/logout")
    (header,) = r.headers.getall("Set-Cookie")
    assert header.startswith("session_id=;")
    assert "Max-Age=0" in header
    assert "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header
    assert len(mw.manager.provider) == 0
    client.cookies.clear()
    assert client.get("/peek", headers={"Cookie": f"session_id={sid}"}).text == "n=0 user=None"


def test_writes_after_destroy_start_a_new_session(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/flash":
            session.destroy()
            session["flash"] = "bye"
        else:
            session["user"] = "alice"
        start_response("200 OK", [])
        return [b""]

    mw, client = make_app(app=app)
    old = cookie_of(client.get("/"))
    new = cookie_of(client.get("/flash"))
    assert new and new != old
    assert data_of(mw, new) == {"flash": "bye"}
    assert mw.manager.load(old) is None


def test_vary_is_merged_not_duplicated(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ).get("x")
        start_response("200 OK", [("Vary", environ.get("HTTP_X_VARY", "Accept-Encoding"))])
        return [b""]

    _, client = make_app(app=app)
    assert client.get("/").headers.getall("Vary") == ["Accept-Encoding", "Cookie"]
    assert client.get("/", headers={"X-Vary": "Cookie"}).headers.getall("Vary") == ["Cookie"]
    assert client.get("/", headers={"X-Vary": "*"}).headers.getall("Vary") == ["*"]


def test_the_apps_header_list_is_not_mutated(make_app) -> None:
    seen: list[list[tuple[str, str]]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ)["a"] = 1
        headers = [("Content-Type", "text/plain")]
        seen.append(headers)
        start_response("200 OK", headers)
        return [b""]

    _, client = make_app(app=app)
    r = client.get("/")
    assert "Set-Cookie" in r.headers
    assert seen == [[("Content-Type", "text/plain")]]


def test_write_before_start_response_returns_still_gets_its_cookie(make_app) -> None:
    # Many bare apps call start_response first; the real one is deferred
    # until the app returns, so the session written after it still counts.
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        get_session(environ)["late"] = True
        return [b"ok"]

    mw, client = make_app(app=app)
    sid = cookie_of(client.get("/"))
    assert data_of(mw, sid) == {"late": True}


def test_legacy_write_callable(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ)["w"] = 1
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"hello ")
        return [b"world"]

    mw, client = make_app(app=app)
    r = client.get("/")
    assert r.text == "hello world"
    assert data_of(mw, cookie_of(r)) == {"w": 1}


class ClosingBody:
    def __init__(self, chunks: list[bytes], on_close: Any) -> None:
        self.chunks = chunks
        self.on_close = on_close
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True
        self.on_close()


def test_the_app_iterables_close_is_called_and_late_writes_are_kept(make_app) -> None:
    bodies: list[ClosingBody] = []

    def app(environ: dict[str, Any], start_response: Any) -> ClosingBody:
        session = get_session(environ)
        session["n"] = session.get("n", 0) + 1
        start_response("200 OK", [])

        def late() -> None:
            session["closed"] = session.get("closed", 0) + 1

        body = ClosingBody([b"a", b"b"], late)
        bodies.append(body)
        return body

    mw, client = make_app(app=app)
    sid = cookie_of(client.get("/"))
    client.get("/")
    assert all(b.closed for b in bodies)
    assert data_of(mw, sid) == {"n": 2, "closed": 2}


def test_streaming_writes_to_an_existing_session_are_kept(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        session = get_session(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(3):
            session[f"chunk{i}"] = i
            yield b"x"

    mw, client = make_app()
    sid = cookie_of(client.get("/"))
    mw.app = app
    assert client.get("/").text == "xxx"
    assert data_of(mw, sid) == {"n": 1, "chunk0": 0, "chunk1": 1, "chunk2": 2}


class Boom(Exception):
    pass


def test_app_exceptions_propagate_and_earlier_writes_are_kept(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/boom":
            session["before"] = "kept"
            raise Boom("the app's own error")
        session["n"] = 1
        start_response("200 OK", [])
        return [b""]

    mw, client = make_app(app=app)
    sid = cookie_of(client.get("/"))
    with pytest.raises(Boom, match="the app's own error"):
        client.get("/boom")
    assert data_of(mw, sid) == {"n": 1, "before": "kept"}


def test_exc_info_is_passed_through(make_app) -> None:
    # An app that catches its error and starts an error response before
    # any header went out: the second start_response must reach the server.
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ)["a"] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise Boom
        except Boom:
            import sys

            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"error page"]

    mw, client = make_app(app=app)
    r = client.get("/", status=500)
    assert r.text == "error page"
    assert data_of(mw, cookie_of(r)) == {"a": 1}


def test_exc_info_after_headers_went_out_reraises(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        try:
            raise Boom("mid-stream")
        except Boom:
            import sys

            start_response("500 Internal Server Error", [], sys.exc_info())

    sent: list[str] = []

    def server_start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        if exc_info is not None and sent:  # what PEP 3333 asks of a server
            raise exc_info[1].with_traceback(exc_info[2])
        sent.append(status)
        return lambda data: None

    mw, _ = make_app(app=app)
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    body = mw(environ, server_start_response)
    with pytest.raises(Boom, match="mid-stream"):
        list(body)
    assert sent == ["200 OK"]


def test_two_concurrent_requests_writing_different_keys_both_keep_them(make_app) -> None:
    barrier = threading.Barrier(2, timeout=10)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        key = environ["PATH_INFO"].strip("/")
        if key != "init":
            session.get("x")  # both requests load the same state first
            barrier.wait()
        session[key] = True
        start_response("200 OK", [])
        return [b""]

    mw, client = make_app(app=app)
    sid = cookie_of(client.get("/init"))
    results: list[int] = []

    def hit(path: str) -> None:
        results.append(
            webtest.TestApp(mw).get(path, headers={"Cookie": f"session_id={sid}"}).status_int
        )

    threads = [threading.Thread(target=hit, args=(p,)) for p in ("/left", "/right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200, 200]
    assert data_of(mw, sid) == {"init": True, "left": True, "right": True}


def test_persistent_cookie_slides_with_use(make_app) -> None:
    _, client = make_app(cookie_max_age=600)
    first = client.get("/").headers["Set-Cookie"]
    assert "Max-Age=600" in first
    again = client.get("/peek").headers["Set-Cookie"]  # re-sent on every use
    assert again == first


def test_cookie_attributes_are_configurable(make_app) -> None:
    _, client = make_app(
        cookie_name="sid",
        cookie_path="/app",
        cookie_domain="example.test",
        secure=True,
        samesite="Strict",
        httponly=False,
    )
    r = client.get("/app/x")
    header = r.headers["Set-Cookie"]
    assert header.startswith("sid=")
    assert header.split("; ")[1:] == [
        "Path=/app",
        "Domain=example.test",
        "Secure",
        "SameSite=Strict",
    ]


def test_environ_key_is_configurable(make_app) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ, "my.session")["a"] = 1
        start_response("200 OK", [])
        return [b""]

    _, client = make_app(app=app, environ_key="my.session")
    assert "Set-Cookie" in client.get("/").headers


def test_get_session_without_middleware_explains() -> None:
    with pytest.raises(Exception, match="wrap the WSGI app in SessionMiddleware"):
        get_session({})


def test_multiprocess_server_gets_one_warning_for_the_memory_provider(
    make_app, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = make_app()
    with caplog.at_level(logging.WARNING, logger="wsgi_session"):
        client.get("/", extra_environ={"wsgi.multiprocess": True})
        client.get("/", extra_environ={"wsgi.multiprocess": True})
    assert caplog.text.count("keeps sessions inside one process") == 1


def test_a_shared_provider_instance_stays_open(clock: FakeClock) -> None:
    provider = MemoryProvider()
    one = SessionMiddleware(counter_app, provider=provider, clock=clock, gc_interval=None)
    two = SessionMiddleware(counter_app, provider=provider, clock=clock, gc_interval=None)
    r = webtest.TestApp(one).get("/")
    sid = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    one.close()
    one.close()  # idempotent
    assert (
        webtest.TestApp(two).get("/", headers={"Cookie": f"session_id={sid}"}).text
        == "n=2 user=None"
    )
    two.close()
    assert len(provider) == 1


def test_middleware_as_context_manager_stops_its_gc_thread(clock: FakeClock) -> None:
    with SessionMiddleware(counter_app, gc_interval=30, clock=clock) as mw:
        webtest.TestApp(mw).get("/")
        assert mw.manager.gc_running
    assert not mw.manager.gc_running


def test_gc_thread_starts_lazily_on_the_first_request(clock: FakeClock) -> None:
    mw = SessionMiddleware(counter_app, gc_interval=30, clock=clock)
    try:
        assert not mw.manager.gc_running
        webtest.TestApp(mw).get("/none")
        assert mw.manager.gc_running
    finally:
        mw.close()


def test_unknown_provider_names_itself_and_lists_the_known() -> None:
    with pytest.raises(UnknownProviderError, match=r"'nope'.*memory.*redis"):
        SessionMiddleware(counter_app, provider="nope")


class DownProvider(MemoryProvider):
    """A store whose backend is unreachable."""

    def load(self, sid: str, now: float) -> Record | None:
        from wsgi_session import ProviderError

        raise ProviderError("store unreachable") from ConnectionError("refused")


def test_store_failure_reaches_the_app_never_an_empty_session(clock: FakeClock) -> None:
    from wsgi_session import ProviderError

    provider = DownProvider()
    mw = SessionMiddleware(counter_app, provider=provider, clock=clock, gc_interval=None)
    sid = "Q" * 43  # well-formed, so the store is asked
    with pytest.raises(ProviderError, match="unreachable"):
        webtest.TestApp(mw).get("/", headers={"Cookie": f"session_id={sid}"})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_worker_forked_without_at_fork_hooks_runs_its_own_gc_thread(clock: FakeClock) -> None:
    """uWSGI forks its workers with fork(2) itself, without Python's at-fork
    hooks, from a master that may have served a request (warm-up). The
    worker starts its own GC thread with the first session it creates."""
    libc = ctypes.CDLL(None, use_errno=True)
    with SessionMiddleware(counter_app, gc_interval=30, clock=clock) as mw:
        client = webtest.TestApp(mw)
        client.get("/")  # the master is warm: its GC thread runs
        assert mw.manager.gc_running
        pid = libc.fork()
        if pid == 0:  # the worker: only this thread, no hook has run
            code = 3
            try:
                alone = not mw.manager.gc_running  # the master's thread is not here
                served = client.get("/").text == "n=2 user=None"
                # Loads pay no system call: the first new session checks.
                waits = not mw.manager.gc_running
                fresh = webtest.TestApp(mw).get("/").text == "n=1 user=None"
                code = 0 if alone and served and waits and fresh and mw.manager.gc_running else 1
            finally:
                os._exit(code)
        assert pid > 0, ctypes.get_errno()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
