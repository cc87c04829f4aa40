"""The manager: ids, lifetimes, the provider, and the GC thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from . import registry
from .ids import new_id
from .provider import Provider
from .sweeper import Sweeper
from .values import copy_values

Clock = Callable[[], float]

log = logging.getLogger("wsgi_session")


def check_seconds(option: str, value: object) -> float:
    """``value`` as float seconds: a positive, finite int or float (not bool),
    else TypeError or ValueError naming ``option``. Providers use it too."""
    if type(value) not in (int, float):
        raise TypeError(f"{option} must be a number of seconds, not {value!r}")
    seconds = float(value)  # type: ignore[arg-type]
    if not 0 < seconds < float("inf"):  # also refuses NaN
        raise ValueError(f"{option} must be a positive, finite number of seconds, not {value!r}")
    return seconds


class Manager:
    """Runs the life of sessions over one provider (the Go design's Manager).

    ``provider`` is a registered name (built with ``provider_options``) or a
    ready :class:`Provider`. A provider built here is the manager's and is
    closed by :meth:`close`; one passed in belongs to the caller.

    ``max_lifetime`` is the sliding idle timeout; ``absolute_lifetime`` (or
    None) ends a session that long after its creation however busy it is.
    ``gc_interval`` is the seconds between background sweeps (``0`` or
    ``None``: no thread). The thread starts on the first :meth:`start_gc` in
    each process, so it also runs in workers forked after the app was loaded.
    ``clock`` returns the current time in seconds; tests inject their own.
    """

    def __init__(
        self,
        provider: str | Provider = "memory",
        provider_options: Mapping[str, Any] | None = None,
        *,
        max_lifetime: float = 3600,
        absolute_lifetime: float | None = None,
        gc_interval: float | None = 60,
        clock: Clock = time.time,
    ) -> None:
        self.max_lifetime = check_seconds("max_lifetime", max_lifetime)
        self.absolute_lifetime = (
            None
            if absolute_lifetime is None
            else check_seconds("absolute_lifetime", absolute_lifetime)
        )
        if gc_interval is not None and gc_interval != 0:
            gc_interval = check_seconds("gc_interval", gc_interval)
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
        self._sweeper = Sweeper(self.gc, self.gc_interval) if self.gc_interval else None
        self._gc_lock = threading.Lock()
        self._gc_pid = 0
        self._closed = False

    # -- sessions ----------------------------------------------------------

    def load(self, sid: str) -> dict[str, Any] | None:
        """The live session's data (a copy), refreshing its idle timeout."""
        try:
            return self.provider.load(sid, self.clock(), self.max_lifetime)
        except Exception as exc:
            self._failed("load", exc, sid)
            raise

    def create(self, data: Mapping[str, Any]) -> str:
        """Store a new session holding ``data``; return its fresh id."""
        sid = new_id()
        now = self.clock()
        absolute = self.absolute_lifetime
        try:
            self.provider.create(
                sid,
                copy_values(data),
                now,
                self.max_lifetime,
                None if absolute is None else now + absolute,
            )
        except Exception as exc:
            self._failed("create", exc, sid)
            raise
        return sid

    def save(self, sid: str, changed: Mapping[str, Any], removed: Collection[str]) -> bool:
        """Write changed keys and delete removed ones; False if the session is gone."""
        return self.save_copies(sid, copy_values(changed), removed)

    def save_copies(self, sid: str, changed: dict[str, Any], removed: Collection[str]) -> bool:
        """:meth:`save` for a caller that hands over its own copies (the session):
        ``changed`` and its values go to the provider as they are."""
        try:
            return self.provider.save(sid, changed, removed, self.clock(), self.max_lifetime)
        except Exception as exc:
            self._failed("save", exc, sid)
            raise

    def regenerate(self, sid: str) -> str | None:
        """Move a live session to a fresh id; the old id is dead at once.

        Returns the new id, or None if ``sid`` was not live.
        """
        new = new_id()
        try:
            renamed = self.provider.rename(sid, new, self.clock(), self.max_lifetime)
        except Exception as exc:
            self._failed("rename", exc, sid, new)
            raise
        return new if renamed else None

    def destroy(self, sid: str) -> None:
        try:
            self.provider.destroy(sid)
        except Exception as exc:
            self._failed("destroy", exc, sid)
            raise

    def _failed(self, action: str, exc: Exception, *sids: str) -> None:
        """Log a store failure (it propagates to the caller too), without ids."""
        message = str(exc)
        for sid in sids:
            message = message.replace(sid, "<id>")
        log.warning(
            "wsgi_session: %s failed to %s a session: %s: %s",
            type(self.provider).__name__,
            action,
            type(exc).__name__,
            message,
        )

    # -- GC ----------------------------------------------------------------

    def gc(self) -> int:
        """Remove expired sessions now; returns how many."""
        return self.provider.gc(self.clock())

    def start_gc(self) -> None:
        """Start the GC thread in this process if it is not running (cheap to repeat)."""
        sweeper = self._sweeper
        if sweeper is None or self._closed:
            return
        pid = os.getpid()
        with self._gc_lock:
            if self._gc_pid == pid and sweeper.running:
                return
            # A fresh process (first call, or a worker forked with the app
            # loaded) has no thread yet: the parent's did not survive fork.
            self._gc_pid = pid
            sweeper.start()

    @property
    def gc_running(self) -> bool:
        return self._sweeper is not None and self._sweeper.running

    def close(self) -> None:
        """Stop the GC thread and close a provider this manager built. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._owns_provider:
            self.provider.close()
