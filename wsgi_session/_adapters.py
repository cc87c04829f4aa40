"""What the Flask and Pyramid adapters share: a session per request, and
the cookie the framework's response carries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from .cookies import SessionCookie
from .manager import Manager
from .session import DELETE, SEND, Session

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

        (The manager starts its GC thread at its first store access in each
        process, forked workers included.)
        """
        return cls(self.manager, self.cookie, environ.get("HTTP_COOKIE"))

    def save(self, session: Session) -> str | None:
        """Save a used session; return the Set-Cookie value the response needs, if any.

        (The same rule as SessionMiddleware's response.)
        """
        session.save()
        action = session.cookie_action
        sid = session.sid
        max_age = session.cookie_max_age
        # A persistent cookie is re-sent whenever the session is used, so its
        # Max-Age slides with the idle timeout.
        if sid is not None and (action == SEND or max_age is not None):
            return self.cookie.set_header(sid, max_age=max_age)[1]
        if action == DELETE:
            return self.cookie.delete_header[1]
        return None

    def close(self) -> None:
        """Stop the GC thread and close a provider built from a name."""
        self.manager.close()
