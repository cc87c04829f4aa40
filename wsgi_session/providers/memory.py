"""Sessions kept in this process's memory, in recency order."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

from ..provider import Provider
from ..values import copy_value, has_container

# A session in the store: (data, expires, deadline, containers), where
# expires = min(last access + idle, deadline) and containers says whether
# data holds a list or dict (only then does a load need a deep copy). A plain
# tuple rather than a class: cheaper to make, and once the garbage collector
# sees that it holds only untracked objects (scalar-only data) it stops
# tracking it, so a large store no longer slows every full collection.
_Entry = tuple[dict[str, Any], float, float | None, bool]


def _expiry(now: float, idle: float, deadline: float | None) -> float:
    expires = now + idle
    return expires if deadline is None or expires < deadline else deadline


class MemoryProvider(Provider):
    """Keeps sessions in a dict ordered from least to most recently used.

    This is the Go design's list plus map, in one ``OrderedDict``: a load
    moves its session to the recent end, so the background sweep walks from
    the cold end and stops at the first live session. Sessions with an
    absolute deadline are also kept in creation order, so the sweep finds
    sessions past their deadline even when they are in constant use.

    ``max_sessions`` bounds memory: when the store is full, a new session
    evicts the least recently used one. ``gc_batch`` is how many sessions a
    sweep removes per hold of the lock.

    Sessions live in one process: with several worker processes each has its
    own store (use the Redis provider there).
    """

    process_local = True

    def __init__(self, max_sessions: int = 1_000_000, gc_batch: int = 1000) -> None:
        if type(max_sessions) is not int or max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive int, not {max_sessions!r}")
        if type(gc_batch) is not int or gc_batch < 1:
            raise ValueError(f"gc_batch must be a positive int, not {gc_batch!r}")
        self.max_sessions = max_sessions
        self.gc_batch = gc_batch
        # Recency order: least recently used first.
        self._sessions: OrderedDict[str, _Entry] = OrderedDict()
        # Sessions with a deadline (id -> deadline), in creation order: with
        # one absolute lifetime that is deadline order. Every session is in
        # it at most once, so it never outgrows the store. (An OrderedDict:
        # finding a plain dict's first key slows down as deletions pile up
        # at its front.)
        self._by_deadline: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        #: Sessions evicted by ``max_sessions`` since creation (for monitoring).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def _remove(self, sid: str) -> None:
        """Forget ``sid`` in both orders. Lock held."""
        entry = self._sessions.pop(sid, None)
        if entry is not None and entry[2] is not None:
            self._by_deadline.pop(sid, None)

    def create(
        self, sid: str, data: Mapping[str, Any], now: float, idle: float, deadline: float | None
    ) -> None:
        expires = now + idle
        if deadline is not None and deadline < expires:
            expires = deadline
        containers = False  # has_container(data), inline: every new session's path
        for value in data.values():
            if value.__class__ is list or value.__class__ is dict:
                containers = True
                break
        entry = (dict(data), expires, deadline, containers)
        sessions = self._sessions
        lock = self._lock
        lock.acquire()  # not `with`: twice the cost on this, every request's path
        try:
            while len(sessions) >= self.max_sessions:
                self._remove(next(iter(sessions)))
                self.evicted += 1
            sessions[sid] = entry
            if deadline is not None:
                self._by_deadline[sid] = deadline
        finally:
            lock.release()

    def _live(self, sid: str, now: float, idle: float) -> _Entry | None:
        """The live entry for ``sid``, touched; drops it if dead. Lock held."""
        entry = self._sessions.get(sid)
        if entry is None:
            return None
        data, expires, deadline, containers = entry
        if expires <= now:
            self._remove(sid)
            return None
        entry = self._sessions[sid] = (data, _expiry(now, idle, deadline), deadline, containers)
        self._sessions.move_to_end(sid)
        return entry

    def load(self, sid: str, now: float, idle: float) -> dict[str, Any] | None:
        sessions = self._sessions
        lock = self._lock
        lock.acquire()  # not `with`: twice the cost on this, every request's path
        try:
            # _live(), inlined
            entry = sessions.get(sid)
            if entry is None:
                return None
            data, expires, deadline, containers = entry
            if expires <= now:
                self._remove(sid)
                return None
            expires = now + idle
            if deadline is not None and deadline < expires:
                expires = deadline
            sessions[sid] = (data, expires, deadline, containers)
            sessions.move_to_end(sid)
            if containers:
                return {k: copy_value(v) for k, v in data.items()}
            return data.copy()
        finally:
            lock.release()

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        idle: float,
    ) -> bool:
        sessions = self._sessions
        lock = self._lock
        lock.acquire()  # not `with`: twice the cost on this, every request's path
        try:
            # _live(), inlined
            entry = sessions.get(sid)
            if entry is None:
                return False
            data, expires, deadline, containers = entry
            if expires <= now:
                self._remove(sid)
                return False
            expires = now + idle
            if deadline is not None and deadline < expires:
                expires = deadline
            data.update(changed)
            if removed:
                for key in removed:
                    data.pop(key, None)
                containers = has_container(data)
            elif containers:
                containers = has_container(data)
            else:  # only the new values can bring a list or dict in
                for value in changed.values():
                    if value.__class__ is list or value.__class__ is dict:
                        containers = True
                        break
            sessions[sid] = (data, expires, deadline, containers)
            sessions.move_to_end(sid)
            return True
        finally:
            lock.release()

    def rename(self, old: str, new: str, now: float, idle: float) -> bool:
        with self._lock:
            entry = self._live(old, now, idle)
            if entry is None:
                return False
            self._remove(old)
            self._sessions[new] = entry
            deadline = entry[2]
            if deadline is not None:
                # Now out of deadline order: it may outstay its deadline in
                # memory until the sweep reaches it, but never past a load.
                self._by_deadline[new] = deadline
            return True

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._remove(sid)

    def gc(self, now: float) -> int:
        """Remove dead sessions, ``gc_batch`` at a time, releasing the lock
        between batches so requests are served during a long sweep."""
        removed = 0
        while True:
            with self._lock:
                n = self._sweep_batch(now)
            removed += n
            if n < self.gc_batch:
                return removed
            time.sleep(0)  # let waiting request threads take the lock

    def _sweep_batch(self, now: float) -> int:
        """Remove up to ``gc_batch`` dead sessions. Lock held."""
        budget = self.gc_batch
        n = 0
        # Idle expiry: the cold end of the recency order. Popping and, for
        # the first live one, putting it back costs less than peeking at each.
        sessions = self._sessions
        by_deadline = self._by_deadline
        popitem = sessions.popitem
        while n < budget and sessions:
            sid, entry = popitem(False)
            if entry[1] > now:  # expires
                sessions[sid] = entry
                sessions.move_to_end(sid, False)  # back at the cold end
                break
            if entry[2] is not None:  # deadline
                by_deadline.pop(sid, None)
            n += 1
        # Absolute deadlines: sessions in constant use never reach the cold end.
        while n < budget and by_deadline:
            sid = next(iter(by_deadline))
            if by_deadline[sid] > now:
                break
            self._remove(sid)
            n += 1
        return n
