"""What the Flask, Django and Pyramid adapters share: the manager's options,
and the cookie a framework response carries."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .cookies import SessionCookie
from .manager import Clock, Manager
from .session import DELETE, SEND, Session

if TYPE_CHECKING:
    from .provider import Provider

S = TypeVar("S", bound=Session)


def manager(
    provider: str | Provider,
    provider_options: Mapping[str, Any] | None,
    *,
    max_lifetime: float,
    absolute_lifetime: float | None,
    gc_interval: float | None,
    hash_ids: bool,
    user_key: str | None,
    max_session_bytes: int | None,
    clock: Clock = time.time,
) -> Manager:
    """A :class:`Manager` from an adapter's options (the adapter picks the defaults)."""
    return Manager(
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
        self._started = False

    def open(self, cls: type[S], environ: dict[str, Any]) -> S:
        """A new, unloaded session of class ``cls`` for the request in ``environ``."""
        if not self._started:
            # Once per process is enough: start_gc() notices a fork itself.
            self._started = True
            self.manager.start_gc()
        return cls(self.manager, self.cookie, environ.get("HTTP_COOKIE"))

    def set_cookie(self, session: Session) -> str | None:
        """Save a used session; the Set-Cookie value the response needs, if any."""
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
        self.manager.close()
