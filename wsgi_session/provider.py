"""The contract every session store implements (version 2)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from types import EllipsisType
from typing import Any, ClassVar, NamedTuple


class Record(NamedTuple):
    """A live session as a provider returns it.

    ``accessed`` is the access *before* the call that returned the record
    (a load is itself an access, and moves it to ``now`` in the store).
    """

    data: dict[str, Any]
    created: float
    accessed: float
    idle: float
    deadline: float | None
    persistent: bool


#: ``save(..., user=UNCHANGED)``: leave the session's user as it is.
UNCHANGED: EllipsisType = ...


def expires(accessed: float, idle: float, deadline: float | None) -> float:
    """When a session accessed at ``accessed`` dies: ``min(accessed + idle, deadline)``."""
    end = accessed + idle
    return end if deadline is None or end < deadline else deadline


class Provider(ABC):
    """A session store: where session data lives between requests.

    The :class:`~wsgi_session.Manager` is the only caller. It makes the ids
    (and hashes them, with ``hash_ids``: a provider only ever sees the
    *storage key*, here called ``sid``), checks keys and values, and passes
    the time in. A provider keeps data and enforces expiry. This docstring is
    the whole contract; :mod:`wsgi_session.testing` checks it.

    **What a session is.** A ``sid`` (43 URL-safe characters, or with
    ``hash_ids`` 32 lowercase hex digits: always ASCII, at most 43) maps
    to: the data (a dict of str keys to JSON-compatible values), ``created``,
    ``accessed`` (the last access), ``idle`` (this session's sliding timeout
    in seconds; sessions differ, "remember me" makes it longer),
    ``deadline`` (an absolute time or None), ``persistent`` (whether its
    cookie outlives the browser; the provider only keeps the flag) and
    ``user`` (a str or None, for the per-user index below).

    **Expiry.** A session is dead once ``now >= expires(accessed, idle,
    deadline)``. A dead session is never returned, listed or written, even
    if :meth:`gc` has not removed it yet. ``load`` and ``save`` are accesses:
    they set ``accessed = now``. ``rename`` keeps ``accessed``.

    **No resurrection.** Only :meth:`create` brings a session into being.
    ``save`` and ``rename`` act only on a live session and report whether
    they did; after ``destroy``, expiry, eviction or ``rename`` away from
    it, a ``sid`` never becomes live again, whatever call races with it.

    **Atomicity.** Each call is atomic with respect to every other call on
    the same session, from any thread or process that shares the store:

    * ``save`` checks liveness and writes in one step. It sets the
      ``changed`` keys and deletes the ``removed`` ones, and leaves every
      other key as it is in the store *now*, so two requests writing
      different keys of one session both keep their writes (no read,
      modify, write of the whole session).
    * ``rename`` is all or nothing: afterwards exactly one of ``old`` and
      ``new`` is live. A store without multi-key transactions writes
      ``new`` and then deletes ``old``, and must re-check that ``old`` was
      still live at the delete, removing ``new`` again if it was not
      (a destroy that raced the copy wins).
    * ``destroy`` removes the session and its index entry together.

    **Copies.** ``load`` returns data the caller owns. ``create`` and
    ``save`` may keep the values they are given (nobody mutates them
    afterwards).

    **Values.** Keys are non-empty str without NUL or lone surrogates;
    values are ``None``, ``bool``, ``int``, ``float`` (finite), ``str``,
    ``list`` and ``dict`` with str keys: :mod:`wsgi_session.values` checks
    them at assignment, so a provider never has to refuse one. A store that
    keeps text encodes each value with :func:`wsgi_session.values.encode`
    and decodes it with :func:`~wsgi_session.values.decode` (then every
    store gives back exactly the same values: a float stays a float).

    **Users.** ``user`` is set by ``create`` and changed by ``save`` (where
    it is not :data:`UNCHANGED`). :meth:`sessions_of` lists a user's live
    sessions without scanning the store; the index follows the session
    (destroy, expiry, eviction, rename). A stale index entry may linger
    until the next ``gc``, but is never listed.

    **Errors.** A store failure (connection refused, timeout, a locked or
    corrupt database) raises :class:`~wsgi_session.ProviderError` with the
    cause chained, never a silently empty result.

    **Threads and processes.** Every method may be called from many threads
    at once. A provider that holds process-local resources (connections,
    locks, threads) must notice a fork by itself (compare ``os.getpid()``):
    at-fork hooks do not run under every server.

    **Privacy.** Never log session ids, storage keys or contents, and keep
    them out of exception messages.

    Times are seconds from the manager's clock (``time.time`` unless a test
    injects another). A new provider subclasses this class, implements the
    abstract methods, runs the kit :class:`wsgi_session.testing.ProviderTests`
    from its test suite, and is made available with :func:`wsgi_session.register`.
    """

    #: True for a store inside one process (not shared by the workers of a
    #: multi-process server).
    process_local: ClassVar[bool] = False

    @abstractmethod
    def create(
        self,
        sid: str,
        data: Mapping[str, Any],
        now: float,
        *,
        idle: float,
        deadline: float | None,
        persistent: bool = False,
        user: str | None = None,
    ) -> None:
        """Store a new session with ``created = accessed = now``.

        ``sid`` is fresh from a random generator, so it is not in the store.
        ``data`` may be empty (a session can exist only for its lifetime).
        """

    @abstractmethod
    def load(self, sid: str, now: float) -> Record | None:
        """The live session (an access: ``accessed`` becomes ``now``), or None.

        Never creates a session: an unknown id stays unknown.
        """

    @abstractmethod
    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        *,
        lifetime: tuple[float, bool] | None = None,
        user: str | None | EllipsisType = UNCHANGED,
    ) -> bool:
        """Set ``changed`` keys, delete ``removed`` ones, and access the session.

        ``lifetime`` (``(idle, persistent)``), where given, replaces the
        session's. ``user``, unless :data:`UNCHANGED`, replaces its user.
        Returns False and stores nothing if the session is not live.
        """

    @abstractmethod
    def rename(self, old: str, new: str, now: float) -> bool:
        """Move a live session, with everything it has, from ``old`` to ``new``.

        Returns False (and ``new`` stays unknown) if ``old`` was not live.
        """

    @abstractmethod
    def destroy(self, sid: str) -> None:
        """Remove the session. Unknown ids are ignored."""

    @abstractmethod
    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        """The ``(sid, record)`` pairs of ``user``'s live sessions, in no
        particular order; not an access. ``record.data`` may be empty."""

    def gc(self, now: float) -> int:
        """Remove sessions dead at ``now`` (and stale index entries); return
        how many sessions. Called from the manager's background thread.

        Must not hold a lock over the whole store for long: work in bounded
        batches, and visit every dead session eventually whatever the
        sessions' lifetimes. A store that expires keys itself keeps this
        default, which does nothing.
        """
        return 0

    def stats(self) -> dict[str, int]:
        """Counters the store keeps itself (say ``evicted``); merged into
        :meth:`Manager.stats <wsgi_session.Manager.stats>`. Default: none."""
        return {}

    def count(self) -> int | None:
        """How many sessions the store holds, or None if it cannot say cheaply."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release connections or other resources. The default does nothing."""
