"""TEMPORARY v2 port (lead's local testing only; replaced by the memory branch)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from types import EllipsisType
from typing import Any

from ..provider import UNCHANGED, Provider, Record, expires
from ..values import copy_values


class MemoryProvider(Provider):
    process_local = True

    def __init__(self, max_sessions: int = 1_000_000, gc_batch: int = 1000) -> None:
        self.max_sessions = max_sessions
        self._s: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._s)

    def count(self) -> int | None:
        return len(self._s)

    def stats(self) -> dict[str, int]:
        return {"evicted": self.evicted}

    def _live(self, sid: str, now: float) -> list[Any] | None:
        e = self._s.get(sid)
        if e is None:
            return None
        if now >= expires(e[2], e[3], e[4]):
            del self._s[sid]
            return None
        return e

    def create(self, sid, data, now, *, idle, deadline, persistent=False, user=None):  # type: ignore[no-untyped-def]
        with self._lock:
            while len(self._s) >= self.max_sessions:
                self._s.popitem(False)
                self.evicted += 1
            self._s[sid] = [dict(data), now, now, idle, deadline, persistent, user]

    def load(self, sid: str, now: float) -> Record | None:
        with self._lock:
            e = self._live(sid, now)
            if e is None:
                return None
            r = Record(copy_values(e[0]), e[1], e[2], e[3], e[4], e[5])
            e[2] = now
            self._s.move_to_end(sid)
            return r

    def save(self, sid, changed, removed, now, *, lifetime=None, user=UNCHANGED):  # type: ignore[no-untyped-def]
        with self._lock:
            e = self._live(sid, now)
            if e is None:
                return False
            e[0].update(changed)
            for k in removed:
                e[0].pop(k, None)
            e[2] = now
            if lifetime is not None:
                e[3], e[5] = lifetime
            if user is not UNCHANGED:
                e[6] = user
            return True

    def rename(self, old: str, new: str, now: float) -> bool:
        with self._lock:
            e = self._live(old, now)
            if e is None:
                return False
            del self._s[old]
            self._s[new] = e
            return True

    def destroy(self, sid: str) -> None:
        with self._lock:
            self._s.pop(sid, None)

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        with self._lock:
            return [
                (k, Record({}, e[1], e[2], e[3], e[4], e[5]))
                for k, e in self._s.items()
                if e[6] == user and now < expires(e[2], e[3], e[4])
            ]

    def gc(self, now: float) -> int:
        with self._lock:
            dead = [k for k, e in self._s.items() if now >= expires(e[2], e[3], e[4])]
            for k in dead:
                del self._s[k]
            return len(dead)
