"""A complete provider in a few lines: a dict and one lock.

It is the example of "Writing a provider" in the README and the reference
the conformance kit is checked against (tests/test_testing.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import EllipsisType
from typing import Any

from wsgi_session.provider import UNCHANGED, Provider, Record, expires
from wsgi_session.values import copy_values


@dataclass
class Entry:
    data: dict[str, Any]
    created: float
    accessed: float
    idle: float
    deadline: float | None
    persistent: bool
    user: str | None

    def live(self, now: float) -> bool:
        return now < expires(self.accessed, self.idle, self.deadline)

    def record(self, data: dict[str, Any]) -> Record:
        return Record(data, self.created, self.accessed, self.idle, self.deadline, self.persistent)


class DictProvider(Provider):
    """Sessions in a dict; one lock makes every call atomic."""

    process_local = True

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._sessions: dict[str, Entry] = {}
        self._users: dict[str, set[str]] = {}  # user -> sids of sessions held

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
        entry = Entry(dict(data), now, now, idle, deadline, persistent, user)
        with self._locked():
            self._sessions[sid] = entry
            self._index(sid, user)

    def load(self, sid: str, now: float) -> Record | None:
        with self._locked():
            entry = self._live(sid, now)
            if entry is None:
                return None
            record = entry.record(copy_values(entry.data))
            entry.accessed = now
            return record

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
        with self._locked():
            entry = self._live(sid, now)
            if entry is None:
                return False
            entry.data.update(changed)
            for key in removed:
                entry.data.pop(key, None)
            entry.accessed = now
            if lifetime is not None:
                entry.idle, entry.persistent = lifetime
            if user is not UNCHANGED:
                self._unindex(sid, entry.user)
                entry.user = user
                self._index(sid, user)
            return True

    def rename(self, old: str, new: str, now: float) -> bool:
        with self._locked():
            entry = self._live(old, now)
            if entry is None:
                return False
            self._remove(old)
            self._sessions[new] = entry
            self._index(new, entry.user)
            return True

    def destroy(self, sid: str) -> None:
        with self._locked():
            self._remove(sid)

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        with self._locked():
            return [
                (sid, entry.record({}))
                for sid in self._users.get(user, ())
                if (entry := self._live(sid, now)) is not None
            ]

    def gc(self, now: float) -> int:
        # One pass under the lock: fine for a reference, not for a big store
        # (the contract asks for bounded batches).
        with self._locked():
            dead = [sid for sid, entry in self._sessions.items() if not entry.live(now)]
            for sid in dead:
                self._remove(sid)
            return len(dead)

    def count(self) -> int:
        with self._locked():
            return len(self._sessions)

    def _locked(self) -> threading.Lock:
        if self._pid != os.getpid():  # forked: the lock may be held by a thread left behind
            self._pid = os.getpid()
            self._lock = threading.Lock()
        return self._lock

    def _live(self, sid: str, now: float) -> Entry | None:
        entry = self._sessions.get(sid)
        return entry if entry is not None and entry.live(now) else None

    def _remove(self, sid: str) -> None:
        entry = self._sessions.pop(sid, None)
        if entry is not None:
            self._unindex(sid, entry.user)

    def _index(self, sid: str, user: str | None) -> None:
        if user is not None:
            self._users.setdefault(user, set()).add(sid)

    def _unindex(self, sid: str, user: str | None) -> None:
        if user is None or (sids := self._users.get(user)) is None:
            return
        sids.discard(sid)
        if not sids:
            del self._users[user]
