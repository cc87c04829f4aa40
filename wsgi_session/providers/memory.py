"""Sessions kept in this process's memory, in recency order."""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Any

from ..provider import Provider
from ..values import copy_value, is_container


class _Entry:
    __slots__ = ("data", "expires", "deadline", "containers")

    def __init__(self, data: dict[str, Any], expires: float, deadline: float | None) -> None:
        self.data = data
        self.expires = expires  # min(last access + idle, deadline)
        self.deadline = deadline
        # Only data holding lists or dicts needs a deep copy on load.
        self.containers = any(is_container(v) for v in data.values())


class MemoryProvider(Provider):
    """Keeps sessions in a dict ordered from least to most recently used.

    This is the Go design's list plus map, in one ``OrderedDict``: a load
    moves its session to the recent end, so the background sweep walks from
    the cold end and stops at the first live session. Sessions with an
    absolute deadline are also kept in a heap, so sessions that are in
    constant use still end on time.

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
        self._sessions: OrderedDict[str, _Entry] = OrderedDict()
        self._deadlines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        #: Sessions evicted by ``max_sessions`` since creation (for monitoring).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def create(
        self, sid: str, data: Mapping[str, Any], now: float, idle: float, deadline: float | None
    ) -> None:
        expires = now + idle if deadline is None else min(now + idle, deadline)
        entry = _Entry(dict(data), expires, deadline)
        sessions = self._sessions
        with self._lock:
            while len(sessions) >= self.max_sessions:
                sessions.popitem(last=False)
                self.evicted += 1
            sessions[sid] = entry
            if deadline is not None:
                self._push_deadline(deadline, sid)

    def _live(self, sid: str, now: float, idle: float) -> _Entry | None:
        """The live entry for ``sid``, touched; drops it if dead. Lock held."""
        entry = self._sessions.get(sid)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._sessions[sid]
            return None
        deadline = entry.deadline
        entry.expires = now + idle if deadline is None else min(now + idle, deadline)
        self._sessions.move_to_end(sid)
        return entry

    def load(self, sid: str, now: float, idle: float) -> dict[str, Any] | None:
        with self._lock:
            entry = self._live(sid, now, idle)
            if entry is None:
                return None
            data = entry.data
            if entry.containers:
                return {k: copy_value(v) for k, v in data.items()}
            return data.copy()

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        idle: float,
    ) -> bool:
        with self._lock:
            entry = self._live(sid, now, idle)
            if entry is None:
                return False
            data = entry.data
            data.update(changed)
            for key in removed:
                data.pop(key, None)
            entry.containers = any(is_container(v) for v in data.values())
            return True

    def rename(self, old: str, new: str, now: float, idle: float) -> bool:
        with self._lock:
            entry = self._live(old, now, idle)
            if entry is None:
                return False
            del self._sessions[old]
            self._sessions[new] = entry
            if entry.deadline is not None:
                self._push_deadline(entry.deadline, new)
            return True

    def _push_deadline(self, deadline: float, sid: str) -> None:
        """Add to the deadline heap. Lock held.

        Entries of sessions that went early (evicted, destroyed, renamed,
        idle) stay until their deadline passes; under a flood of new
        sessions they would outgrow ``max_sessions``, so the heap is rebuilt
        from the live sessions once it is twice their number (amortised O(1)).
        """
        heap = self._deadlines
        heapq.heappush(heap, (deadline, sid))
        if len(heap) > 2 * len(self._sessions) + 64:
            heap[:] = [(e.deadline, k) for k, e in self._sessions.items() if e.deadline is not None]
            heapq.heapify(heap)

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def gc(self, now: float) -> int:
        """Remove dead sessions, ``gc_batch`` at a time, releasing the lock
        between batches so requests are served during a long sweep."""
        removed = 0
        while True:
            with self._lock:
                n, steps = self._sweep_batch(now)
            removed += n
            if steps < self.gc_batch:
                return removed
            time.sleep(0)  # let waiting request threads take the lock

    def _sweep_batch(self, now: float) -> tuple[int, int]:
        """One batch: (sessions removed, steps taken). Lock held."""
        sessions = self._sessions
        budget = self.gc_batch
        n = steps = 0
        # Idle expiry: the cold end of the recency order.
        while steps < budget and sessions:
            sid = next(iter(sessions))
            if sessions[sid].expires > now:
                break
            del sessions[sid]
            n += 1
            steps += 1
        # Absolute deadlines: sessions in constant use never reach the cold end.
        # The heap may name sessions already gone (destroyed, renamed, evicted).
        heap = self._deadlines
        while steps < budget and heap and heap[0][0] <= now:
            _, sid = heapq.heappop(heap)
            steps += 1
            entry = sessions.get(sid)
            if entry is not None and entry.deadline is not None and entry.deadline <= now:
                del sessions[sid]
                n += 1
        return n, steps
