"""What the Flask and Pyramid adapters share: a session per request, and
the cookie the framework's response carries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from .cookies import SessionCookie
from .manager import Manager
from .response import session_headers
from .session import Session

S = TypeVar("S", bound=Session)


class Sessions:
    """One manager and one cookie: a lazy session per request, and its Set-Cookie.

    The framework's request object is only read for its Cookie header, so a
    request that never touches its session costs nothing more than the
    session object: no store access, no cookie.
    """

    def __init__(
        self,
        manager: Manager,
        *,
        cookie_name: str,
        cookie_path: str,
        cookie_domain: str | None,
        secure: bool,
        httponly: bool,
        samesite: str | None,
        partitioned: bool,
        secret: str | bytes | Sequence[str | bytes] | None,
    ) -> None:
        self.cookie = SessionCookie(
            cookie_name,
            path=cookie_path,
            domain=cookie_domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
            partitioned=partitioned,
            secret=secret,
        )
        self.manager = manager

    def open(self, cls: type[S], environ: dict[str, Any]) -> S:
        """A new, unloaded session of class ``cls`` for the request in ``environ``.

        (The manager starts its GC thread at the first session created in each
        process, forked workers included.)
        """
        return cls(self.manager, self.cookie, environ.get("HTTP_COOKIE"))

    def save(self, session: Session) -> list[tuple[str, str]]:
        """Save a used session; return the headers its response needs
        (``Vary: Cookie``, and ``Set-Cookie`` when the cookie changes), by
        the middleware's one rule (:func:`wsgi_session.response.session_headers`)."""
        session.save()
        return session_headers(session, self.cookie, [])

    def close(self) -> None:
        """Stop the GC thread and close a provider built from a name."""
        self.manager.close()
