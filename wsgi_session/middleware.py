"""The WSGI middleware: a session in the environ, the cookie in the response."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .cookies import SessionCookie
from .manager import Clock, Manager
from .provider import Provider
from .session import DELETE, KEEP, SEND, Session

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("wsgi_session")


class SessionMiddleware:
    """Gives every request a server-side session at ``environ[environ_key]``.

    ::

        app = SessionMiddleware(app, provider="memory", max_lifetime=1800)

        def view(environ, start_response):
            session = environ["wsgi_session"]
            session["visits"] = session.get("visits", 0) + 1

    ``provider`` is a registered name, built with ``provider_options`` as
    keyword arguments, or a ready :class:`~wsgi_session.Provider` (which stays
    the caller's: :meth:`close` leaves it open). ``max_lifetime`` is the
    sliding idle timeout and ``absolute_lifetime`` the hard limit from
    creation, in seconds. ``gc_interval`` is the seconds between background
    sweeps of expired sessions (0 or None: none); the thread starts with the
    first request in each process. The cookie options map to the cookie's
    attributes; ``cookie_max_age=None`` makes a browser-session cookie.
    ``secret`` (a str, or a list for rotation, newest first) signs the
    cookie. ``clock`` is for tests.

    Every option is checked here: a bad one raises ValueError or TypeError
    naming it.
    """

    def __init__(
        self,
        app: WSGIApplication,
        provider: str | Provider = "memory",
        provider_options: Mapping[str, Any] | None = None,
        *,
        cookie_name: str = "session_id",
        max_lifetime: float = 3600,
        absolute_lifetime: float | None = None,
        gc_interval: float | None = 60,
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: str | None = "Lax",
        cookie_max_age: int | None = None,
        partitioned: bool = False,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        environ_key: str = "wsgi_session.session",
        hash_ids: bool = True,
        user_key: str | None = None,
        max_session_bytes: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, not {app!r}")
        if type(environ_key) is not str or not environ_key:
            raise TypeError(f"environ_key must be a non-empty str, not {environ_key!r}")
        self.app = app
        self.environ_key = environ_key
        self.cookie = SessionCookie(
            cookie_name,
            path=cookie_path,
            domain=cookie_domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            max_age=cookie_max_age,
            partitioned=partitioned,
            secret=secret,
        )
        # Built last: a provider is made only once every option is known good.
        self.manager = Manager(
            provider,
            provider_options,
            max_lifetime=max_lifetime,
            absolute_lifetime=absolute_lifetime,
            gc_interval=gc_interval,
            hash_ids=hash_ids,
            user_key=user_key,
            max_session_bytes=max_session_bytes,
            clock=clock,
        )
        # A persistent cookie is re-sent whenever the session is used, so its
        # Max-Age slides with the idle timeout.
        self._refresh_cookie = cookie_max_age is not None
        self._secure = secure
        self._started = False
        _instances.add(self)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._started:
            self._first_request(environ)
        session = _Exchange(self.manager, self.cookie, environ.get("HTTP_COOKIE"))
        session._mw = self
        session._server_start_response = start_response
        session._pending = None
        session._write = None
        session._deferring = True
        environ[self.environ_key] = session
        try:
            result = self.app(environ, session._start_response)
        except BaseException:
            session._save_after_error()
            raise
        pending = session._pending
        if pending is not None and session._write is None and result.__class__ is list:
            # The usual response, a list body with its headers still pending:
            # what _returned() does, without the steps a list never needs.
            status, headers, exc_info = pending
            if session._data is not None:
                headers = self._response_headers(session, headers)
            # Hold nothing of the server's past the response (no cycles).
            session._server_start_response = _responded
            start_response(status, headers, exc_info)
            return result
        return session._returned(result, environ)

    def _first_request(self, environ: WSGIEnvironment) -> None:
        # Once per process: also in workers forked after the app was loaded
        # (gunicorn --preload), where threads of the parent do not exist.
        self._started = True
        self.manager.start_gc()
        if self.manager.provider.process_local and environ.get("wsgi.multiprocess"):
            log.warning(
                "wsgi_session: the %s keeps sessions inside one process, but this "
                "server runs several; each worker has its own sessions. Use one "
                "worker (with threads) or a shared provider such as 'redis'.",
                type(self.manager.provider).__name__,
            )
        if not self._secure and environ.get("wsgi.url_scheme") == "https":
            log.warning(
                "wsgi_session: this app is served over HTTPS but secure=False, so "
                "browsers also send the session cookie over plain HTTP. Set secure=True."
            )

    def close(self) -> None:
        """Stop the GC thread (and close a provider built from a name). Idempotent."""
        self.manager.close()

    def __enter__(self) -> SessionMiddleware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _response_headers(
        self, session: Session, headers: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Save a used session; return the headers plus Vary (and Set-Cookie)
        in a new list, leaving the app's as it was."""
        session.save()
        # The two usual cases inline; _cookie_header() has the whole rule.
        action = session.cookie_action
        sid = session._sid
        if action == KEEP and session.cookie_max_age is None:
            cookie = None
        elif action == SEND and sid is not None:
            cookie = self.cookie.set_header(sid, session.cookie_max_age)
        else:
            cookie = self._cookie_header(session)
        for name, value in headers:  # does the app's response vary on Cookie already?
            if len(name) == 4 and name.lower() == "vary":
                value = value.lower()
                if "cookie" in value or "*" in value:
                    return headers if cookie is None else [*headers, cookie]
        return [*headers, _VARY_COOKIE] if cookie is None else [*headers, _VARY_COOKIE, cookie]

    def _cookie_header(self, session: Session) -> tuple[str, str] | None:
        action = session.cookie_action
        max_age = session.cookie_max_age
        if action == SEND or (max_age is not None and session._sid is not None):
            sid = session._sid
            if sid is not None:
                return self.cookie.set_header(sid, max_age)
        if action == DELETE:
            return self.cookie.delete_header
        return None


class _Exchange(Session):
    """A request's session that also runs the request's response.

    Defers the real start_response until the app has returned (so writes
    made after calling start_response still get their cookie), saves the
    session, and adds Set-Cookie and Vary. The app sees it as its Session
    (the response parts are private): one object per request, not two.
    """

    __slots__ = ("_mw", "_server_start_response", "_pending", "_write", "_deferring")

    # Set by SessionMiddleware.__call__ right after Session.__init__ (no
    # __init__ of its own: a Python call less on every request).
    _mw: SessionMiddleware
    _server_start_response: StartResponse
    _pending: tuple[str, list[tuple[str, str]], OptExcInfo | None] | None
    _write: Any
    _deferring: bool

    def _start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
    ) -> Any:
        """The start_response the app is given."""
        if self._write is not None:
            # Headers already went out: only legal with exc_info, and the
            # server's start_response re-raises it as PEP 3333 requires.
            return self._server_start_response(status, headers, exc_info)
        self._pending = (status, headers, exc_info)
        if not self._deferring:
            self._send_headers()  # the app is a generator: the body follows at once
        return self._write_body

    def _write_body(self, data: bytes) -> None:
        """The legacy write() callable: sends the headers first."""
        if self._write is None:
            self._send_headers()
        self._write(data)

    def _send_headers(self) -> None:
        pending = self._pending
        assert pending is not None, "the app wrote its body before calling start_response"
        status, headers, exc_info = pending
        if self._data is not None:
            headers = self._mw._response_headers(self, headers)
        self._write = self._server_start_response(status, headers, exc_info)

    def _returned(self, result: Iterable[bytes], environ: WSGIEnvironment) -> Iterable[bytes]:
        self._deferring = False
        if self._pending is not None and self._write is None:
            try:
                self._send_headers()
            except BaseException:
                _close(result)
                raise
        if isinstance(result, (list, tuple)) or (
            isinstance(file_wrapper := environ.get("wsgi.file_wrapper"), type)
            and isinstance(result, file_wrapper)
        ):
            # Nothing more of the app's code runs: finish now, and hand the
            # server the body itself (a list, or a file it may sendfile()).
            self._finish()
            return result
        return _Body(self, result)

    def _finish(self) -> None:
        """Save writes made after the headers went out (while streaming)."""
        if not self.modified:
            return
        if self._write is not None and self._sid is None:
            # A new session first written after its headers were sent:
            # no cookie can reach the client, so storing it would only
            # leave an orphan in the store.
            log.warning(
                "wsgi_session: a new session was written after the response "
                "headers were sent; it cannot get a cookie and was not stored. "
                "Write the session before the body starts."
            )
            return
        self.save()

    def _save_after_error(self) -> None:
        """The app raised: keep the writes it made before (no response to add to)."""
        try:
            if self.modified and self._sid is not None:
                self.save()
        except Exception:
            log.exception("wsgi_session: could not save the session after an app error")


class _Body:
    """A body the app still produces (a generator): the server iterates the
    app's own iterator; close() then saves writes made while it ran."""

    __slots__ = ("_exchange", "_result")

    def __init__(self, exchange: _Exchange, result: Iterable[bytes]) -> None:
        self._exchange = exchange
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._result)  # no per-chunk cost

    def close(self) -> None:
        try:
            _close(self._result)
        finally:
            self._exchange._finish()


_VARY_COOKIE = ("Vary", "Cookie")


def _responded(
    status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
) -> Any:
    raise RuntimeError("wsgi_session: start_response called after the response was returned")


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


# Middlewares of this process: a forked child resets their first-request flag
# so each worker starts its own GC thread.
_instances: weakref.WeakSet[SessionMiddleware] = weakref.WeakSet()


def _after_fork() -> None:
    for mw in list(_instances):
        mw._started = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
