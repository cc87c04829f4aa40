"""Pyramid: ``request.session`` (an ``ISession``) kept by wsgi_session.

In the .ini file (values are read as in :mod:`wsgi_session.paste`)::

    pyramid.includes = wsgi_session.pyramid
    wsgi_session.provider = redis
    wsgi_session.provider_options = {"url": "redis://127.0.0.1:6379/0"}
    wsgi_session.max_lifetime = 1800

or in code: ``config.set_session_factory(session_factory(max_lifetime=1800))``.

Pyramid's session CSRF policies and ``check_csrf_token`` work with it.
Pyramid's ``SessionAuthenticationHelper`` does not change the session id
when a user logs in: call ``request.session.regenerate()`` there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pyramid.interfaces import ISession, ISessionFactory
from zope.interface import implementer

from . import _adapters, paste
from .manager import Clock, Manager
from .session import Session

if TYPE_CHECKING:
    from pyramid.config import Configurator
    from pyramid.request import Request
    from pyramid.response import Response

    from .provider import Provider

__all__ = ["PyramidSession", "SessionFactory", "includeme", "session_factory"]


@implementer(ISession)
class PyramidSession(Session):
    """``request.session``: a wsgi_session :class:`~wsgi_session.Session` that
    provides Pyramid's ``ISession`` (``flash``, ``peek_flash``,
    ``pop_flash``, ``new_csrf_token``, ``created`` and ``new`` come from the
    core session)."""

    @property
    def created(self) -> float:
        """When the session was created (now, while it is new: Pyramid's
        sessions always have a creation time)."""
        created = Session.created.fget(self)  # type: ignore[attr-defined]
        return self._manager.clock() if created is None else float(created)

    def invalidate(self) -> None:
        """Destroy the session now; writes afterwards start a new one."""
        self.destroy()

    def changed(self) -> None:
        """Nothing to do: a list or dict changed in place is found at save by
        itself, and only its key is written (so other requests' writes to
        other keys are kept)."""

    def get_csrf_token(self) -> str:
        """The session's CSRF token, made on first use."""
        return self.csrf_token


@implementer(ISessionFactory)
class SessionFactory:
    """``config.set_session_factory(SessionFactory(...))``: what
    :func:`session_factory` returns; ``.manager`` reaches the store."""

    def __init__(self, sessions: _adapters.Sessions) -> None:
        self.sessions = sessions
        self.manager = sessions.manager

    def __call__(self, request: Request) -> PyramidSession:
        # Pyramid calls this on the first use of request.session only.
        session = self.sessions.open(PyramidSession, request.environ)
        request.add_response_callback(self._responder(session))
        return session

    def _responder(self, session: PyramidSession) -> Callable[[Request, Response], None]:
        def respond(request: Request, response: Response) -> None:
            if not session.loaded:
                return
            for name, value in self.sessions.save(session):
                if name == "Vary" and "Vary" in response.headers:
                    vary = response.vary or ()  # merged into the app's own Vary
                    if value not in vary:
                        response.vary = (*vary, value)
                else:
                    response.headerlist.append((name, value))

        return respond

    def close(self) -> None:
        """Stop the GC thread and close a provider built from a name."""
        self.sessions.close()


def session_factory(
    *,
    provider: str | Provider = "memory",
    provider_options: Mapping[str, Any] | None = None,
    max_lifetime: float = 3600,
    absolute_lifetime: float | None = None,
    gc_interval: float | None = 60,
    hash_ids: bool = True,
    user_key: str | None = "auth.userid",
    max_session_bytes: int | None = None,
    cookie_name: str = "session",
    cookie_path: str = "/",
    cookie_domain: str | None = None,
    secure: bool = False,
    httponly: bool = True,
    samesite: str | None = "Lax",
    partitioned: bool = False,
    secret: str | bytes | Sequence[str | bytes] | None = None,
    clock: Clock = time.time,
) -> SessionFactory:
    """A Pyramid session factory over a wsgi_session store.

    The options are :class:`~wsgi_session.SessionMiddleware`'s. ``user_key``
    is the session key naming the user (Pyramid's
    ``SessionAuthenticationHelper`` uses ``"auth.userid"``).
    """
    return SessionFactory(
        _adapters.Sessions(
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
            cookie_name=cookie_name,
            cookie_path=cookie_path,
            cookie_domain=cookie_domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
            secret=secret,
        )
    )


_PREFIX = "wsgi_session."
# How each .ini setting is read (session_factory's keywords, not ``clock``).
CONVERTERS: dict[str, Callable[[str, str], Any]] = {
    name: paste.CONVERTERS[name]
    for name in (
        "provider",
        "provider_options",
        "max_lifetime",
        "absolute_lifetime",
        "gc_interval",
        "cookie_name",
        "cookie_path",
        "cookie_domain",
        "secure",
        "httponly",
        "samesite",
        "partitioned",
        "secret",
        "hash_ids",
        "user_key",
        "max_session_bytes",
    )
}


def settings_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`session_factory` keywords from ``wsgi_session.*`` settings.

    Strings are converted; other values are kept. An unknown
    ``wsgi_session.`` setting raises ValueError listing the known ones.
    """
    options: dict[str, Any] = {}
    for key, value in settings.items():
        if not key.startswith(_PREFIX):
            continue
        option = key[len(_PREFIX) :]
        convert = CONVERTERS.get(option)
        if convert is None:
            raise ValueError(
                f"unknown setting {key!r}; known: "
                + ", ".join(_PREFIX + name for name in sorted(CONVERTERS))
            )
        options[option] = convert(key, value) if isinstance(value, str) else value
    return options


def includeme(config: Configurator) -> None:
    """``config.include("wsgi_session.pyramid")``: the session factory from
    the ``wsgi_session.*`` settings."""
    config.set_session_factory(session_factory(**settings_options(config.get_settings())))
