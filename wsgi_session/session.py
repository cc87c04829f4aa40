"""The session a request sees: a dict-like view of its stored state."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterator, Mapping, MutableMapping
from math import isfinite
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from . import options
from .errors import SessionError
from .manager import user_of
from .provider import UNCHANGED, Record, expires
from .values import MAX_INT_BITS, check_key, checked_copy, encode, encoded_size

if TYPE_CHECKING:
    from .cookies import SessionCookie
    from .manager import Manager

# What the response must do with the cookie.
KEEP, SEND, DELETE = 0, 1, 2

#: The session key of the CSRF token, and the prefix of flash queues' keys.
CSRF_KEY = "_csrf_token"
FLASH_PREFIX = "_flash:"

_IMMUTABLE = (str, bool, type(None))

_new_record = tuple.__new__


class Session(MutableMapping[str, Any]):
    """One request's session: a ``MutableMapping`` of JSON-compatible values.

    Nothing happens until the session is first used: then the cookie is read
    and the store consulted. A session nobody writes is never stored and
    sends no cookie. Writes are kept in the request and saved when the
    response starts (and again at its end, for writes made while streaming);
    only changed keys are written, so concurrent requests that write
    different keys both keep their writes. A list or dict read from the
    session and changed in place is saved too.

    If the cookie names several live sessions (a cookie "tossed" in by a
    sibling subdomain beside the user's own), none is used: the request
    starts a new session. See SECURITY.md.
    """

    __slots__ = (
        "_manager",
        "_cookie",
        "_header",
        "_data",
        "_sid",
        "_key",
        "_record",
        "_changed",
        "_removed",
        "_seen",
        "_boxes",
        "_lifetime",
        "cookie_action",
        "headers_sent",
        "loaded",
    )

    # Set by the first use (_load): a request that never touches its
    # session pays for nothing more than this object with the six attributes
    # __init__ sets.
    _sid: str | None
    _key: str | None  # the provider's key for _sid, hashed once per request
    _record: Record | None
    # A lifetime set by set_lifetime() and not yet stored: (idle, persistent).
    _lifetime: tuple[float, bool] | None
    # Keys written since the last save, with the values written (a new dict
    # after each save: the provider may keep the one it was given).
    _changed: dict[str, Any]
    _removed: set[str]
    # Lists and dicts handed out, with their text when handed out, so a
    # change made in place is noticed at save.
    _seen: dict[str, str] | None
    # Whether a list or dict was assigned: only then does save() copy and
    # check the changed values again (they may have changed in place).
    _boxes: bool
    #: KEEP, SEND or DELETE: what the response does with the cookie.
    cookie_action: int

    def __init__(self, manager: Manager, cookie: SessionCookie, header: str | None) -> None:
        self._manager = manager
        self._cookie = cookie
        self._header = header
        self._data: dict[str, Any] | None = None
        #: Set by the middleware once the response headers are out: a new
        #: id can no longer reach the client.
        self.headers_sent = False
        #: Whether this request has used its session (read the cookie). An
        #: attribute, not a property: the response reads it on every request
        #: (12 against 54 ns a read, timeit).
        self.loaded = False

    # -- loading -----------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        data = self._data
        if data is not None:
            return data
        self.loaded = True
        self._sid = self._key = self._record = self._lifetime = self._seen = None
        self._boxes = False
        self.cookie_action = KEEP
        self._changed = {}
        self._removed = set()
        header = self._header
        if header:
            cookie = self._cookie
            candidates = cookie.ids(header)
            if len(candidates) == 1:  # the usual case
                sid = candidates[0]
                key = self._manager.key(sid)
                record = self._manager.load(sid, key=key)
            else:
                sid, key, record = self._pick(candidates)
            if record is not None:
                self._sid = sid
                self._key = key
                self._record = record
                data = record.data
                if record.persistent or cookie.max_age is not None:
                    # A cookie with a Max-Age is sent again on every use of
                    # its session: its Max-Age slides with the idle timeout.
                    self.cookie_action = SEND
                elif cookie.rotating and cookie.needs_resigning(header, sid):
                    self.cookie_action = SEND
            elif not candidates and cookie.name + "=" in header:
                self._manager.count("refused")  # malformed or badly signed
        if data is None:
            data = {}  # no live session of ours: a new one, stored once written
        self._data = data
        return data

    def _pick(self, candidates: list[str]) -> tuple[str, str, Record | None]:
        """The one live session among several ids (with its key), or none if
        several are live."""
        live = []
        for sid in candidates:
            key = self._manager.key(sid)
            record = self._manager.load(sid, key=key)
            if record is not None:
                live.append((sid, key, record))
        if len(live) == 1:
            return live[0]
        if live:
            # Fail closed: which one the user meant cannot be told, and
            # picking one lets a tossed cookie choose the account.
            self._manager.count("refused")
        return "", "", None

    # -- the mapping -------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = (self._data if self._data is not None else self._load())[key]
        cls = value.__class__
        if cls is list or cls is dict:
            self._watch(key, value)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = (self._data if self._data is not None else self._load()).get(key, default)
        cls = value.__class__
        if (cls is list or cls is dict) and value is not default:
            self._watch(key, value)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        data = self._data if self._data is not None else self._load()
        if type(key) is not str or not key.isascii() or not key or "\x00" in key:
            check_key(key)
        if self._sid is None and self.headers_sent:
            raise SessionError(
                "a new session was written after the response headers were sent: its "
                "cookie cannot reach the client. Write the session before the body starts."
            )
        cls = value.__class__
        # Small ints and finite floats, checked here rather than in
        # checked_copy(): two calls less on the commonest write (timeit,
        # best of 11: 232 against 364 ns for an int, 233 against 379 for a float).
        if not (
            cls in _IMMUTABLE
            or (cls is int and value.bit_length() <= MAX_INT_BITS)
            or (cls is float and isfinite(value))
        ):
            value = checked_copy(key, value)
            self._boxes = True
        limit = self._manager.max_session_bytes
        if limit is not None:
            size = encoded_size({**data, key: value})
            if size > limit:
                raise ValueError(
                    f"session value for key {key!r:.40} would make the session "
                    f"{size} bytes, over max_session_bytes={limit}"
                )
        data[key] = value
        self._changed[key] = value
        if self._removed:
            self._removed.discard(key)

    def __delitem__(self, key: str) -> None:
        data = self._data if self._data is not None else self._load()
        del data[key]
        self._changed.pop(key, None)
        self._removed.add(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``self[key]``, first set to ``default`` if missing. The value
        returned is the stored one, so changing it in place is saved."""
        data = self._data if self._data is not None else self._load()
        if key not in data:
            self[key] = default
        return self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load()

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

    def _watch(self, key: str, value: Any) -> None:
        seen = self._seen
        if seen is None:
            seen = self._seen = {}
        if key not in seen and key not in self._changed:
            seen[key] = encode(value)

    # -- the Go design's names ----------------------------------------------

    def set(self, key: str, value: Any) -> None:
        """``self[key] = value``."""
        self[key] = value

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        if key in self._load():
            del self[key]

    def session_id(self) -> str | None:
        """:attr:`sid`."""
        return self.sid

    # -- identity and lifetime -------------------------------------------------

    @property
    def sid(self) -> str | None:
        """The session id, or None while the session is new and unwritten."""
        if self._data is None:
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
        if self._data is None:
            return False
        return bool(self._changed or self._removed or self._lifetime or self._changed_in_place())

    @property
    def created(self) -> float | None:
        """When the stored session was created (None while new)."""
        self._load()
        return None if self._record is None else self._record.created

    @property
    def last_access(self) -> float | None:
        """The session's last access before this request (None while new)."""
        self._load()
        return None if self._record is None else self._record.accessed

    @property
    def idle_timeout(self) -> float:
        """This session's sliding idle timeout in seconds."""
        self._load()
        if self._lifetime is not None:
            return self._lifetime[0]
        return self._manager.max_lifetime if self._record is None else self._record.idle

    @property
    def persistent(self) -> bool:
        """Whether the cookie outlives the browser (a "remember me" session)."""
        if self._data is None:
            self._load()
        if self._lifetime is not None:
            return self._lifetime[1]
        return self._record is not None and self._record.persistent

    @property
    def expires(self) -> float | None:
        """When the session ends if it is not used again (None while new)."""
        self._load()
        record = self._record
        if record is None:
            return None
        now = self._manager.clock()
        return expires(now, self.idle_timeout, record.deadline)

    @property
    def cookie_max_age(self) -> int | None:
        """The Max-Age the cookie gets, or None for a browser-session cookie."""
        if self.persistent:
            left = self.idle_timeout
            deadline = None if self._record is None else self._record.deadline
            if deadline is not None:
                left = min(left, deadline - self._manager.clock())
            return max(1, int(left))
        return self._cookie.max_age

    def set_lifetime(self, idle: float | None = None, *, persistent: bool | None = None) -> None:
        """Give this session its own idle timeout (None: the default) and,
        with ``persistent``, a cookie that outlives the browser ("remember
        me") or one that does not. Never extends past ``absolute_lifetime``."""
        self._load()
        idle = self._manager.max_lifetime if idle is None else options.seconds("idle", idle)
        keep = self.persistent if persistent is None else options.boolean("persistent", persistent)
        self._lifetime = (idle, keep)
        if self._sid is not None:
            self.cookie_action = SEND  # the cookie's Max-Age changes

    @property
    def handle(self) -> str | None:
        """This session's revocation handle (see :meth:`Manager.sessions_of`)."""
        sid = self.sid
        if sid is None:
            return None
        return self._manager.handle(sid, self._user())

    def _user(self) -> str | None:
        key = self._manager.user_key
        return None if key is None or self._data is None else user_of(self._data.get(key))

    # -- flash messages and CSRF ------------------------------------------------

    def flash(self, message: Any, queue: str = "", allow_duplicate: bool = True) -> None:
        """Queue ``message`` (JSON-compatible) to show on a later request."""
        key = FLASH_PREFIX + queue
        messages = list(self.get(key) or ())
        if allow_duplicate or message not in messages:
            messages.append(message)
            self[key] = messages

    def peek_flash(self, queue: str = "") -> list[Any]:
        """The queue's messages, left in place."""
        return list(self.get(FLASH_PREFIX + queue) or ())

    def pop_flash(self, queue: str = "") -> list[Any]:
        """The queue's messages, removed."""
        key = FLASH_PREFIX + queue
        messages = self.peek_flash(queue)
        if key in self:
            del self[key]
        return messages

    @property
    def csrf_token(self) -> str:
        """The session's CSRF token, made (and stored) on first use."""
        token = self.get(CSRF_KEY)
        return token if type(token) is str else self.new_csrf_token()

    def new_csrf_token(self) -> str:
        """Replace the CSRF token with a fresh one and return it."""
        token = secrets.token_urlsafe(32)
        self[CSRF_KEY] = token
        return token

    def check_csrf_token(self, token: object) -> bool:
        """Whether ``token`` is this session's CSRF token (constant time)."""
        expected = self.get(CSRF_KEY)
        if type(token) is not str or type(expected) is not str:
            return False
        return hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode("ascii"))

    # -- regenerate, destroy, save ----------------------------------------------

    def regenerate(self) -> None:
        """Give the session a new id, keeping its data; the old id is dead at once.

        Call it on every privilege change (log in, log out, sudo) so an id
        an attacker planted or saw before is worthless afterwards. If the
        session was destroyed or revoked meanwhile, it is not brought back:
        this request carries on with a new, empty session. Raises
        SessionError once the response headers are out (the new id could
        not reach the client); the old session is then left as it was.
        """
        self._load()
        if self.headers_sent:
            raise SessionError(
                "regenerate() after the response headers were sent: the new id "
                "could not reach the client. Regenerate before the body starts."
            )
        old = self._sid
        if old is None:
            return  # not stored yet: it gets a fresh id when it is written
        new = self._manager.regenerate(old)
        if new is None:
            # Gone meanwhile: nothing comes back. The cookie is left alone:
            # it may already hold the new id a concurrent log in just set.
            self._start_over()
            self.cookie_action = KEEP
        else:
            self._sid = new
            self._key = None
            self.cookie_action = SEND

    def destroy(self) -> None:
        """Remove the session from the store now; the response deletes the cookie.

        Writes after this start a brand-new session with a new id.
        """
        self._load()
        if self._sid is not None:
            self._manager.destroy(self._sid)
        self._start_over()
        self.cookie_action = DELETE

    def _start_over(self) -> None:
        data = self._data
        assert data is not None
        self._sid = self._key = self._record = None
        self._removed = set()
        self._changed = {}
        self._seen = None
        data.clear()

    def _changed_in_place(self) -> list[str]:
        seen = self._seen
        if not seen:
            return []
        data = self._data
        assert data is not None
        return [
            key
            for key, text in seen.items()
            if key in data and key not in self._changed and _encoded(data[key]) != text
        ]

    def _checked(self, data: dict[str, Any]) -> dict[str, Any]:
        """Checked copies of the changed lists and dicts, to store. Changed in
        place, they were never judged as an assignment is: a tuple, an int
        dict key or an object would reach the store, and max_session_bytes
        would not hold."""
        out = {}
        for key in self._changed:
            value = data[key]
            cls = value.__class__
            if cls is list or cls is dict:
                out[key] = checked_copy(key, value)
        limit = self._manager.max_session_bytes
        if out and limit is not None:
            size = encoded_size({**data, **out})
            if size > limit:
                raise ValueError(
                    f"the session would be {size} bytes, over max_session_bytes={limit} "
                    "(a list or dict grew in place)"
                )
        return out

    def save(self) -> None:
        """Store pending writes now. The middleware calls this for you."""
        data = self._data
        if data is None:
            return
        changed = self._changed
        if self._seen:
            for key in self._changed_in_place():
                changed[key] = data[key]
        lifetime = self._lifetime
        removed = self._removed
        if not (changed or removed or lifetime):
            return
        manager = self._manager
        sid = self._sid
        checked = self._checked(data) if self._boxes or self._seen else None
        if sid is None:
            if not data:
                return  # nothing to keep
            if self.headers_sent:
                raise SessionError("a new session cannot be stored after the headers were sent")
            idle, persistent = lifetime or (manager.max_lifetime, False)
            self._sid = manager.create(
                {**data, **checked} if checked else data,
                idle=idle,
                persistent=persistent,
                user=self._user(),
            )
            now = manager.clock()
            absolute = manager.absolute_lifetime
            deadline = None if absolute is None else now + absolute
            # tuple.__new__ skips the Python-level __new__ of a NamedTuple: 1,000
            # against 3,700 instructions (valgrind), on every new session.
            self._record = _new_record(Record, ({}, now, now, idle, deadline, persistent))
            self.cookie_action = SEND
        else:
            if checked:
                # Copies: the app may change a list or dict in place after this.
                changed = {**changed, **checked}
            user: str | None | EllipsisType = UNCHANGED
            user_key = manager.user_key
            if user_key is not None and (user_key in changed or user_key in removed):
                user = self._user()
            stored = self._key
            if stored is None:
                stored = self._key = manager.key(sid)
            if not manager.save(sid, changed, removed, lifetime=lifetime, user=user, key=stored):
                # Destroyed, revoked, expired or regenerated meanwhile: never
                # bring it back; the writes go with it. The cookie is left
                # alone: after a regenerate elsewhere it may already hold the
                # new id, and a dead id in it is harmless.
                self._start_over()
                self.cookie_action = KEEP
            elif lifetime is not None and self._record is not None:
                self._record = self._record._replace(idle=lifetime[0], persistent=lifetime[1])
        # (Nothing read or stored that could change in place: no call.)
        if checked is not None:
            self._seen = self._still_watched(checked) if self._sid is not None else None
        self._changed = {}
        if removed:
            self._removed = set()
        self._lifetime = None

    def _still_watched(self, checked: dict[str, Any]) -> dict[str, str] | None:
        """What to watch after a save: the app may still hold the lists and
        dicts it read or stored, and change them while a body streams."""
        data = self._data
        assert data is not None
        changed = self._changed
        seen = {
            key: text
            for key, text in (self._seen or {}).items()
            if key in data and key not in changed
        }
        for key, value in checked.items():
            seen[key] = encode(value)
        return seen or None


def _encoded(value: Any) -> str | None:
    """``encode(value)``, or None for a value changed in place into one
    that cannot be encoded (then it differs from what was handed out)."""
    try:
        return encode(value)
    except (TypeError, ValueError, RecursionError):
        return None


#: Where SessionMiddleware puts the session by default. PEP 3333 wants a
#: dot in every environ key whose value is not a str.
ENVIRON_KEY = "wsgi_session.session"


def get_session(environ: Mapping[str, Any], key: str = ENVIRON_KEY) -> Session:
    """The request's session; a clear error if no SessionMiddleware wraps the app."""
    session = environ.get(key)
    if not isinstance(session, Session):
        raise SessionError(
            f"no session in environ[{key!r}]: wrap the WSGI app in SessionMiddleware "
            "(or pass get_session the environ_key it was given)"
        )
    return session
