"""The manager: ids, lifetimes, the provider, the per-user index, and the GC thread."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Collection, Mapping
from types import EllipsisType
from typing import Any, NamedTuple

from . import ids, options, registry
from .logs import log
from .provider import UNCHANGED, Provider, Record, expires
from .sweeper import Sweeper
from .values import copy_values

Clock = Callable[[], float]


class SessionInfo(NamedTuple):
    """One live session of a user, as :meth:`Manager.sessions_of` lists it."""

    #: Opaque; identifies the session to :meth:`Manager.revoke`, and is no
    #: use as a cookie. It changes when the session's id does.
    handle: str
    created: float
    last_access: float
    expires: float


def user_of(value: object) -> str | None:
    """The index name of the user a session holds: a str as it is, an int as
    its decimal text (so 5 and "5" are one user); anything else is no user."""
    if type(value) is str:
        return value or None
    if type(value) is int:
        return str(value)
    return None


class Manager:
    """Runs the life of sessions over one provider (the Go design's Manager).

    ``provider`` is a registered name (built with ``provider_options``) or a
    ready :class:`Provider`. A provider built here is the manager's and is
    closed by :meth:`close`; one passed in belongs to the caller.

    ``max_lifetime`` is the default sliding idle timeout (a session may get
    its own: "remember me"); ``absolute_lifetime`` (or None) ends a session
    that long after its creation however busy it is, and no per-session
    lifetime goes past it. ``gc_interval`` is the seconds between background
    sweeps (``0`` or None: no thread); the thread starts with the first use
    in each process. With ``hash_ids`` (the default) the store keys sessions
    by a SHA-256 of the id, so a copy of the store holds no usable cookie.
    ``user_key`` names the session key whose value (a str or int) is the
    user, for :meth:`sessions_of`, :meth:`revoke_user` and friends.
    ``max_session_bytes`` bounds a session's encoded size; an assignment
    past it raises. ``clock`` returns the current time in seconds.
    """

    def __init__(
        self,
        provider: str | Provider = "memory",
        provider_options: Mapping[str, Any] | None = None,
        *,
        max_lifetime: float = 3600,
        absolute_lifetime: float | None = None,
        gc_interval: float | None = 60,
        hash_ids: bool = True,
        user_key: str | None = None,
        max_session_bytes: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.max_lifetime = options.seconds("max_lifetime", max_lifetime)
        self.absolute_lifetime = options.optional_seconds("absolute_lifetime", absolute_lifetime)
        if gc_interval is not None and gc_interval != 0:
            gc_interval = options.seconds("gc_interval", gc_interval)
        self.hash_ids = options.boolean("hash_ids", hash_ids)
        self.user_key = None if user_key is None else options.text("user_key", user_key)
        self.max_session_bytes = options.optional_positive_int(
            "max_session_bytes", max_session_bytes
        )
        if not callable(clock):
            raise TypeError(f"clock must be a callable returning seconds, not {clock!r}")
        if provider_options is not None and not isinstance(provider_options, Mapping):
            raise TypeError(f"provider_options must be a dict or None, not {provider_options!r}")

        if isinstance(provider, Provider):
            if provider_options:
                raise ValueError("provider_options is only for a provider given by name")
            self.provider = provider
            self._owns_provider = False
        elif isinstance(provider, str):
            self.provider = registry.create(provider, dict(provider_options or {}))
            self._owns_provider = True
        else:
            raise TypeError(
                f"provider must be a registered name or a Provider instance, not {provider!r}"
            )
        self.clock = clock
        self.gc_interval = gc_interval or None
        self._sweeper = Sweeper(self, self.gc_interval) if self.gc_interval else None
        self._gc_lock = threading.Lock()
        self._pid = 0  # the process this manager last ran in; 0: not yet used
        self._closed = False
        self._counts = dict.fromkeys(_COUNTERS, 0)
        if self._sweeper is not None:
            # A manager dropped without close() stops its thread too.
            weakref.finalize(self, self._sweeper.stop, None)

    # -- ids ---------------------------------------------------------------

    def key(self, sid: str) -> str:
        """The provider's key for the session id ``sid``: with ``hash_ids``,
        the first 128 bits of the id's SHA-256, in hex.

        128 bits: finding an id from its key stays out of reach (a preimage
        of 2**128 work, of an id of 258 random bits), and two sessions would
        share a key only after about 2**64 of them; 32 characters instead of
        64 keep 32 B a session in the memory store.
        """
        if not self.hash_ids:
            return sid
        return _sha256(sid.encode("ascii")).hexdigest()[:32]

    def handle(self, sid: str, user: str | None) -> str:
        """The revocation handle of the session ``sid`` held by ``user``."""
        return _handle(self.key(sid), user)

    # -- sessions ----------------------------------------------------------

    def load(self, sid: str, *, key: str | None = None) -> Record | None:
        """The live session (its data a copy), as an access; None if not live.

        ``key`` is ``self.key(sid)`` if the caller has it already (a session
        hashes its id once per request, not for every load and save).
        """
        try:
            record = self.provider.load(self.key(sid) if key is None else key, self.clock())
        except Exception as exc:
            self._failed("load", exc)
            raise
        self._counts["loaded" if record is not None else "missed"] += 1
        return record

    def create(
        self,
        data: Mapping[str, Any],
        *,
        idle: float | None = None,
        persistent: bool = False,
        user: str | None = None,
    ) -> str:
        """Store a new session holding ``data``; return its fresh id."""
        pid = os.getpid()  # one system call for the fork check and the id pool
        if self._pid != pid:
            self._new_process()
        sid = ids.new_id(pid)
        now = self.clock()
        absolute = self.absolute_lifetime
        try:
            self.provider.create(
                self.key(sid),
                copy_values(data),
                now,
                idle=self.max_lifetime if idle is None else idle,
                deadline=None if absolute is None else now + absolute,
                persistent=persistent,
                user=user,
            )
        except Exception as exc:
            self._failed("create", exc)
            raise
        self._counts["created"] += 1
        return sid

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        *,
        lifetime: tuple[float, bool] | None = None,
        user: str | None | EllipsisType = UNCHANGED,
        key: str | None = None,
    ) -> bool:
        """Write changed keys and delete removed ones; False if the session is gone.

        ``changed`` and its values go to the provider as they are: pass copies
        nobody will mutate. ``key`` is as for :meth:`load`.
        """
        if key is None:
            key = self.key(sid)
        try:
            saved = self.provider.save(
                key, changed, removed, self.clock(), lifetime=lifetime, user=user
            )
        except Exception as exc:
            self._failed("save", exc)
            raise
        if not saved:
            self._counts["lost"] += 1
        return saved

    def regenerate(self, sid: str) -> str | None:
        """Move a live session to a fresh id; the old id is dead at once.

        Returns the new id, or None if ``sid`` was not live (then nothing
        is stored: a destroyed or revoked session never comes back).
        """
        new = ids.new_id()
        try:
            renamed = self.provider.rename(self.key(sid), self.key(new), self.clock())
        except Exception as exc:
            self._failed("rename", exc)
            raise
        return new if renamed else None

    def destroy(self, sid: str) -> None:
        """End the session ``sid`` now (log out)."""
        try:
            self.provider.destroy(self.key(sid))
        except Exception as exc:
            self._failed("destroy", exc)
            raise

    # -- users -------------------------------------------------------------

    def sessions_of(self, user: str | int) -> list[SessionInfo]:
        """``user``'s live sessions, most recently used first."""
        name = self._user(user)
        now = self.clock()
        try:
            found = self.provider.sessions_of(name, now)
        except Exception as exc:
            self._failed("list the sessions of a user", exc)
            raise
        infos = [
            SessionInfo(
                _handle(key, name),
                record.created,
                record.accessed,
                expires(record.accessed, record.idle, record.deadline),
            )
            for key, record in found
            if expires(record.accessed, record.idle, record.deadline) > now
        ]
        infos.sort(key=lambda info: info.last_access, reverse=True)
        return infos

    def revoke(self, handle: str) -> bool:
        """End the session that ``handle`` names; False if it was not live."""
        if type(handle) is not str:
            raise TypeError(f"handle must be a str, not {type(handle).__name__}")
        digest, _, encoded = handle.partition(".")
        if not encoded:
            return False  # a session without a user is not indexed
        try:
            user = urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode(
                "utf-8", "surrogatepass"
            )
        except ValueError:  # binascii.Error and UnicodeDecodeError included
            return False
        for key, _ in self.provider.sessions_of(user, self.clock()):
            if _digest(key) == digest:
                self._end(key)
                return True
        return False

    def revoke_user(self, user: str | int, keep: str | None = None) -> int:
        """End every session of ``user`` except the one ``keep`` (a handle)
        names; return how many ended ("log out everywhere")."""
        name = self._user(user)
        if keep is not None and type(keep) is not str:
            raise TypeError(f"keep must be a handle (a str) or None, not {type(keep).__name__}")
        keep_digest = None if keep is None else keep.partition(".")[0]
        ended = 0
        # Again until none is left: a session renamed (regenerated) between
        # the listing and its destroy lives on under its new key.
        for _ in range(_REVOKE_PASSES):
            found = [
                key
                for key, _ in self.provider.sessions_of(name, self.clock())
                if _digest(key) != keep_digest
            ]
            if not found:
                break
            for key in found:
                self._end(key)
            ended += len(found)
        return ended

    def _end(self, key: str) -> None:
        try:
            self.provider.destroy(key)
        except Exception as exc:
            self._failed("revoke", exc)
            raise
        self._counts["revoked"] += 1

    @staticmethod
    def _user(user: str | int) -> str:
        name = user_of(user)
        if name is None:
            raise TypeError(f"user must be a non-empty str or an int, not {user!r:.40}")
        return name

    # -- monitoring --------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Counters since start (per process) and gauges, for monitoring.

        ``created``, ``loaded``, ``missed`` (a cookie's session was not
        live: expired, destroyed or unknown), ``lost`` (a save found its
        session gone), ``revoked``, ``refused`` (cookies refused: malformed,
        badly signed, or ambiguous), ``store_errors``, ``sweeps``,
        ``last_sweep_removed``, ``last_sweep_seconds``, ``sessions`` (for a
        store inside the process; ``provider.count()`` counts the others, at
        a cost), plus the provider's own counters
        (``evicted``, ``expired``...). Counters are plain ints bumped
        without a lock: under heavy thread contention one may miss a step.
        """
        out: dict[str, float] = dict(self._counts)
        sweeper = self._sweeper
        if sweeper is not None:
            out["sweeps"] = sweeper.sweeps
            out["last_sweep_removed"] = sweeper.last_removed
            out["last_sweep_seconds"] = sweeper.last_seconds
        out.update(self.provider.stats())
        if self.provider.process_local:
            # Counting a store outside the process walks it (SCAN, COUNT(*)):
            # call provider.count() yourself, now and then, for those.
            count = self.provider.count()
            if count is not None:
                out["sessions"] = count
        return out

    def count(self, counter: str) -> None:
        """Bump one of the :meth:`stats` counters (for the session and adapters)."""
        self._counts[counter] += 1

    def _failed(self, action: str, exc: Exception) -> None:
        """Log a store failure (it propagates to the caller too). The store's
        message is not repeated: it may hold a key; the cause is chained."""
        self._counts["store_errors"] += 1
        log.warning(
            "%s failed to %s a session: %s",
            type(self.provider).__name__,
            action,
            type(exc).__name__,
        )

    # -- GC and processes ------------------------------------------------------

    def gc(self) -> int:
        """Remove expired sessions now; returns how many."""
        return self.provider.gc(self.clock())

    def _new_process(self) -> None:
        # The first session created here, or in a process forked from the one
        # that used us (detected, not heard of: some servers skip at-fork
        # hooks). The parent's GC thread does not exist in a child. Only
        # create() checks: it needs the pid for the id pool anyway, and a load
        # would pay a system call on every request (about 0.2 us here) for a
        # thread that can wait for the process's first new session.
        self._pid = os.getpid()
        self.start_gc()

    def start_gc(self) -> None:
        """Start the GC thread in this process if it is not running."""
        sweeper = self._sweeper
        if sweeper is None:
            return
        with self._gc_lock:
            if self._closed or sweeper.running:
                return
            sweeper.start()

    @property
    def gc_running(self) -> bool:
        """Whether the GC thread runs in this process."""
        return self._sweeper is not None and self._sweeper.running

    def close(self) -> None:
        """Stop the GC thread and close a provider this manager built. Idempotent."""
        with self._gc_lock:
            if self._closed:
                return
            self._closed = True
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._owns_provider:
            self.provider.close()


#: How often revoke_user lists a user's sessions again (see there).
_REVOKE_PASSES = 5

# CPython's own SHA-256 where it has it (the module is _sha256 up to 3.11,
# _sha2 from 3.12): for a 43-byte id it costs 5,100 machine instructions
# against OpenSSL's 6,700 (valgrind), which sets up a whole EVP context per
# digest. Same digest either way.
_sha256: Callable[[bytes], hashlib._Hash]
try:
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]
except ImportError:
    try:
        from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        _sha256 = hashlib.sha256

_COUNTERS = ("created", "loaded", "missed", "lost", "revoked", "refused", "store_errors")


def _digest(key: str) -> str:
    digest = hashlib.sha256(b"wsgi_session handle\x00" + key.encode("ascii")).digest()
    return urlsafe_b64encode(digest)[:22].decode("ascii")


def _handle(key: str, user: str | None) -> str:
    if user is None:
        return _digest(key)
    # surrogatepass: a user is any str, lone surrogates included.
    encoded = urlsafe_b64encode(user.encode("utf-8", "surrogatepass")).rstrip(b"=")
    return f"{_digest(key)}.{encoded.decode('ascii')}"
