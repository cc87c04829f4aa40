"""The WSGI middleware: a session in the environ, the cookie in the response."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .cookies import SessionCookie
from .logs import log
from .manager import Clock, Manager
from .provider import Provider
from .response import Response
from .session import ENVIRON_KEY, Session

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class SessionMiddleware:
    """Gives every request a server-side session at ``environ[environ_key]``.

    ::

        app = SessionMiddleware(app, provider="memory", max_lifetime=1800)

        def view(environ, start_response):
            session = get_session(environ)
            session["visits"] = session.get("visits", 0) + 1

    ``provider`` is a registered name, built with ``provider_options`` as
    keyword arguments, or a ready :class:`~wsgi_session.Provider` (which stays
    the caller's: :meth:`close` leaves it open). ``max_lifetime`` is the
    sliding idle timeout and ``absolute_lifetime`` the hard limit from
    creation, in seconds. ``gc_interval`` is the seconds between background
    sweeps of expired sessions (0 or None: none); the thread starts with the
    first request in each process. ``hash_ids``, ``user_key`` and
    ``max_session_bytes`` go to the :class:`~wsgi_session.Manager`.

    The cookie options map to the cookie's attributes. ``cookie_name=None``
    picks the safest name they allow (``__Host-session_id`` with
    ``secure=True``, no domain and path "/"; see
    :class:`~wsgi_session.cookies.SessionCookie`). ``cookie_max_age`` is the
    Max-Age of a persistent cookie (None: a browser-session cookie).
    ``secret`` (a str, or a list for rotation, newest first) signs the
    cookie. ``environ_key`` has a dot, as PEP 3333 asks of a key whose
    value is not a str; :func:`~wsgi_session.get_session` reads the default
    one. ``clock`` is for tests.

    Every option is checked here: a bad one raises ValueError or TypeError
    naming it.
    """

    def __init__(
        self,
        app: WSGIApplication,
        provider: str | Provider = "memory",
        provider_options: Mapping[str, Any] | None = None,
        *,
        cookie_name: str | None = None,
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
        environ_key: str = ENVIRON_KEY,
        hash_ids: bool = True,
        user_key: str | None = None,
        max_session_bytes: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be a WSGI callable, not {app!r}")
        if type(environ_key) is not str or not environ_key:
            raise TypeError(f"environ_key must be a non-empty str, not {environ_key!r}")
        if "." not in environ_key or environ_key.startswith("wsgi."):
            # A CGI-style key must hold a str (and could be HTTP_COOKIE), and
            # wsgi.* belongs to the server.
            raise ValueError(
                f"environ_key {environ_key!r} must be an extension key, with a dot and "
                "not under 'wsgi.' (PEP 3333), such as 'myapp.session'"
            )
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
        self._secure = secure
        self._started = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._started:
            self._first_request(environ)
        session = Session(self.manager, self.cookie, environ.get("HTTP_COOKIE"))
        environ[self.environ_key] = session
        response = Response(session, self.cookie, start_response)
        try:
            result = self.app(environ, response.start_response)
        except BaseException:
            try:
                response.finish()  # keep what the app wrote to a stored session
            except Exception:
                log.exception("could not save the session after an app error")
            raise
        return response.returned(result, environ)

    def _first_request(self, environ: WSGIEnvironment) -> None:
        # The GC thread starts now, not only with the first session used. A
        # worker forked after this (a warmed-up uWSGI master, gunicorn
        # --preload) starts its own with the first session it creates: the
        # manager notices the new pid itself (not an at-fork hook, which uWSGI
        # may skip), and only there, so loads pay no getpid() (about 0.2 us).
        self._started = True
        self.manager.start_gc()
        if self.manager.provider.process_local and environ.get("wsgi.multiprocess"):
            log.warning(
                "the %s keeps sessions inside one process, but this "
                "server runs several; each worker has its own sessions. Use one "
                "worker (with threads) or a shared provider such as 'redis'.",
                type(self.manager.provider).__name__,
            )
        if not self._secure and environ.get("wsgi.url_scheme") == "https":
            log.warning(
                "this app is served over HTTPS but secure=False, so "
                "browsers also send the session cookie over plain HTTP. Set secure=True."
            )

    def close(self) -> None:
        """Stop the GC thread (and close a provider built from a name). Idempotent."""
        self.manager.close()

    def __enter__(self) -> SessionMiddleware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

