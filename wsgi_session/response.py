"""One request's response: when its headers go out and what the session adds.

:func:`session_headers` is the one place that decides Set-Cookie and Vary;
:class:`Response` decides when, and saves the session first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any

from .cookies import SessionCookie
from .errors import SessionError
from .session import DELETE, SEND, Session

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Headers = list[tuple[str, str]]

_VARY_COOKIE = ("Vary", "Cookie")


def session_headers(session: Session, cookie: SessionCookie, headers: Headers) -> Headers:
    """``headers`` plus what a used, saved session adds, as a new list.

    ``Vary: Cookie``, since the response depended on the cookie, unless a
    Vary header of the app already has the token ``Cookie`` or ``*``.
    ``Set-Cookie`` with the id when the session asks for it (``SEND``: the
    id is new, changed or re-signed, or the cookie has a Max-Age, which
    slides with each use); the cookie's deletion after
    :meth:`Session.destroy` (``DELETE``). The app's list is left as it was.
    """
    action = session.cookie_action
    set_cookie: tuple[str, str] | None = None
    if action == SEND:
        sid = session.sid
        if sid is not None:
            set_cookie = cookie.set_header(sid, session.cookie_max_age)
    elif action == DELETE:
        set_cookie = cookie.delete_header
    for name, value in headers:
        if len(name) == 4 and name.lower() == "vary":
            for token in value.split(","):
                token = token.strip().lower()
                if token == "cookie" or token == "*":  # whole tokens: not X-Cookie-Consent
                    return headers if set_cookie is None else [*headers, set_cookie]
    return [*headers, _VARY_COOKIE] if set_cookie is None else [*headers, _VARY_COOKIE, set_cookie]


class Response:
    """Stands between the app and the server's ``start_response``.

    The real ``start_response`` is deferred until the body starts (when a
    list app returns, at a generator's first chunk, or at the first
    ``write()``), so the app may still write to, regenerate or destroy its
    session after calling ``start_response``. Then the session is saved and
    :func:`session_headers` adds its headers, and ``session.headers_sent``
    turns True: from then on a change of id could not reach the client.
    Writes made while a body streams are saved when it is closed.

    A new session is stored only with a response that carries its cookie:
    if the app fails before its headers go out, writes to a stored session
    are kept and a new session is dropped (nothing orphaned in the store).
    """

    __slots__ = ("_session", "_cookie", "_server", "_pending", "_write")

    def __init__(self, session: Session, cookie: SessionCookie, start_response: StartResponse):
        self._session = session
        self._cookie = cookie
        self._server = start_response
        self._pending: tuple[str, Headers, OptExcInfo | None] | None = None
        #: The server's write(): not None once the headers went to the server.
        self._write: Callable[[bytes], object] | None = None

    def start_response(
        self, status: str, headers: Headers, exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], None]:
        """The ``start_response`` the app is given."""
        if exc_info is None:
            if self._pending is not None:
                raise SessionError(
                    "start_response was called a second time without exc_info (PEP 3333 "
                    "allows that only to replace the headers after an error)"
                )
        elif self._write is not None:
            # Replacing headers the server has: it re-raises exc_info if they
            # are on the wire (PEP 3333), else sends these, with our cookie.
            self._send(status, headers, exc_info)
        self._pending = (status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable: sends the headers first."""
        if self._write is None:
            self.send_headers()
        self._write(data)  # type: ignore[misc]  # send_headers set it, or raised

    def send_headers(self) -> None:
        """Give the server the pending headers (once), with the session's."""
        if self._write is not None:
            return
        pending = self._pending
        if pending is None:
            raise SessionError("the app returned or wrote its body before calling start_response")
        self._send(*pending)

    def _send(self, status: str, headers: Headers, exc_info: OptExcInfo | None) -> None:
        session = self._session
        if session.loaded:
            session.save()
            headers = session_headers(session, self._cookie, headers)
        session.headers_sent = True
        self._write = self._server(status, headers, exc_info)

    def returned(self, result: Iterable[bytes], environ: WSGIEnvironment) -> Iterable[bytes]:
        """The body to hand the server, given the one the app returned."""
        if result.__class__ is list or isinstance(result, (list, tuple)) or (
            isinstance(file_wrapper := environ.get("wsgi.file_wrapper"), type)
            and isinstance(result, file_wrapper)
        ):
            # None of the app's code runs any more: respond now and hand the
            # server the body itself (a list, or a file it may sendfile()).
            try:
                pending = self._pending
                if self._write is not None or pending is None:
                    self.finish()
                elif self._session.loaded:
                    self._send(*pending)  # saves all: finish() has nothing to do
                else:
                    # An untouched session adds nothing: straight to the server.
                    # (_send() inlined: one call less on the commonest response)
                    self._session.headers_sent = True
                    self._write = self._server(*pending)
            except BaseException:
                _close(result)  # the server never sees it, so it cannot close it
                raise
            return result
        return _Body(self, result)

    def finish(self) -> None:
        """The app is done: save its last writes, never stranding a new session."""
        session = self._session
        if not session.modified:
            return
        if session.new:
            if self._write is not None:
                raise SessionError(
                    "a new session was written after the response headers were sent: "
                    "its cookie cannot reach the client, so it was not stored. "
                    "Write the session before the body starts."
                )
            return  # no response of ours went out (the app failed): no orphan
        session.save()


class _Body:
    """A body the app still produces (say, a generator).

    The headers go out just before its first chunk (or at its end, if it
    has none); after that chunk the server iterates the app's own iterator
    at no cost per chunk. :meth:`close` closes the app's iterable, then saves;
    once, however often a server calls it (wsgiref does twice after an error).
    """

    __slots__ = ("_response", "_result", "_closed")

    def __init__(self, response: Response, result: Iterable[bytes]) -> None:
        self._response = response
        self._result = result
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        iterator = iter(self._result)
        return chain(self._first(iterator), iterator)

    def _first(self, iterator: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in iterator:
            self._response.send_headers()
            yield chunk
            return
        self._response.send_headers()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            _close(self._result)
        finally:
            self._response.finish()


def _close(result: object) -> None:
    close: Any = getattr(result, "close", None)
    if close is not None:
        close()
