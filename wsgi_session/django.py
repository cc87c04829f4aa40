"""Django: a session engine, ``SESSION_ENGINE = "wsgi_session.django"``.

::

    SESSION_ENGINE = "wsgi_session.django"
    WSGI_SESSION = {
        "provider": "redis",
        "provider_options": {"url": "redis://127.0.0.1:6379/0"},
    }

Django's own ``SessionMiddleware`` stays in ``MIDDLEWARE`` and keeps
writing the cookie (``SESSION_COOKIE_*`` settings); this engine keeps the
data. ``WSGI_SESSION`` takes the :class:`~wsgi_session.Manager` options:
``provider``, ``provider_options``, ``max_lifetime`` (the idle timeout,
default ``SESSION_COOKIE_AGE``), ``absolute_lifetime``, ``gc_interval``,
``hash_ids``, ``user_key`` (default ``"_auth_user_id"``, Django's) and
``max_session_bytes``.

Values are what Django's default ``JSONSerializer`` keeps (a tuple comes
back as a list); ``SESSION_SERIALIZER`` is not used. A custom expiry
(``set_expiry``) becomes the session's idle timeout in the store; a
``datetime`` expiry is the time left when the session is saved, and
``set_expiry(0)`` keeps the default idle timeout with a browser-session
cookie. No session outlives ``absolute_lifetime``.
"""

from __future__ import annotations

import threading
from math import isfinite
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from .ids import is_valid_id, new_id
from .manager import Manager, user_of
from .provider import UNCHANGED
from .values import MAX_INT_BITS, decode, encode, encoded_size

__all__ = ["SessionStore", "get_manager"]

_OPTIONS = (
    "provider",
    "provider_options",
    "max_lifetime",
    "absolute_lifetime",
    "gc_interval",
    "hash_ids",
    "user_key",
    "max_session_bytes",
    "clock",
)

_manager: Manager | None = None
_lock = threading.Lock()


def get_manager() -> Manager:
    """The manager this process's sessions use, built from the settings once."""
    # (The manager starts its GC thread at the first session created in each
    # process, forked workers included.)
    manager = _manager
    return _build() if manager is None else manager


def _build() -> Manager:
    global _manager
    with _lock:
        if _manager is None:
            config = getattr(settings, "WSGI_SESSION", None) or {}
            if not isinstance(config, dict):
                raise ImproperlyConfigured("WSGI_SESSION must be a dict of wsgi_session options")
            unknown = sorted(set(config) - set(_OPTIONS))
            if unknown:
                raise ImproperlyConfigured(
                    f"WSGI_SESSION: unknown option {unknown[0]!r}; known: {', '.join(_OPTIONS)}"
                )
            options: dict[str, Any] = {
                "max_lifetime": settings.SESSION_COOKIE_AGE,
                "user_key": "_auth_user_id",
                **config,
            }
            try:
                _manager = Manager(**options)
            except (TypeError, ValueError) as exc:
                raise ImproperlyConfigured(f"WSGI_SESSION: {exc}") from exc
        return _manager


def _reset(*, setting: str, **kwargs: Any) -> None:
    """Tests that override the settings get a manager built from the new ones."""
    global _manager
    if setting in ("WSGI_SESSION", "SESSION_COOKIE_AGE"):
        with _lock:
            old, _manager = _manager, None
        if old is not None:
            old.close()


setting_changed.connect(_reset)


class SessionStore(SessionBase):
    """Django's session API over a wsgi_session store.

    Saves write only the keys whose value changed since the load, so
    concurrent requests that write different keys both keep their writes. A
    list or dict changed in place is seen too: those are compared as stored
    (encoded), other values by identity. A save of a session destroyed
    meanwhile (a logout elsewhere) raises ``UpdateError`` and stores nothing.
    """

    _session_key: str | None  # SessionBase's validating property
    _session_cache: dict[str, Any]

    def __init__(self, session_key: str | None = None) -> None:
        self._manager = get_manager()
        # What the store holds, as of the load or the last save; None until
        # loaded: each key's value (the very object), the encoded text of
        # those that can change in place, and the lifetime (idle, persistent).
        self._stored: dict[str, Any] | None = None
        self._texts: dict[str, str] = {}
        self._held: tuple[float, bool] | None = None
        # (session id, the store's key for it): the id is hashed once a request.
        self._hashed: tuple[str, str] = ("", "")
        # SessionBase.__init__ but its import of SESSION_SERIALIZER (this
        # engine stores JSON itself; ``serializer`` below imports it on use):
        # 10,000 of 102,000 instructions less per read + write (callgrind).
        self._session_key = session_key
        self.accessed = False
        self.modified = False

    @property
    def serializer(self) -> Any:
        """``SESSION_SERIALIZER``, for SessionBase's ``encode()`` and ``decode()``."""
        return import_string(settings.SESSION_SERIALIZER)

    # -- what SessionBase asks of an engine ---------------------------------

    def load(self) -> dict[str, Any]:
        sid = self.session_key
        record = None
        if sid is not None and is_valid_id(sid):
            key = self._key(sid)
            record = self._manager.load(sid, key=key)
        if record is None:
            self._session_key = None  # an unknown id is never adopted
            self._stored, self._texts, self._held = {}, {}, None
            return {}
        data = record.data  # the store's copy, ours to hand out
        self._stored = data.copy()
        self._texts = {k: encode(v) for k, v in data.items() if v.__class__ in _CONTAINERS}
        self._held = (record.idle, record.persistent)
        return data

    def exists(self, session_key: str | None) -> bool:
        return (
            session_key is not None
            and is_valid_id(session_key)
            and self._manager.load(session_key) is not None
        )

    def create(self) -> None:
        data = self._get_session(no_load=True)
        changed: dict[str, Any] = {}
        texts: dict[str, str] = {}
        for name, value in data.items():
            text = _text(value)
            if text is None:
                changed[name] = value
            else:
                changed[name] = decode(text)
                texts[name] = text
        self._check_size(changed)
        lifetime = self._lifetime(data)
        idle, persistent = lifetime
        if idle <= 0:
            # Expired already (set_expiry in the past): nothing to store.
            self._session_key = new_id()
        else:
            user = self._user(changed)
            self._session_key = self._manager.create(
                changed, idle=idle, persistent=persistent, user=user
            )
        self._stored, self._texts, self._held = dict(data), texts, lifetime
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if must_create:
            raise CreateError  # ids are the store's to choose, never the caller's
        data = self._get_session()
        sid, stored, texts = self.session_key, self._stored, self._texts
        if sid is None or stored is None:
            raise UpdateError  # the session vanished before this request loaded it
        changed: dict[str, Any] = {}
        new_texts: dict[str, str] = {}
        for name, value in data.items():
            text = texts.get(name)
            if text is None and value is stored.get(name, _ABSENT):
                continue  # the very str, int, float, bool or None stored: unchanged
            new = _text(value)
            if new is None:
                changed[name] = value
            elif new != text:  # a list or dict (a tuple...) other than stored
                changed[name] = decode(new)
                new_texts[name] = new
        removed = [name for name in stored if name not in data]
        if changed:
            self._check_size(data)
        lifetime = self._lifetime(data)
        if lifetime[0] <= 0:
            self._manager.destroy(sid)
            self._stored, self._texts, self._held = {}, {}, None
            return
        user_key = self._manager.user_key
        user = self._user(data) if user_key in changed or user_key in removed else UNCHANGED
        if not self._manager.save(
            sid,
            changed,
            removed,
            lifetime=None if lifetime == self._held else lifetime,
            user=user,
            key=self._key(sid),
        ):
            raise UpdateError  # destroyed meanwhile: never brought back
        for name in removed:
            del stored[name]
            texts.pop(name, None)
        for name in changed:
            stored[name] = data[name]
            if name in new_texts:
                texts[name] = new_texts[name]
            else:
                texts.pop(name, None)
        self._held = lifetime

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            session_key = self.session_key
            if session_key is None:
                return
        if is_valid_id(session_key):
            self._manager.destroy(session_key)

    def cycle_key(self) -> None:
        """A new key for the same data; the old key is dead at once."""
        data = self._get_session()
        key = self.session_key
        if key is None:
            self.create()  # not stored yet: stored now, under a fresh key
            return
        new = self._manager.regenerate(key)
        if new is None:
            # Destroyed or revoked since this request loaded it: its data is
            # not brought back under a new key. A new, empty session instead.
            data.clear()
            self.create()
        else:
            self._session_key = new
            self.modified = True  # Django's middleware then sends the new cookie

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    def clear(self) -> None:
        # Loaded first (unlike SessionBase): the save must delete the stored keys.
        self._get_session().clear()
        self.accessed = True
        self.modified = True

    def flush(self) -> None:
        self._session_cache = {}
        self._stored, self._texts, self._held = {}, {}, None
        self.accessed = True
        self.modified = True
        self.delete()
        self._session_key = None

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

    def get_expiry_age(self, **kwargs: Any) -> int:
        # SessionBase's makes a datetime of now first, needed only for a
        # datetime expiry; Django's middleware asks this on every save:
        # 11,700 of 92,000 instructions less per read + write (callgrind).
        if not kwargs and not self.get("_session_expiry"):
            return self.get_session_cookie_age()  # type: ignore[no-any-return]
        return super().get_expiry_age(**kwargs)  # type: ignore[no-any-return]

    @classmethod
    def clear_expired(cls) -> None:
        get_manager().gc()

    # -- helpers -------------------------------------------------------------

    def _check_size(self, data: dict[str, Any]) -> None:
        limit = self._manager.max_session_bytes
        if limit is not None:
            size = encoded_size(data)
            if size > limit:
                raise ValueError(
                    f"the session would be {size} bytes, over max_session_bytes={limit}"
                )

    def _key(self, sid: str) -> str:
        """The store's key for ``sid``, hashed once (until the id changes)."""
        hashed = self._hashed
        if hashed[0] != sid:
            hashed = self._hashed = (sid, self._manager.key(sid))
        return hashed[1]

    def _user(self, data: dict[str, Any]) -> str | None:
        key = self._manager.user_key
        return None if key is None else user_of(data.get(key))

    def _lifetime(self, data: dict[str, Any]) -> tuple[float, bool]:
        """(idle timeout, persistent cookie) from Django's expiry settings
        (as ``get_expiry_age()`` and ``get_expire_at_browser_close()`` read them)."""
        expiry = data.get("_session_expiry")
        if expiry is None:
            return self._manager.max_lifetime, not settings.SESSION_EXPIRE_AT_BROWSER_CLOSE
        if not expiry:  # 0: a browser-session cookie, the default idle timeout
            return self._manager.max_lifetime, expiry != 0
        return float(self.get_expiry_age()), True


_ABSENT = object()
_CONTAINERS = (list, dict)


def _text(value: Any) -> str | None:
    """None for a plain scalar, stored as it is and never changed in place;
    else ``value`` encoded, to store JSON's values as Django's serializer
    keeps them (a tuple becomes a list, an int dict key a str)."""
    cls = value.__class__
    if (
        cls is str
        or cls is bool
        or value is None
        or (cls is int and value.bit_length() <= MAX_INT_BITS)
        or (cls is float and isfinite(value))
    ):
        return None
    return encode(value)
