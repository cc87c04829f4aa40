"""Sessions kept in this process's memory: segmented LRU eviction, expiry buckets."""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterator, Mapping
from types import EllipsisType
from typing import Any

from .. import options
from ..provider import UNCHANGED, Provider, Record, expires
from ..values import copy_value, has_container

#: Sessions that expire within this many seconds are filed in one-second
#: buckets; later ones in coarser buckets (see ``_file``).
_NEAR = 4096

#: How many distinct shapes (see ``_Entry``) are kept for sharing before
#: the cache starts again.
_SHAPES = 4096

_record = tuple.__new__

# One lock per process for the fork repair: dict.setdefault is atomic under
# the GIL, so every thread of a new child process gets the same one.
_FORK_GUARDS: dict[int, threading.Lock] = {}


class _Session(dict[str, Any]):
    """A session in use: its data, with the rest of its record in slots.

    A dict, so that a load copies the data in one call. Being a dict, an
    empty session is falsy: test it with ``is None``.
    """

    __slots__ = (
        "created",
        "accessed",
        "idle",
        "deadline",
        "persistent",
        "user",
        "containers",  # whether a value is a list or dict (then a load deep-copies)
        "due",  # the due time of the expiry bucket it is filed in
    )
    created: float
    accessed: float
    idle: float
    deadline: float | None
    persistent: bool
    user: str | None
    containers: bool
    due: int


# A session made and not loaded since (most sessions of a public site: one
# page view, a crawler, a flood) is a tuple, a third the size of a _Session:
#
#     (created, due, shape, *values)    shape = (idle, deadline, persistent, user, *keys)
#
# Its last access is its creation. Sessions alike share one shape (see
# MemoryProvider._shape). Holding only scalars, the tuple is one the garbage
# collector stops tracking: a full collection skips it (11 against 70 ms of
# CPU at 300,000 sessions here). Its first load makes a _Session of it.
_Entry = _Session | tuple[Any, ...]


def _in_use(new: tuple[Any, ...]) -> _Session:
    """The _Session for a new session's tuple."""
    shape = new[2]
    entry = _Session()
    containers = False
    # A loop, rather than _Session(zip(keys, values)) and has_container():
    # 6,100 against 9,300 instructions for two keys (valgrind).
    i = 3
    for key in shape[4:]:
        value = entry[key] = new[i]
        i += 1
        if value.__class__ is list or value.__class__ is dict:
            containers = True
    entry.created = entry.accessed = new[0]
    entry.idle = shape[0]
    entry.deadline = shape[1]
    entry.persistent = shape[2]
    entry.user = shape[3]
    entry.containers = containers
    entry.due = new[1]
    return entry


def _fields(entry: _Entry) -> tuple[float, float, float, float | None, bool, str | None, int]:
    """(created, accessed, idle, deadline, persistent, user, due) of an entry of either kind."""
    if isinstance(entry, tuple):
        idle, deadline, persistent, user = entry[2][:4]
        return entry[0], entry[0], idle, deadline, persistent, user, entry[1]
    return (
        entry.created, entry.accessed, entry.idle, entry.deadline, entry.persistent, entry.user,
        entry.due,
    )  # fmt: skip


def _due_of(entry: _Entry) -> int:
    return entry[1] if isinstance(entry, tuple) else entry.due


def _user_of(entry: _Entry) -> str | None:
    return entry[2][3] if isinstance(entry, tuple) else entry.user


class _Sids(list[str]):
    """The sids filed under ``key``: an expiry bucket's due time (whole
    seconds), or a user.

    A session removed or filed elsewhere stays listed (*stale*) until more
    than half of the list is stale; then the list is rebuilt without them:
    O(1) per removal on average, and a list slot costs 8 B where a set's or
    a dict's costs 30-40 B. A bucket's ``key`` is the one int object its
    sessions refer to (an int of their own would cost each 32 B).
    """

    __slots__ = ("key", "stale")
    key: Any
    stale: int


def _sids(key: Any) -> _Sids:
    sids = _Sids()
    sids.key = key
    sids.stale = 0
    return sids


class _Arrivals:
    """Probationary sessions by sid, the oldest out first; each call O(1)
    (amortized).

    A plain dict whose oldest items are deleted leaves holes at its front
    that each ``next(iter(d))`` scans again: 62 us per eviction at a million
    sessions here. An OrderedDict costs 53 B more per item. So sessions
    arrive in ``newer``; when an eviction finds ``older`` empty, ``newer``
    becomes ``older`` with a queue of its sids in arrival order (10 ms at a
    million; turning the dict round instead took 0.5 s), and evictions take
    sids from the queue, passing those that left ``older`` meanwhile.
    """

    __slots__ = ("older", "newer", "queue")

    def __init__(self) -> None:
        self.older: dict[str, _Entry] = {}
        self.newer: dict[str, _Entry] = {}
        self.queue: deque[str] = deque()

    def __len__(self) -> int:
        return len(self.older) + len(self.newer)

    def __iter__(self) -> Iterator[str]:
        yield from self.older
        yield from self.newer

    def get(self, sid: str) -> _Entry | None:
        entry = self.newer.get(sid)
        return self.older.get(sid) if entry is None else entry

    def pop(self, sid: str) -> _Entry | None:
        entry = self.newer.pop(sid, None)
        if entry is None:
            entry = self.older.pop(sid, None)
            if not self.older:
                self.queue.clear()  # (it would keep the sids of sessions gone)
        return entry

    def add(self, sid: str, entry: _Entry) -> None:
        """Add ``sid`` (not held yet) as the newest arrival."""
        self.newer[sid] = entry

    def replace(self, sid: str, entry: _Entry) -> None:
        """Give ``sid`` (held) a new entry, in the same place."""
        if sid in self.newer:
            self.newer[sid] = entry
        else:
            self.older[sid] = entry

    def pop_oldest(self) -> tuple[str, _Entry]:
        """Remove and return the oldest arrival (there must be one)."""
        if not self.older:
            self.older, self.newer = self.newer, {}
            self.queue = deque(self.older)
        while True:
            sid = self.queue.popleft()
            entry = self.older.pop(sid, None)
            if entry is not None:
                if not self.older:
                    self.queue.clear()
                return sid, entry


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
    Each request costs O(1) (amortized: see ``_Arrivals`` and ``_Sids``).

    **Memory.** A new session (made, and not loaded since: most sessions of
    a public site, and all of a flood's) is a flat tuple: about 250 B with a
    43-character key and its places in the indexes (``bench/sweep.py``
    shows the parts). Its first load makes a dict of it (about 500 B), which
    each later load copies in one call. The expiry buckets and the user
    index may also hold sids of sessions gone or filed elsewhere, never
    more than live ones.

    **Expiry.** Each session has its own idle timeout and deadline. Every
    session is filed in exactly one *expiry bucket*, due no later than the
    session's expiry at filing time; a request does not re-file it (its
    expiry only moves later). :meth:`gc` takes due buckets in time order:
    it removes the sessions that are dead and files the rest again under
    their real expiry. So a sweep finds every dead session whatever the
    lifetimes, visits a live one about once per lifetime rather than on
    every sweep, and looks at up to ``gc_batch`` sessions per hold of the
    lock (the default 200 takes about 0.3 ms of CPU at a million sessions;
    see ``bench/sweep.py``). A dead session is removed by the first sweep
    at or after its expiry rounded up to a whole second (it is never
    returned meanwhile).

    Sessions live in one process: with several worker processes each has its
    own store (use the Redis provider there). A forked child keeps a copy of
    the store, or starts empty if another thread was inside the store at the
    fork (its copy may be half-written).
    """

    process_local = True

    def __init__(self, max_sessions: int = 1_000_000, gc_batch: int = 200) -> None:
        self.max_sessions = options.positive_int("max_sessions", max_sessions)
        self.gc_batch = options.positive_int("gc_batch", gc_batch)
        self._mutex = threading.Lock()
        self._pid = os.getpid()
        self._evicted = 0
        self._clear()

    def _clear(self) -> None:
        # Probationary sessions, and protected ones from least to most
        # recently used.
        self._probation = _Arrivals()
        self._protected: OrderedDict[str, _Session] = OrderedDict()
        # Expiry buckets: due time (int seconds) -> sids, and a heap of the
        # due times; a bucket being swept is held in _draining.
        self._buckets: dict[int, _Sids] = {}
        self._due: list[int] = []
        self._draining = _sids(None)
        self._users: dict[str, _Sids] = {}
        self._shapes: dict[tuple[Any, ...], tuple[Any, ...]] = {}

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

    def _find(self, sid: str) -> _Entry | None:
        entry = self._protected.get(sid)
        return self._probation.get(sid) if entry is None else entry

    def _shape(self, shape: tuple[Any, ...]) -> tuple[Any, ...]:
        """``shape``, kept to be shared by the sessions alike that follow (see ``_Entry``)."""
        if len(self._shapes) >= _SHAPES:
            self._shapes.clear()
        self._shapes[shape] = shape
        return shape

    def _file(self, sid: str, expiry: float, now: float) -> int:
        """Put ``sid`` in the bucket that comes due at or before ``expiry``
        (within a second of it when that is near); return the bucket's due."""
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
            bucket = self._buckets[due] = _sids(due)
            heapq.heappush(self._due, due)
        bucket.append(sid)
        shared: int = bucket.key
        return shared

    def _bucket(self, due: int) -> _Sids | None:
        """The bucket ``due`` (an entry's) refers to: waiting, or being swept."""
        bucket = self._buckets.get(due)
        if bucket is not None and bucket.key is due:
            return bucket
        return self._draining if self._draining.key is due else None

    def _unfile(self, sid: str, due: int) -> _Sids | None:
        """``sid`` (its entry moved or gone) is no longer filed in the bucket
        due at ``due``; returns that bucket."""
        bucket = self._buckets.get(due)
        if bucket is None or bucket.key is not due:
            bucket = self._bucket(due)
        if bucket is not None:
            bucket.stale += 1
            if bucket.stale * 2 > len(bucket):
                self._compact(bucket, _due_of)
        return bucket

    def _compact(self, sids: _Sids, field: Callable[[_Entry], Any]) -> None:
        """Rebuild ``sids`` without repeats and without the sids whose entry
        is gone or has ``field`` other than ``sids.key``."""
        newer, older, protected = self._probation.newer, self._probation.older, self._protected
        key = sids.key
        live = []
        for sid in dict.fromkeys(sids):
            entry = newer.get(sid)
            if entry is None:
                entry = older.get(sid)
                if entry is None:
                    entry = protected.get(sid)
            if entry is not None and field(entry) == key:
                live.append(sid)
        sids[:] = live
        sids.stale = 0

    def _index(self, sid: str, user: str) -> None:
        sids = self._users.get(user)
        if sids is None:
            sids = self._users[user] = _sids(user)
        sids.append(sid)

    def _unindex(self, sid: str, user: str) -> None:
        """``sid`` is no longer ``user``'s."""
        sids = self._users.get(user)
        if sids is None:
            return
        sids.stale += 1
        if sids.stale * 2 > len(sids):
            self._compact(sids, _user_of)
            if not sids:
                del self._users[user]

    def _drop(self, sid: str, entry: _Entry) -> None:
        """Remove ``sid`` (out of its segment already) from its bucket and the user index."""
        if isinstance(entry, tuple):
            due, user = entry[1], entry[2][3]
        else:
            due, user = entry.due, entry.user
        self._unfile(sid, due)
        if user is not None:
            self._unindex(sid, user)

    def _evict(self) -> None:
        """Remove the oldest probationary session, or else the least recently used."""
        probation = self._probation
        if probation.older or probation.newer:
            sid, entry = probation.pop_oldest()
        else:
            sid, entry = self._protected.popitem(last=False)
        self._drop(sid, entry)
        self._evicted += 1

    def _forget(self, sid: str, entry: _Entry) -> None:
        """Remove ``sid`` from its segment, its bucket and the user index."""
        if self._protected.pop(sid, None) is None:
            self._probation.pop(sid)
        self._drop(sid, entry)

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
        shape = (idle, deadline, persistent, user, *data)
        self._acquire()
        try:
            probation, protected = self._probation, self._protected
            # (Not len(probation): a call to Python code.)
            while len(probation.older) + len(probation.newer) + len(protected) >= self.max_sessions:
                self._evict()
            shape = self._shapes.get(shape) or self._shape(shape)
            due = self._file(sid, expires(now, idle, deadline), now)
            probation.newer[sid] = (now, due, shape, *data.values())  # the newest arrival
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
                probation = self._probation
                found = probation.newer.pop(sid, None)
                if found is None:
                    found = probation.pop(sid)  # (keeps the queue of the older ones right)
                    if found is None:
                        return None
                # Its second request: no longer probationary.
                entry = protected[sid] = _in_use(found) if isinstance(found, tuple) else found
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
                found = self._probation.get(sid)
                if found is None:
                    return False
                if isinstance(found, tuple):  # saved without a load: still probationary
                    found = _in_use(found)
                    self._probation.replace(sid, found)
                entry = found
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
                expiry = expires(now, entry.idle, entry.deadline)
                due = entry.due
                if math.ceil(expiry) < due:
                    entry.due = self._file(sid, expiry, now)  # (before _unfile: see below)
                    self._unfile(sid, due)
            if user is not UNCHANGED and user != entry.user:
                # (The entry first: _unfile and _unindex check it when they compact.)
                previous, entry.user = entry.user, user
                if previous is not None:
                    self._unindex(sid, previous)
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
            _, accessed, idle, deadline, _, user, due = _fields(entry)
            if expires(accessed, idle, deadline) <= now:
                self._forget(old, entry)
                return False
            if old in self._protected:
                del self._protected[old]
                self._protected[new] = entry  # type: ignore[assignment]
            else:
                self._probation.pop(old)
                self._probation.add(new, entry)
            bucket = self._unfile(old, due)
            if bucket is not None:  # (always: a live session is filed)
                bucket.append(new)
            if user is not None:
                self._unindex(old, user)
                self._index(new, user)
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
            for sid in dict.fromkeys(self._users.get(user, ())):  # (stale ones may repeat)
                entry = self._find(sid)
                if entry is None:
                    continue
                created, accessed, idle, deadline, persistent, owner, _ = _fields(entry)
                if owner == user and expires(accessed, idle, deadline) > now:
                    record = Record({}, created, accessed, idle, deadline, persistent)
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
        newer, older = self._probation.newer, self._probation.older
        protected: dict[str, Any] = self._protected
        entry: Any
        for _ in range(self.gc_batch):
            while not draining:
                if not self._due or self._due[0] > now:
                    return removed, False
                draining = self._draining = self._buckets.pop(heapq.heappop(self._due))
            sid = draining.pop()
            # New sessions first: most sessions that die never came back.
            # Each lookup is a cache miss in a large store (about 0.3 us here).
            segment = newer
            entry = newer.get(sid)
            if entry is None:
                segment = older
                entry = older.get(sid)
                if entry is None:
                    segment = protected
                    entry = protected.get(sid)
            # Inlined rather than _fields() and expires(): the loop that
            # bounds how long the lock is held.
            if type(entry) is tuple:
                if entry[1] is not draining.key:  # stale: gone, or filed elsewhere
                    continue
                shape = entry[2]
                expiry = entry[0] + shape[0]
                deadline = shape[1]
                user = shape[3]
            elif entry is None or entry.due is not draining.key:
                continue
            else:
                expiry = entry.accessed + entry.idle
                deadline = entry.deadline
                user = entry.user
            if deadline is not None and deadline < expiry:
                expiry = deadline
            if expiry <= now:
                if segment is protected:
                    del protected[sid]
                else:
                    self._probation.pop(sid)
                if user is not None:
                    self._unindex(sid, user)
                removed += 1
            elif type(entry) is tuple:
                # Far off (a new session's expiry never moves): file it closer.
                segment[sid] = (entry[0], self._file(sid, expiry, now), *entry[2:])
            else:
                entry.due = self._file(sid, expiry, now)
        return removed, True
