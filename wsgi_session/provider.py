"""The contract every session store implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, ClassVar


class Provider(ABC):
    """A session store: where session data lives between requests.

    The :class:`~wsgi_session.Manager` is the only caller. It generates the ids,
    validates values and keys, and passes the time in, so a provider only has
    to keep data and enforce expiry. The operations are those of the Go
    session design this package follows (SessionInit, SessionRead,
    SessionUpdate, SessionDestroy, SessionGC), plus what a store outside the
    process needs: saving only the keys that changed, and renaming.

    Rules every provider keeps:

    * **Thread safety.** Every method may be called from many threads at once.
    * **Copies.** ``load`` returns a dict the caller owns; mutating it must not
      change the store. ``create`` and ``save`` may keep the values they are
      given (the manager hands over values nobody else mutates).
    * **Expiry.** A session is dead once ``now`` passes ``last access + idle``
      or its absolute ``deadline``, whichever is first. A dead session is
      never returned by ``load``, even if ``gc`` has not removed it yet.
      ``load``, ``save`` and ``rename`` count as an access and slide the idle
      expiry to ``min(now + idle, deadline)``.
    * **No resurrection.** ``save`` and ``rename`` only act on a live session;
      they return ``False`` (and store nothing) when it is unknown, expired or
      destroyed. Only ``create`` brings a session into being.
    * **Errors.** A store failure (connection refused, timeout, ...) raises
      :class:`~wsgi_session.ProviderError` with the cause chained, never a
      silently empty result.
    * **Values** are JSON-compatible (``None``, ``bool``, ``int``, ``float``,
      ``str``, ``list`` and ``dict`` with ``str`` keys; the manager checks this
      before a value reaches the provider). Keys are non-empty ``str``.
    * **Privacy.** Never log session ids or session contents, and keep ids
      out of exception messages (they end up in logs; the manager redacts
      the ids it knows from the messages it logs, as a second line).

    Times are seconds from the manager's clock (``time.time`` unless a test
    injects another), so an out-of-process store can compare them across
    hosts. ``idle`` is the sliding timeout in seconds; ``deadline`` is an
    absolute time or ``None`` for no absolute limit.

    A new provider subclasses this class, implements the abstract methods,
    and is made available by name with :func:`wsgi_session.register` (or the
    ``wsgi_session.providers`` entry-point group).
    """

    #: True for a store that lives inside one process (sessions are not
    #: shared between the workers of a multi-process server).
    process_local: ClassVar[bool] = False

    @abstractmethod
    def create(
        self, sid: str, data: Mapping[str, Any], now: float, idle: float, deadline: float | None
    ) -> None:
        """Store a new session under ``sid`` (SessionInit).

        ``sid`` is fresh from the manager's random generator, so it is not in
        the store. ``data`` is non-empty.
        """

    @abstractmethod
    def load(self, sid: str, now: float, idle: float) -> dict[str, Any] | None:
        """Return a copy of the session's data and refresh its idle expiry
        (SessionRead + SessionUpdate), or ``None`` if it is not live.

        Never creates a session: an unknown id stays unknown.
        """

    @abstractmethod
    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        idle: float,
    ) -> bool:
        """Set the ``changed`` keys, delete the ``removed`` ones, refresh expiry.

        Keys the request did not touch keep whatever value they have in the
        store now, so concurrent requests writing different keys both keep
        their writes. Returns ``False`` and stores nothing if the session is
        not live.
        """

    @abstractmethod
    def rename(self, old: str, new: str, now: float, idle: float) -> bool:
        """Move a live session's data (and deadline) from ``old`` to ``new``.

        Afterwards ``old`` is dead. Returns ``False`` if ``old`` was not live.
        """

    @abstractmethod
    def destroy(self, sid: str) -> None:
        """Remove the session (SessionDestroy). Unknown ids are ignored."""

    def gc(self, now: float) -> int:
        """Remove sessions that are dead at ``now`` and return how many
        (SessionGC). Called from the manager's background thread.

        Must not hold a lock over the whole store for long: work in bounded
        batches. A store that expires keys itself (Redis) keeps this default,
        which does nothing.
        """
        return 0

    @abstractmethod
    def __len__(self) -> int:
        """The number of sessions held (for a remote store, an estimate is fine)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections or other resources. The default does nothing."""
