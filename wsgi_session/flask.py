"""Flask: ``flask.session`` kept server-side by wsgi_session.

::

    from flask import Flask, session
    from wsgi_session.flask import init_app

    app = Flask(__name__)
    init_app(app, provider="redis", provider_options={"url": "redis://..."})

Afterwards ``flask.session`` is a :class:`FlaskSession` (a
:class:`wsgi_session.Session`), so ``flash()``, Flask-Login and Flask-WTF
keep their state in the store. No ``SECRET_KEY`` is needed for the session
itself (Flask-WTF still needs one to sign its CSRF tokens, and Flask-Login
one for its remember-me cookie).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask import session as current_session
from flask.sessions import SessionInterface, SessionMixin

from . import _adapters, options
from .manager import Clock, Manager
from .session import Session

if TYPE_CHECKING:
    from flask import Request, Response

    from .provider import Provider

__all__ = ["FlaskSession", "FlaskSessionInterface", "init_app"]


class FlaskSession(Session, SessionMixin):  # type: ignore[override]  # new: read-only
    """``flask.session``: a wsgi_session :class:`~wsgi_session.Session` with
    Flask's ``permanent`` and ``modified``.

    ``session.permanent = True`` gives the session the idle timeout
    ``PERMANENT_SESSION_LIFETIME`` and a persistent cookie ("remember me");
    ``False`` gives it the default idle timeout and a browser-session cookie.
    """

    # The idle timeout of a permanent session (set by the interface).
    permanent_lifetime: float = 31 * 86400

    @property
    def permanent(self) -> bool:
        return self.persistent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        value = bool(value)
        if value != self.persistent:
            self.set_lifetime(self.permanent_lifetime if value else None, persistent=value)

    @property
    def modified(self) -> bool:
        return Session.modified.fget(self)  # type: ignore[attr-defined,no-any-return]

    @modified.setter
    def modified(self, value: bool) -> None:
        # Flask's idiom after changing a value in place (session["cart"].append(x)):
        # nothing to do. The save finds such changes by itself and writes those
        # keys only, so other requests' writes to other keys are kept.
        pass

    @property
    def accessed(self) -> bool:
        """Flask's flag: whether this request used its session. (Flask sets
        it on every touch of ``flask.session``; the last-access time is
        :attr:`~wsgi_session.Session.last_access`.)"""
        return self.loaded

    @accessed.setter
    def accessed(self, value: bool) -> None:
        pass  # the session knows by itself, and only a real use loads it

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "_flashes" and type(value) is list:
            # flask.flash() stores (category, message) tuples and may pass
            # Markup; the store keeps JSON types, so they become [str, str]
            # (get_flashed_messages() unpacks them the same way).
            value = [[str(part) for part in item] for item in value]
        super().__setitem__(key, value)


class FlaskSessionInterface(SessionInterface):
    """Opens a lazy :class:`FlaskSession` per request and adds its cookie to
    the response. Made by :func:`init_app`."""

    def __init__(self, sessions: _adapters.Sessions, permanent_lifetime: float) -> None:
        self.sessions = sessions
        self.manager = sessions.manager
        self.permanent_lifetime = permanent_lifetime

    def open_session(self, app: Flask, request: Request) -> FlaskSession:
        # Flask calls this on every request (static files too): nothing is
        # read until the session is used.
        session = self.sessions.open(FlaskSession, request.environ)
        session.permanent_lifetime = self.permanent_lifetime
        return session

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, FlaskSession) or not session.loaded:
            return  # never used: no store access, no cookie, no Vary
        headers = response.headers
        for name, value in self.sessions.save(session):
            if name == "Vary" and "Vary" in headers:
                response.vary.add(value)  # merged into the app's own Vary
            else:
                headers.add(name, value)

    def close(self) -> None:
        """Stop the GC thread and close a provider built from a name."""
        self.sessions.close()


def init_app(
    app: Flask,
    *,
    provider: str | Provider = "memory",
    provider_options: dict[str, Any] | None = None,
    max_lifetime: float = 3600,
    absolute_lifetime: float | None = None,
    gc_interval: float | None = 60,
    hash_ids: bool = True,
    user_key: str | None = "_user_id",
    max_session_bytes: int | None = None,
    cookie_name: str | EllipsisType = ...,
    cookie_path: str | EllipsisType = ...,
    cookie_domain: str | None | EllipsisType = ...,
    secure: bool | EllipsisType = ...,
    httponly: bool | EllipsisType = ...,
    samesite: str | None | EllipsisType = ...,
    partitioned: bool | EllipsisType = ...,
    permanent_lifetime: float | EllipsisType = ...,
    secret: str | bytes | Sequence[str | bytes] | None = None,
    clock: Clock = time.time,
) -> FlaskSessionInterface:
    """Make ``flask.session`` a wsgi_session session for ``app``; returns the interface.

    Call it once the app's config is loaded (also inside an app factory).
    Options left as ``...`` come from Flask's config: ``SESSION_COOKIE_NAME``,
    ``SESSION_COOKIE_PATH`` (else ``APPLICATION_ROOT``),
    ``SESSION_COOKIE_DOMAIN``, ``SESSION_COOKIE_SECURE``,
    ``SESSION_COOKIE_HTTPONLY``, ``SESSION_COOKIE_SAMESITE``,
    ``SESSION_COOKIE_PARTITIONED`` and ``PERMANENT_SESSION_LIFETIME``
    (the idle timeout of a permanent session). Explicit options win.
    ``max_lifetime`` is the idle timeout of other sessions. ``user_key`` is
    the session key naming the user (Flask-Login's): see
    :meth:`Manager.sessions_of <wsgi_session.Manager.sessions_of>`.

    With Flask-Login installed, logging in and out gives the session a new
    id (Flask-Login itself keeps the old one).
    """
    options.instance("app", app, Flask)
    config = app.config

    def pick(value: Any, key: str) -> Any:
        return config[key] if value is ... else value

    lifetime = pick(permanent_lifetime, "PERMANENT_SESSION_LIFETIME")
    if isinstance(lifetime, timedelta):
        lifetime = lifetime.total_seconds()
    lifetime = options.seconds("permanent_lifetime", lifetime)
    sessions = _adapters.Sessions(
        Manager(
            provider,
            provider_options,
            max_lifetime=max_lifetime,
            absolute_lifetime=absolute_lifetime,
            gc_interval=gc_interval,
            hash_ids=hash_ids,
            user_key=user_key,
            max_session_bytes=max_session_bytes,
            clock=clock,
        ),
        cookie_name=pick(cookie_name, "SESSION_COOKIE_NAME"),
        cookie_path=(
            (config["SESSION_COOKIE_PATH"] or config["APPLICATION_ROOT"] or "/")
            if cookie_path is ...
            else cookie_path
        ),
        cookie_domain=pick(cookie_domain, "SESSION_COOKIE_DOMAIN"),
        secure=pick(secure, "SESSION_COOKIE_SECURE"),
        httponly=pick(httponly, "SESSION_COOKIE_HTTPONLY"),
        samesite=pick(samesite, "SESSION_COOKIE_SAMESITE"),
        partitioned=bool(config.get("SESSION_COOKIE_PARTITIONED", False))
        if partitioned is ...
        else partitioned,
        secret=secret,
    )
    interface = FlaskSessionInterface(sessions, lifetime)
    app.session_interface = interface
    app.extensions["wsgi_session"] = interface
    _rotate_on_login(app)
    return interface


def _rotate_on_login(app: Flask) -> None:
    try:
        from flask_login import user_logged_in, user_logged_out
    except ImportError:  # Flask-Login is optional
        return
    # Flask-Login sends these with the app as sender, after its own writes.
    user_logged_in.connect(_regenerate, app)
    user_logged_out.connect(_regenerate, app)


def _regenerate(sender: Flask, **extra: Any) -> None:
    """A privilege change: the id seen before it is worthless afterwards."""
    session = current_session._get_current_object()  # type: ignore[attr-defined]
    if isinstance(session, FlaskSession):
        session.regenerate()
