"""The response path to the letter of PEP 3333: wsgiref's server and validator
around the middleware, every kind of body, errors, exc_info and late writes."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.handlers import SimpleHandler
from wsgiref.util import FileWrapper, setup_testing_defaults
from wsgiref.validate import validator

import pytest
from conftest import FakeClock
from security_support import FlakyProvider, call, environ_for

from wsgi_session import ProviderError, SessionError, SessionMiddleware, get_session
from wsgi_session.providers.memory import MemoryProvider

App = Callable[..., Any]
TEXT = [("Content-Type", "text/plain")]


class StrictHandler(SimpleHandler):
    """wsgiref's own server, which raises what it would only log, and sees
    nothing of this process's environment."""

    os_environ: dict[str, str] = {}  # noqa: RUF012 - replaces wsgiref's class attribute

    seen: tuple[str | None, list[tuple[str, str]], bool] = (None, [], False)

    def handle_error(self) -> None:
        raise  # noqa: PLE0704 - re-raises the error run() is handling

    def close(self) -> None:
        # What the response was, before close() forgets it.
        headers = [] if self.headers is None else list(self.headers.items())
        self.seen = (self.status, headers, isinstance(self.result, FileWrapper))
        super().close()


@dataclass
class Served:
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    file_sent: bool  # the server got the app's file wrapper itself

    def cookie(self) -> str | None:
        """The session id the response sets ('' for a deletion), or None."""
        values = [v for k, v in self.headers if k == "Set-Cookie"]
        assert len(values) <= 1, values
        return values[0].split(";")[0].split("=", 1)[1] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def serve(app: App, cookie: str | None = None, path: str = "/") -> Served:
    """One request through wsgiref's server (no sockets)."""
    environ: dict[str, Any] = {"SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": ""}
    setup_testing_defaults(environ)
    if cookie is not None:
        environ["HTTP_COOKIE"] = f"session_id={cookie}"
    out = io.BytesIO()
    handler = StrictHandler(io.BytesIO(), out, io.StringIO(), environ)
    handler.run(app)
    status, headers, file_sent = handler.seen
    assert status is not None
    body = out.getvalue().split(b"\r\n\r\n", 1)[1]
    return Served(status, headers, body, file_sent)


def data_of(mw: SessionMiddleware, sid: str | None) -> dict[str, Any] | None:
    """The stored data of ``sid``, or None if it is not live."""
    record = None if sid is None else mw.manager.load(sid)
    return None if record is None else record.data


@pytest.fixture
def middleware(clock: FakeClock) -> Iterator[Callable[..., SessionMiddleware]]:
    made: list[SessionMiddleware] = []

    def factory(app: App, **options: Any) -> SessionMiddleware:
        options.setdefault("clock", clock)
        options.setdefault("gc_interval", None)
        mw = SessionMiddleware(app, **options)
        made.append(mw)
        return mw

    yield factory
    for mw in made:
        mw.close()


def use(environ: dict[str, Any]) -> bytes:
    """What every body kind does with its session, by path."""
    path = environ["PATH_INFO"]
    if path == "/none":
        return b"untouched"
    session = get_session(environ)
    if path == "/write":
        session["n"] = session.get("n", 0) + 1
    return f"n={session.get('n', 0)}".encode()


def list_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = use(environ)
    start_response("200 OK", list(TEXT))
    return [body]


def generator_body(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", list(TEXT))
    body = use(environ)  # the headers wait for the first chunk
    yield body
    yield b""


def write_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = use(environ)
    write = start_response("200 OK", list(TEXT))
    write(body)
    return []


def file_body(environ: dict[str, Any], start_response: Any) -> Any:
    body = use(environ)
    start_response("200 OK", list(TEXT))
    return environ["wsgi.file_wrapper"](io.BytesIO(body), 4)


BODIES = {"list": list_body, "generator": generator_body, "write": write_body, "file": file_body}


@pytest.mark.parametrize("kind", BODIES)
def test_every_body_kind_passes_wsgiref_validate(middleware, kind: str) -> None:
    """Validated on both sides: what the app is given (environ, start_response,
    write) and what the server gets (headers, body, close)."""
    mw = middleware(validator(BODIES[kind]))
    app = validator(mw)
    assert serve(app, path="/none").all("Set-Cookie") == []
    assert serve(app, path="/read").body == b"n=0"
    first = serve(app, path="/write")
    sid = first.cookie()
    assert first.body == b"n=1" and sid
    assert first.all("Vary") == ["Cookie"]
    again = serve(app, sid, path="/write")
    assert again.body == b"n=2" and again.cookie() is None
    assert serve(app, sid, path="/read").body == b"n=2"
    assert data_of(mw, sid) == {"n": 2}


def test_the_default_environ_key_is_a_pep_3333_extension_key(middleware) -> None:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.extend(k for k, v in environ.items() if v is get_session(environ))
        start_response("200 OK", list(TEXT))
        return [b""]

    serve(middleware(app))
    (key,) = seen
    assert "." in key


def test_a_file_wrapper_reaches_the_server_itself(middleware) -> None:
    mw = middleware(file_body)
    first = serve(mw, path="/write")
    assert first.file_sent and first.body == b"n=1"
    assert data_of(mw, first.cookie()) == {"n": 1}


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        ("X-Cookie-Consent", ["X-Cookie-Consent", "Cookie"]),
        ("Cookies", ["Cookies", "Cookie"]),
        ("Accept-Encoding, Set-Cookie", ["Accept-Encoding, Set-Cookie", "Cookie"]),
        ("Accept-Encoding, cookie", ["Accept-Encoding, cookie"]),
        ("  COOKIE  ", ["  COOKIE  "]),
        ("Origin,*", ["Origin,*"]),
    ],
    ids=["substring", "plural", "set-cookie", "token-lower", "spaces-upper", "star"],
)
def test_vary_cookie_is_added_unless_a_token_is_exactly_cookie(
    middleware, vary: str, expected: list[str]
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ).get("x")
        start_response("200 OK", [*TEXT, ("Vary", vary)])
        return [b""]

    assert serve(middleware(app)).all("Vary") == expected


def test_regenerate_after_the_headers_went_out_fails_and_keeps_the_session(middleware) -> None:
    errors: list[Exception] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/write":
            session["user"] = "alice"
        start_response("200 OK", list(TEXT))
        yield b"the headers are out"
        if environ["PATH_INFO"] == "/late-login":
            try:
                session.regenerate()
            except SessionError as exc:
                errors.append(exc)

    mw = middleware(app)
    sid = serve(mw, path="/write").cookie()
    assert sid
    r = serve(mw, sid, path="/late-login")
    assert r.status == "200 OK" and r.cookie() is None
    (error,) = errors
    assert "headers" in str(error)
    assert data_of(mw, sid) == {"user": "alice"}  # the client's id still works


def test_regenerate_after_start_response_but_before_the_body_is_delivered(middleware) -> None:
    """start_response only records the headers: they go out with the first
    chunk, so a generator may still log in between."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", list(TEXT))
        session = get_session(environ)
        if environ["PATH_INFO"] == "/login":
            session.regenerate()
            session["user"] = "alice"
        else:
            session["visits"] = 1
        yield b"ok"

    mw = middleware(app)
    old = serve(mw).cookie()
    new = serve(mw, old, path="/login").cookie()
    assert old and new and new != old
    assert data_of(mw, old) is None
    assert data_of(mw, new) == {"visits": 1, "user": "alice"}


def test_a_new_session_written_after_the_headers_fails_loudly_and_stores_nothing(
    middleware,
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", list(TEXT))
        yield b"the headers are out"
        get_session(environ)["too"] = "late"

    mw = middleware(app)
    with pytest.raises(SessionError, match="after the response headers were sent"):
        call(mw, environ_for("/"))
    assert len(mw.manager.provider) == 0


def test_exc_info_replacing_a_generators_headers_keeps_set_cookie_and_vary(middleware) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        get_session(environ)["a"] = 1
        start_response("200 OK", list(TEXT))
        try:
            raise LookupError("the view failed")
        except LookupError:
            start_response("500 Internal Server Error", list(TEXT), sys.exc_info())
        yield b"error page"

    mw = middleware(app)
    r = serve(mw)
    assert r.status == "500 Internal Server Error" and r.body == b"error page"
    assert r.all("Vary") == ["Cookie"]
    sid = r.cookie()
    assert sid and data_of(mw, sid) == {"a": 1}
    assert len(mw.manager.provider) == 1


@pytest.mark.parametrize("kind", ["list", "generator"])
def test_a_second_start_response_without_exc_info_raises(middleware, kind: str) -> None:
    def twice(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        get_session(environ)["a"] = 1
        start_response("200 OK", list(TEXT))
        start_response("404 Not Found", list(TEXT))
        return [b""]

    def generator(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        yield from twice(environ, start_response)

    mw = middleware(twice if kind == "list" else generator)
    with pytest.raises(SessionError, match="second time without exc_info"):
        call(mw, environ_for("/"))
    assert len(mw.manager.provider) == 0  # no response carried its cookie


def test_write_before_start_response_is_an_error(middleware) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        yield b"no headers yet"

    with pytest.raises(SessionError, match="before calling start_response"):
        call(middleware(app), environ_for("/"))


class ClosingList(list[bytes]):
    """A list body with a close(), as some frameworks return."""

    closed = 0

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("when", ["at-the-headers", "after-write"])
@pytest.mark.parametrize("kind", ["list", "file", "generator"])
def test_the_apps_close_is_called_when_the_final_save_fails(
    middleware, kind: str, when: str
) -> None:
    provider = FlakyProvider()
    bodies: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/init":
            session["n"] = 0
            start_response("200 OK", list(TEXT))
            return [b""]
        session["n"] = 1
        write = start_response("200 OK", list(TEXT))
        if when == "after-write":
            write(b"streamed ")  # the headers (and that save) go out now
            session["n"] = 2  # saved at the end, when the store is down
        provider.down = True
        body: Any
        if kind == "list":
            body = ClosingList([b"body"])
        elif kind == "file":
            body = environ["wsgi.file_wrapper"](_ClosingFile(b"body"))
        else:
            body = _ClosingGenerator()
        bodies.append(body)
        return body

    mw = middleware(app, provider=provider)
    sid = serve(mw, path="/init").cookie()
    with pytest.raises(ProviderError):
        serve(mw, sid)
    (body,) = bodies
    assert (body.filelike.closed_count if kind == "file" else body.closed) == 1


class _ClosingFile(io.BytesIO):
    """A file whose close() is counted."""

    closed_count = 0

    def close(self) -> None:
        self.closed_count += 1
        super().close()


class _ClosingGenerator:
    def __init__(self) -> None:
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        yield b"body"

    def close(self) -> None:
        self.closed += 1


def test_a_generator_that_fails_before_start_response_leaves_no_orphan(middleware) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        session = get_session(environ)
        session["cart"] = ["book"]
        if environ["PATH_INFO"] == "/fail":
            raise LookupError("the view failed")
        start_response("200 OK", list(TEXT))
        yield b"ok"

    mw = middleware(app, provider=MemoryProvider())
    with pytest.raises(LookupError):
        serve(mw, path="/fail")
    assert len(mw.manager.provider) == 0  # a new session: nobody got its cookie
    sid = serve(mw).cookie()
    assert sid
    with pytest.raises(LookupError):
        serve(mw, sid, path="/fail")
    assert data_of(mw, sid) == {"cart": ["book"]}  # a stored one keeps its writes
    assert len(mw.manager.provider) == 1
