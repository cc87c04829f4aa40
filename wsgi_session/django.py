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
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .ids import is_valid_id, new_id
from .manager import Manager, user_of
from .provider import UNCHANGED
from .values import decode, encode, encoded_size

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
    # (The manager starts its GC thread at its first store access in each
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

    Saves write only the keys whose value changed since the load (compared
    as stored, so a value changed in place is seen too), so concurrent
    requests that write different keys both keep their writes. A save of a
    session destroyed meanwhile (a logout elsewhere) raises ``UpdateError``
    and stores nothing.
    """

    _session_key: str | None  # SessionBase's validating property
    _session_cache: dict[str, Any]

    def __init__(self, session_key: str | None = None) -> None:
        self._manager = get_manager()
        # Each key's encoded value as the store holds it; None until loaded.
        self._stored: dict[str, str] | None = None
        super().__init__(session_key)

    # -- what SessionBase asks of an engine ---------------------------------

    def load(self) -> dict[str, Any]:
        key = self.session_key
        record = self._manager.load(key) if key is not None and is_valid_id(key) else None
        if record is None:
            self._session_key = None  # an unknown id is never adopted
            self._stored = {}
            return {}
        self._stored = {k: encode(v) for k, v in record.data.items()}
        return record.data

    def exists(self, session_key: str | None) -> bool:
        return (
            session_key is not None
            and is_valid_id(session_key)
            and self._manager.load(session_key) is not None
        )

    def create(self) -> None:
        data = self._get_session(no_load=True)
        changed = {k: decode(encode(v)) for k, v in data.items()}
        self._check_size(changed)
        idle, persistent = self._lifetime()
        if idle <= 0:
            # Expired already (set_expiry in the past): nothing to store.
            self._session_key = new_id()
        else:
            user = self._user(changed)
            self._session_key = self._manager.create(
                changed, idle=idle, persistent=persistent, user=user
            )
        self._stored = {k: encode(v) for k, v in changed.items()}
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            return self.create()
        if must_create:
            raise CreateError  # ids are the store's to choose, never the caller's
        data = self._get_session()
        key, stored = self.session_key, self._stored
        if key is None or stored is None:
            raise UpdateError  # the session vanished before this request loaded it
        changed = {}
        for name, value in data.items():
            text = encode(value)
            if stored.get(name) != text:
                changed[name] = decode(text)  # JSON's values, as Django's serializer keeps
        removed = [name for name in stored if name not in data]
        if changed:
            self._check_size(data)
        idle, persistent = self._lifetime()
        if idle <= 0:
            self._manager.destroy(key)
            stored.clear()
            return
        user_key = self._manager.user_key
        user = self._user(data) if user_key in changed or user_key in removed else UNCHANGED
        if not self._manager.save(key, changed, removed, lifetime=(idle, persistent), user=user):
            raise UpdateError  # destroyed meanwhile: never brought back
        for name in removed:
            del stored[name]
        stored.update((name, encode(value)) for name, value in changed.items())

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
        self._stored = {}
        self.accessed = True
        self.modified = True
        self.delete()
        self._session_key = None

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

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

    def _user(self, data: dict[str, Any]) -> str | None:
        key = self._manager.user_key
        return None if key is None else user_of(data.get(key))

    def _lifetime(self) -> tuple[float, bool]:
        """(idle timeout, persistent cookie) from Django's expiry settings."""
        expiry = self.get("_session_expiry")
        persistent = not self.get_expire_at_browser_close()
        if not expiry:  # None (the settings) or 0 (browser close)
            return self._manager.max_lifetime, persistent
        return float(self.get_expiry_age()), persistent
