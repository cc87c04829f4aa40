"""Providers that each break one rule of the contract, for tests/test_testing.py.

Each is the reference DictProvider with one method written the way a
plausible but wrong store would write it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from types import EllipsisType
from typing import Any

from dict_provider import DictProvider, Entry

from wsgi_session.errors import ProviderError
from wsgi_session.provider import UNCHANGED, Record, expires


def round_trip() -> None:
    """Stand for a network store's round trip between two steps (about 0.1 ms)."""
    time.sleep(0.0001)


class AliveAtExpiry(DictProvider):
    """Off by one: a session is still live at exactly its expiry."""

    def _live(self, sid: str, now: float) -> Entry | None:
        entry = self._sessions.get(sid)
        if entry is None or now > expires(entry.accessed, entry.idle, entry.deadline):
            return None
        return entry


class SaveIgnoresExpiry(DictProvider):
    """save() touches the session before checking it: an idle-dead one revives."""

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
            entry = self._sessions.get(sid)
            if entry is not None:
                entry.accessed = now
        return super().save(sid, changed, removed, now, lifetime=lifetime, user=user)


class SharedData(DictProvider):
    """load() hands out the stored dict itself."""

    def load(self, sid: str, now: float) -> Record | None:
        with self._locked():
            entry = self._live(sid, now)
            if entry is None:
                return None
            record = entry.record(entry.data)
            entry.accessed = now
            return record


class AccessedIsNow(DictProvider):
    """load() reports the current access instead of the previous one."""

    def load(self, sid: str, now: float) -> Record | None:
        record = super().load(sid, now)
        return None if record is None else record._replace(accessed=now)


class RenameIsAccess(DictProvider):
    """rename() sets accessed = now."""

    def rename(self, old: str, new: str, now: float) -> bool:
        renamed = super().rename(old, new, now)
        if renamed:
            with self._locked():
                self._sessions[new].accessed = now
        return renamed


class IgnoresLifetime(DictProvider):
    """save() drops the new lifetime."""

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
        return super().save(sid, changed, removed, now, user=user)


class ReadModifyWrite(DictProvider):
    """save() reads the session, merges, and writes the whole of it back:
    concurrent writes to other keys are lost, and a destroy in between is undone."""

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
            entry = replace(entry, data=dict(entry.data))
        round_trip()
        entry.data.update(changed)
        for key in removed:
            entry.data.pop(key, None)
        entry.accessed = now
        if lifetime is not None:
            entry.idle, entry.persistent = lifetime
        old_user = entry.user
        if user is not UNCHANGED:
            entry.user = user
        with self._locked():
            self._sessions[sid] = entry
            self._unindex(sid, old_user)
            self._index(sid, entry.user)
        return True


class CopyThenDelete(DictProvider):
    """rename() copies to the new id, then deletes the old one without
    checking that it is still live (a racing destroy loses)."""

    def rename(self, old: str, new: str, now: float) -> bool:
        with self._locked():
            entry = self._live(old, now)
            if entry is None:
                return False
            copy = replace(entry, data=dict(entry.data))
        round_trip()
        with self._locked():
            self._sessions[new] = copy
            self._index(new, copy.user)
        round_trip()
        with self._locked():
            self._remove(old)
        return True


class ListsDead(DictProvider):
    """sessions_of() lists whatever the index holds, live or not."""

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        with self._locked():
            return [(sid, self._sessions[sid].record({})) for sid in self._users.get(user, ())]


class RenameKeepsIndex(DictProvider):
    """rename() leaves the user index pointing at the old id."""

    def rename(self, old: str, new: str, now: float) -> bool:
        with self._locked():
            entry = self._live(old, now)
            if entry is None:
                return False
            del self._sessions[old]
            self._sessions[new] = entry
            return True

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        with self._locked():
            return [
                (sid, entry.record({}))
                for sid in self._users.get(user, ())
                if (entry := self._sessions.get(sid)) is not None
                and now < expires(entry.accessed, entry.idle, entry.deadline)
            ]


class SweepStopsAtLive(DictProvider):
    """gc() walks in creation order and stops at the first live session,
    as if every session had the same lifetime."""

    def gc(self, now: float) -> int:
        with self._locked():
            dead = []
            for sid, entry in self._sessions.items():
                if entry.live(now):
                    break
                dead.append(sid)
            for sid in dead:
                self._remove(sid)
            return len(dead)


class NumbersAsDoubles(DictProvider):
    """Keeps values as JSON whose numbers are all doubles (as JavaScript does)."""

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
        stored = {k: json.loads(json.dumps(v), parse_int=float) for k, v in data.items()}
        super().create(
            sid, stored, now, idle=idle, deadline=deadline, persistent=persistent, user=user
        )


class Utf8Text(DictProvider):
    """Keeps values as UTF-8 JSON made with json.dumps (not values.encode)."""

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
        stored = {k: json.dumps(v, ensure_ascii=False).encode() for k, v in data.items()}
        decoded = {k: json.loads(v) for k, v in stored.items()}
        super().create(
            sid, decoded, now, idle=idle, deadline=deadline, persistent=persistent, user=user
        )


class CountsUsers(DictProvider):
    """count() counts the user index instead of the sessions."""

    def count(self) -> int:
        with self._locked():
            return sum(len(sids) for sids in self._users.values())


class Unreachable(DictProvider):
    """The reference with a switch: once ``down``, every call fails as a lost
    connection would, with ProviderError (this one is right)."""

    down = False

    def _locked(self) -> threading.Lock:
        if self.down:
            raise ProviderError("the session store is unreachable") from ConnectionRefusedError(
                "connection refused"
            )
        return super()._locked()


class RawErrors(DictProvider):
    """Lets the store's own exception out instead of ProviderError."""

    down = False

    def _locked(self) -> threading.Lock:
        if self.down:
            raise ConnectionRefusedError("connection refused")
        return super()._locked()
