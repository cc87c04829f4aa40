"""Sessions kept in this process's memory: segmented LRU eviction, expiry buckets."""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping
from types import EllipsisType
from typing import Any

from .. import options
from ..provider import UNCHANGED, Provider, Record, expires
from ..values import copy_value, has_container

#: Sessions that expire within this many seconds are filed in one-second
#: buckets; later ones in coarser buckets (see ``_file``).
_NEAR = 4096

_record = tuple.__new__

# One lock per process for the fork repair: dict.setdefault is atomic under
# the GIL, so every thread of a new child process gets the same one.
_FORK_GUARDS: dict[int, threading.Lock] = {}


class _Session(dict[str, Any]):
    """A stored session: its data, with the rest of its record in slots.

    One object per session instead of a dict plus a record (32 B less each).
    Being a dict, an empty session is falsy: test it with ``is None``.
    """

    __slots__ = (
        "created",
        "accessed",
        "idle",
        "deadline",
        "persistent",
        "user",
        "containers",  # whether a value is a list or dict (then a load deep-copies)
        "bucket",  # the expiry bucket this session is filed in
    )
    created: float
    accessed: float
    idle: float
    deadline: float | None
    persistent: bool
    user: str | None
    containers: bool
    bucket: dict[str, None]


class MemoryProvider(Provider):
    """Keeps sessions in this process, bounded by ``max_sessions``.

    **Eviction** (a full store making room for a new session) is a segmented
    LRU: a new session is *probationary* until its second request (a load),
    then *protected*. The oldest probationary session goes first; a protected
    one only when no session is probationary. So a flood of cookie-less
    visitors (each making a session it never comes back to) evicts the
    flood's own sessions and the first sessions of new visitors who have not
    come back yet, but not a session that has been used again (at most the
    oldest one, each time no session at all is probationary). A client that
    sends its cookies back makes protected sessions, and is plain LRU again.
    Each request costs O(1).

    **Expiry.** Each session has its own idle timeout and deadline. Every
    session is filed in exactly one *expiry bucket*, due no later than the
    session's expiry at filing time; a request does not re-file it (its
    expiry only moves later). :meth:`gc` takes due buckets in time order:
    it removes the sessions that are dead and files the rest again under
    their real expiry. So a sweep finds every dead session whatever the
    lifetimes, visits a live one about once per lifetime rather than on
    every sweep, and looks at up to ``gc_batch`` sessions per hold of the
    lock (the default 500 takes about 0.8 ms at a million sessions; see
    ``bench/sweep.py``). A dead session is removed by the first sweep at or
    after its expiry rounded up to a whole second (it is never returned
    meanwhile).

    Sessions live in one process: with several worker processes each has its
    own store (use the Redis provider there). A forked child keeps a copy of
    the store, or starts empty if another thread was inside the store at the
    fork (its copy may be half-written).
    """

    process_local = True

    def __init__(self, max_sessions: int = 1_000_000, gc_batch: int = 500) -> None:
        self.max_sessions = options.positive_int("max_sessions", max_sessions)
        self.gc_batch = options.positive_int("gc_batch", gc_batch)
        self._mutex = threading.Lock()
        self._pid = os.getpid()
        self._evicted = 0
        self._clear()

    def _clear(self) -> None:
        # Both segments run from least to most recently used.
        self._probation: OrderedDict[str, _Session] = OrderedDict()
        self._protected: OrderedDict[str, _Session] = OrderedDict()
        # Expiry buckets: due time (int seconds) -> sids, and a heap of the
        # due times; a bucket being swept is held in _draining. A bucket is a
        # dict rather than a set: smaller, and swept in the order sessions
        # were filed, which is about the order they lie in memory (fewer
        # cache misses: 1.3 against 2.3 us per session at 200,000 sessions).
        self._buckets: dict[int, dict[str, None]] = {}
        self._due: list[int] = []
        self._draining: dict[str, None] = {}
        self._users: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        # Under the lock: a promotion moves a session between the two
        # segments, and a count between the two reads could see it twice.
        self._acquire()
        try:
            return len(self._probation) + len(self._protected)
        finally:
            self._mutex.release()

    def stats(self) -> dict[str, int]:
        return {"evicted": self._evicted}

    # -- the lock, and forks ---------------------------------------------------------

    def _acquire(self) -> None:
        """Take the lock (release with ``self._mutex.release()``).

        A child forked while another thread held the lock inherits it held,
        by a thread the child does not have. A free lock needs no check, so
        ``os.getpid()`` (a system call: about 0.24 us here) is only paid
        when the lock is busy.
        """
        if not self._mutex.acquire(False):  # positional: a keyword costs 0.15 us here
            self._wait()

    def _wait(self) -> None:
        """Take a busy lock, after checking it was not inherited held by a fork."""
        if os.getpid() != self._pid:
            self._after_fork()
        self._mutex.acquire()

    def _after_fork(self) -> None:
        """In a forked child: a new lock, and an empty store if the old lock was held."""
        pid = os.getpid()
        with _FORK_GUARDS.setdefault(pid, threading.Lock()):
            if self._pid == pid:  # another thread of this child repaired it
                return
            if self._mutex.locked():  # a thread was mid-change at the fork
                self._clear()
            self._mutex = threading.Lock()
            self._pid = pid

    # -- bookkeeping (lock held) -------------------------------------------------------

    def _find(self, sid: str) -> _Session | None:
        entry = self._protected.get(sid)
        return self._probation.get(sid) if entry is None else entry

    def _file(self, sid: str, entry: _Session, expiry: float, now: float) -> None:
        """Put ``sid`` in the bucket that comes due at or before ``expiry``
        (within a second of it when that is near)."""
        remaining = expiry - now
        if remaining <= _NEAR:
            due = math.ceil(expiry)
        else:
            # Far off: a coarse bucket, due early, keeps the number of buckets
            # small; the sweep then files the session again, closer.
            width = 1 << int(remaining / _NEAR).bit_length()
            due = int(expiry // width) * width
        bucket = self._buckets.get(due)
        if bucket is None:
            bucket = self._buckets[due] = {}
            heapq.heappush(self._due, due)
        bucket[sid] = None
        entry.bucket = bucket

    def _index(self, sid: str, user: str) -> None:
        sids = self._users.get(user)
        if sids is None:
            self._users[user] = {sid}
        else:
            sids.add(sid)

    def _unindex(self, sid: str, user: str) -> None:
        sids = self._users.get(user)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._users[user]

    def _forget(self, sid: str, entry: _Session) -> None:
        """Remove ``sid`` from its segment, its bucket and the user index."""
        if self._protected.pop(sid, None) is None:
            self._probation.pop(sid, None)
        del entry.bucket[sid]
        if entry.user is not None:
            self._unindex(sid, entry.user)

    # -- the contract ----------------------------------------------------------------

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
        entry = _Session(data)
        entry.created = entry.accessed = now
        entry.idle = idle
        entry.deadline = deadline
        entry.persistent = persistent
        entry.user = user
        entry.containers = has_container(entry)
        self._acquire()
        try:
            while len(self._probation) + len(self._protected) >= self.max_sessions:
                victim, gone = (self._probation or self._protected).popitem(last=False)
                self._forget(victim, gone)
                self._evicted += 1
            self._probation[sid] = entry
            self._file(sid, entry, expires(now, idle, deadline), now)
            if user is not None:
                self._index(sid, user)
        finally:
            self._mutex.release()

    # load() and save() run on every request, so they take the lock and test
    # expiry inline rather than calling _acquire(), _find() and expires():
    # 40-60 ns less per load and 80-100 ns less per save (timeit, best of 15,
    # 0.47-0.49 against 0.53-0.55 us and 0.51-0.52 against 0.59-0.61 us here).
    def load(self, sid: str, now: float) -> Record | None:
        if not self._mutex.acquire(False):
            self._wait()
        try:
            protected = self._protected
            entry = protected.get(sid)
            if entry is not None:
                protected.move_to_end(sid)
            else:
                entry = self._probation.pop(sid, None)
                if entry is None:
                    return None
                protected[sid] = entry  # its second request: no longer probationary
            deadline = entry.deadline
            if entry.accessed + entry.idle <= now or (deadline is not None and deadline <= now):
                self._forget(sid, entry)
                return None
            accessed = entry.accessed
            entry.accessed = now
            if entry.containers:
                data = {key: copy_value(value) for key, value in entry.items()}
            else:
                data = entry.copy()
            # tuple.__new__ skips the Python-level __new__ of a NamedTuple:
            # 0.2 us less per load (timeit, 0.26 against 0.45 us here).
            fields = (data, entry.created, accessed, entry.idle, deadline, entry.persistent)
            return _record(Record, fields)
        finally:
            self._mutex.release()

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
        # No move in the recency order: the request's load has just done it.
        if not self._mutex.acquire(False):
            self._wait()
        try:
            entry = self._protected.get(sid)
            if entry is None:
                entry = self._probation.get(sid)
                if entry is None:
                    return False
            deadline = entry.deadline
            if entry.accessed + entry.idle <= now or (deadline is not None and deadline <= now):
                self._forget(sid, entry)
                return False
            entry.update(changed)
            for key in removed:
                entry.pop(key, None)
            if removed or entry.containers:
                entry.containers = has_container(entry)
            elif changed:  # only the new values can bring a list or dict in
                entry.containers = has_container(changed)
            entry.accessed = now
            if lifetime is not None:
                entry.idle, entry.persistent = lifetime
                # A shorter idle timeout may make it due before its bucket.
                del entry.bucket[sid]
                self._file(sid, entry, expires(now, entry.idle, entry.deadline), now)
            if user is not UNCHANGED and user != entry.user:
                if entry.user is not None:
                    self._unindex(sid, entry.user)
                entry.user = user
                if user is not None:
                    self._index(sid, user)
            return True
        finally:
            self._mutex.release()

    def rename(self, old: str, new: str, now: float) -> bool:
        self._acquire()
        try:
            entry = self._find(old)
            if entry is None:
                return False
            if expires(entry.accessed, entry.idle, entry.deadline) <= now:
                self._forget(old, entry)
                return False
            segment = self._protected if old in self._protected else self._probation
            del segment[old]
            segment[new] = entry
            del entry.bucket[old]
            entry.bucket[new] = None
            if entry.user is not None:
                sids = self._users[entry.user]
                sids.discard(old)
                sids.add(new)
            return True
        finally:
            self._mutex.release()

    def destroy(self, sid: str) -> None:
        self._acquire()
        try:
            entry = self._find(sid)
            if entry is not None:
                self._forget(sid, entry)
        finally:
            self._mutex.release()

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        """The user's live sessions, from the user index; ``record.data`` is empty."""
        self._acquire()
        try:
            found = []
            for sid in self._users.get(user, ()):
                entry = self._find(sid)
                if entry is not None and expires(entry.accessed, entry.idle, entry.deadline) > now:
                    record = Record(
                        {}, entry.created, entry.accessed, entry.idle, entry.deadline,
                        entry.persistent,
                    )
                    found.append((sid, record))
            return found
        finally:
            self._mutex.release()

    def gc(self, now: float) -> int:
        """Remove dead sessions, ``gc_batch`` visits per hold of the lock;
        between batches requests are served."""
        removed = 0
        while True:
            self._acquire()
            try:
                n, more = self._sweep_batch(now)
            finally:
                self._mutex.release()
            removed += n
            if not more:
                return removed
            time.sleep(0)  # let waiting request threads take the lock

    def _sweep_batch(self, now: float) -> tuple[int, bool]:
        """Visit up to ``gc_batch`` sessions of due buckets: remove the dead,
        file the live again. Returns (removed, whether work is left). Lock held."""
        removed = 0
        draining = self._draining
        probation, protected = self._probation, self._protected
        for _ in range(self.gc_batch):
            while not draining:  # (a bucket may have been emptied by destroys)
                if not self._due or self._due[0] > now:
                    return removed, False
                draining = self._draining = self._buckets.pop(heapq.heappop(self._due))
            sid = draining.popitem()[0]
            # Probation first: most sessions that die never came back. Each
            # lookup is a cache miss in a large store (about 0.3 us here).
            segment = probation
            entry = probation.get(sid)
            if entry is None:
                segment = protected
                entry = protected.get(sid)
            if entry is None or entry.bucket is not draining:  # cannot happen; stay safe
                continue
            # expires() and _forget(), inlined: the loop that bounds how long
            # the lock is held: 0.3 us less per session visited (0.9 against
            # 1.2 us at 200,000 sessions here, process time).
            expiry = entry.accessed + entry.idle
            deadline = entry.deadline
            if deadline is not None and deadline < expiry:
                expiry = deadline
            if expiry <= now:
                del segment[sid]
                if entry.user is not None:
                    self._unindex(sid, entry.user)
                removed += 1
            else:
                self._file(sid, entry, expiry, now)
        return removed, True
