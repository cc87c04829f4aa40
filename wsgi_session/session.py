"""The session a request sees: a dict-like view of its stored state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from .errors import SessionError
from .values import SCALAR_TYPES, check_key, checked_copy, copy_value

if TYPE_CHECKING:
    from .cookies import SessionCookie
    from .manager import Manager

# What the response must do with the cookie.
KEEP, SEND, DELETE = 0, 1, 2


class Session(MutableMapping[str, Any]):
    """One request's session. A ``MutableMapping`` of JSON-compatible values.

    Nothing happens until the session is first used: then the cookie is read
    and the store consulted. A session nobody writes is never stored and
    sends no cookie. Writes are kept in the request and saved when the
    response starts (and again at its end, for writes made while streaming);
    only changed keys are written, so concurrent requests that write
    different keys both keep their writes.

    Values are copied on assignment: to store a list or dict you changed in
    place, assign it again (``s["cart"] = cart``).
    """

    __slots__ = (
        "_manager",
        "_cookie",
        "_header",
        "_data",
        "_sid",
        "_changed",
        "_removed",
        "cookie_action",
    )

    # Made by the first use (_load): a request that never touches its
    # session allocates nothing more than this object.
    _changed: set[str]
    _removed: set[str]

    def __init__(self, manager: Manager, cookie: SessionCookie, environ: dict[str, Any]) -> None:
        self._manager = manager
        self._cookie = cookie
        # The Cookie header, not the environ: the environ holds this session,
        # and a reference back would make every request a cycle that only
        # the garbage collector can free.
        self._header: str | None = environ.get("HTTP_COOKIE")
        self._data: dict[str, Any] | None = None
        self._sid: str | None = None
        #: KEEP, SEND or DELETE: what the response does with the cookie.
        self.cookie_action = KEEP

    # -- loading -----------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether this request has used its session (read the cookie)."""
        return self._data is not None

    def _load(self) -> dict[str, Any]:
        data = self._data
        if data is not None:
            return data
        self._changed = set()
        self._removed = set()
        header = self._header
        if header:
            cookie = self._cookie
            for sid in cookie.ids(header):
                data = self._manager.load(sid)
                if data is not None:
                    self._sid = sid
                    if cookie.needs_resigning(header, sid):
                        self.cookie_action = SEND
                    break
        if data is None:
            data = {}  # no live session of ours: a new one, stored once written
        self._data = data
        return data

    # -- the mapping -------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return (self._data if self._data is not None else self._load())[key]

    def __setitem__(self, key: str, value: Any) -> None:
        data = self._data if self._data is not None else self._load()
        if type(key) is not str or not key:
            check_key(key)
        data[key] = value if value.__class__ in SCALAR_TYPES else checked_copy(key, value)
        self._changed.add(key)
        if self._removed:
            self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        data = self._data if self._data is not None else self._load()
        del data[key]
        self._changed.discard(key)
        self._removed.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def get(self, key: str, default: Any = None) -> Any:
        return (self._data if self._data is not None else self._load()).get(key, default)

    def clear(self) -> None:
        data = self._load()
        self._removed.update(data)
        self._changed.clear()
        data.clear()

    def __repr__(self) -> str:
        # Never the id or the values: reprs end up in logs.
        if self._data is None:
            return "<Session (not loaded)>"
        return f"<Session {'new' if self._sid is None else 'stored'}, {len(self._data)} keys>"

    # -- the Go design's names ----------------------------------------------

    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        if key in self._load():
            del self[key]

    def session_id(self) -> str | None:
        return self.sid

    # -- identity ------------------------------------------------------------

    @property
    def sid(self) -> str | None:
        """The session id, or None while the session is new and unwritten."""
        self._load()
        return self._sid

    @property
    def new(self) -> bool:
        """True until the session has been stored."""
        self._load()
        return self._sid is None

    @property
    def modified(self) -> bool:
        """Whether this request has writes not yet saved."""
        return self._data is not None and bool(self._changed or self._removed)

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data; the old id is dead at once.

        Call it on every privilege change (log in, log out, sudo) so an id
        an attacker planted or saw before is worthless afterwards.
        """
        self._load()
        old = self._sid
        if old is None:
            return  # not stored yet: it gets a fresh id when it is written
        new = self._manager.regenerate(old)
        if new is None:
            # The stored session vanished meanwhile (expired or destroyed
            # elsewhere): carry on as a new session holding this data.
            self._start_over(keep_data=True)
        else:
            self._sid = new
            self.cookie_action = SEND

    def destroy(self) -> None:
        """Remove the session from the store now; the response deletes the cookie.

        Writes after this start a brand-new session with a new id.
        """
        self._load()
        if self._sid is not None:
            self._manager.destroy(self._sid)
        self._start_over(keep_data=False)
        self.cookie_action = DELETE

    def _start_over(self, keep_data: bool) -> None:
        data = self._data
        assert data is not None
        self._sid = None
        self._removed.clear()
        if keep_data:
            self._changed = set(data)
        else:
            data.clear()
            self._changed.clear()

    # -- saving (called by the middleware) ------------------------------------

    def save(self) -> None:
        """Store pending writes now. The middleware calls this for you."""
        data = self._data
        if data is None or not (self._changed or self._removed):
            return
        sid = self._sid
        if sid is None:
            if data:
                self._sid = self._manager.create(data)
                self.cookie_action = SEND
        else:
            # Copies: the app may change a list or dict in place after this.
            changed = {}
            for key in self._changed:
                value = data[key]
                changed[key] = value if value.__class__ in SCALAR_TYPES else copy_value(value)
            if not self._manager.save_copies(sid, changed, self._removed):
                # Destroyed or expired by someone else meanwhile: never
                # bring it back. The writes go with it.
                self._sid = None
                data.clear()
        self._changed.clear()
        self._removed.clear()


def get_session(environ: Mapping[str, Any], key: str = "wsgi_session") -> Session:
    """The request's session; a clear error if no SessionMiddleware wraps the app."""
    session = environ.get(key)
    if not isinstance(session, Session):
        raise SessionError(
            f"no session in environ[{key!r}]: wrap the WSGI app in SessionMiddleware "
            "(or pass get_session the environ_key it was given)"
        )
    return session
