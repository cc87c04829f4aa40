"""MemoryProvider: the v2 contract, segmented LRU eviction, expiry buckets,
the user index, threads and forks."""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FakeClock
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from wsgi_session import Manager
from wsgi_session.ids import new_id
from wsgi_session.provider import UNCHANGED, Record
from wsgi_session.providers.memory import _SHAPES, MemoryProvider, _due_of, _user_of
from wsgi_session.testing import ProviderTests

IDLE = 100.0
DAY = 86400.0


def make(
    n: int, p: MemoryProvider, now: float, idle: float = IDLE, **kw: Any
) -> list[str]:
    sids = [new_id() for _ in range(n)]
    for sid in sids:
        p.create(sid, {"v": 1}, now, idle=idle, deadline=kw.pop("deadline", None), **kw)
    return sids


def alive(p: MemoryProvider, sid: str, now: float) -> bool:
    return p.load(sid, now) is not None


def check_indexes(p: MemoryProvider) -> None:
    """The store's bookkeeping agrees with its sessions: the older arrivals
    are all queued, and the queue is dropped with the last of them; each
    session is filed in the bucket its entry names and listed under its
    user; no bucket or user list holds more stale sids than live ones; the
    shape cache is bounded."""
    older, queue = p._probation.older, p._probation.queue
    assert older.keys() <= set(queue) and (older or not queue)  # no sids kept for nothing
    entries = {**older, **p._probation.newer}
    assert len(entries) == len(p._probation)
    assert not entries.keys() & p._protected.keys()
    entries.update(p._protected)
    for sid, entry in entries.items():
        bucket = p._bucket(_due_of(entry))
        assert bucket is not None and sid in bucket
        user = _user_of(entry)
        if user is not None:
            assert sid in p._users[user]
    for bucket in [*p._buckets.values(), p._draining]:
        live = [s for s in bucket if s in entries and _due_of(entries[s]) is bucket.key]
        assert len(bucket) <= 2 * len(live)
    for user, sids in p._users.items():
        live = [s for s in sids if s in entries and _user_of(entries[s]) == user]
        assert 0 < len(sids) <= 2 * len(live)
    assert len(p._shapes) <= _SHAPES


class TestMemoryConformance(ProviderTests):
    # Near expiry buckets come due at the next whole second after their
    # sessions die: gc() finds a dead session up to a second late.
    gc_lag = 1.0
    fork_while_busy = True

    def make_provider(self) -> MemoryProvider:
        return MemoryProvider()


# -- beyond the kit -----------------------------------------------------------------------


def test_create_load_roundtrip_returns_a_record_with_a_copy() -> None:
    p = MemoryProvider()
    sid = new_id()
    p.create(sid, {"a": 1, "l": [1, {"x": 2}]}, 10.0, idle=IDLE, deadline=500.0, persistent=True)
    record = p.load(sid, 20.0)
    assert record == Record({"a": 1, "l": [1, {"x": 2}]}, 10.0, 10.0, IDLE, 500.0, True)
    assert record is not None
    record.data["a"] = 2
    record.data["l"][1]["x"] = 3  # nested mutation must not reach the store either
    again = p.load(sid, 30.0)
    assert again is not None
    assert again.data == {"a": 1, "l": [1, {"x": 2}]}
    assert again.accessed == 20.0  # the access before this load
    assert p.count() == len(p) == 1


def test_unknown_id_is_not_created() -> None:
    p = MemoryProvider()
    assert p.load("x" * 43, 0.0) is None
    assert p.save("x" * 43, {"a": 1}, (), 0.0) is False
    assert p.count() == 0


def test_each_session_keeps_its_own_idle_timeout() -> None:
    p = MemoryProvider()
    (short,) = make(1, p, 0.0, idle=10.0)
    (long,) = make(1, p, 0.0, idle=1000.0)
    assert alive(p, short, 9.0)  # slides to 19
    assert not alive(p, short, 19.0)
    assert alive(p, long, 19.0)
    assert p.count() == 1  # the dead one was dropped when found


def test_deadline_caps_the_idle_expiry() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0, deadline=30.0)
    assert alive(p, sid, 29.0)
    assert not alive(p, sid, 30.0)


def test_save_merges_changed_and_removed_keys_and_is_an_access() -> None:
    p = MemoryProvider()
    sid = new_id()
    p.create(sid, {"a": 1, "b": 2, "c": 3}, 0.0, idle=IDLE, deadline=None)
    assert p.save(sid, {"a": 10, "d": [4]}, {"b", "missing"}, 90.0)
    record = p.load(sid, 180.0)  # alive: the save moved expiry to 190
    assert record is not None
    assert record.data == {"a": 10, "c": 3, "d": [4]}
    assert record.accessed == 90.0


def test_a_save_without_a_load_keeps_a_new_session_probationary() -> None:
    p = MemoryProvider(max_sessions=3)
    a, b, c = make(3, p, 0.0, user="ann")
    assert p.save(a, {"w": [1]}, ["v"], 5.0, user="bob")  # no load first
    assert [s for s, _ in p.sessions_of("bob", 6.0)] == [a]
    (d,) = make(1, p, 7.0)  # a is still the oldest probationary session
    assert not alive(p, a, 8.0)
    assert p.load(b, 8.0) == Record({"v": 1}, 0.0, 0.0, IDLE, None, False)
    p2 = MemoryProvider()
    (e,) = make(1, p2, 0.0)
    assert p2.save(e, {"w": [1]}, ["v"], 50.0)
    assert p2.load(e, 140.0) == Record({"w": [1]}, 0.0, 50.0, IDLE, None, False)
    check_indexes(p)
    check_indexes(p2)


def test_save_replaces_the_lifetime() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0)
    assert p.save(sid, {}, (), 10.0, lifetime=(30 * DAY, True))
    assert p.gc(200.0) == 0  # its first bucket came due: filed again, a month on
    record = p.load(sid, 10.0 + 29 * DAY)
    assert record is not None and record.idle == 30 * DAY and record.persistent
    # ... and a shorter one: the sweep must find it dead at its new expiry.
    assert p.save(sid, {}, (), 10.0 + 29 * DAY, lifetime=(5.0, False))
    assert p.gc(10.0 + 29 * DAY + 5) == 1
    assert p.count() == 0


def test_save_and_rename_never_resurrect() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0)
    p.destroy(sid)
    new = new_id()
    assert p.save(sid, {"a": 1}, (), 1.0) is False
    assert p.rename(sid, new, 1.0) is False
    assert p.load(new, 1.0) is None
    (expired,) = make(1, p, 0.0)
    assert p.save(expired, {"a": 1}, (), IDLE) is False
    assert p.rename(expired, new, IDLE) is False
    assert p.load(expired, 0.0) is None  # gone for good, even at an earlier time
    assert p.count() == 0


def test_destroy_removes_the_session() -> None:
    p = MemoryProvider()
    a, b = make(2, p, 0.0)
    p.destroy(a)
    p.destroy(a)  # unknown ids are ignored
    assert not alive(p, a, 1.0)
    assert alive(p, b, 1.0)
    assert p.count() == 1
    assert p.gc(10 * IDLE) == 1  # only b: a left nothing behind for the sweep
    assert p.count() == 0


def test_rename_moves_everything_and_keeps_accessed() -> None:
    p = MemoryProvider()
    old, new = new_id(), new_id()
    p.create(old, {"v": 1}, 0.0, idle=IDLE, deadline=250.0, persistent=True, user="ann")
    assert p.rename(old, new, 50.0)
    assert p.load(old, 60.0) is None
    assert p.load(new, 60.0) == Record({"v": 1}, 0.0, 0.0, IDLE, 250.0, True)
    assert [sid for sid, _ in p.sessions_of("ann", 60.0)] == [new]
    assert p.count() == 1
    assert p.gc(251.0) == 1  # the deadline came along too
    assert p.sessions_of("ann", 251.0) == []


def test_options_are_checked_by_name() -> None:
    for option, value, error in [
        ("max_sessions", 0, ValueError),
        ("max_sessions", 1.5, TypeError),
        ("gc_batch", -1, ValueError),
        ("gc_batch", "10", TypeError),
    ]:
        with pytest.raises(error, match=option):
            MemoryProvider(**{option: value})
    assert MemoryProvider.process_local


# -- expiry and the sweep ---------------------------------------------------------------


class _Counting:
    owner: CountingProvider

    def get(self, key: str, default: Any = None) -> Any:
        self.owner.looked += 1
        return super().get(key, default)  # type: ignore[misc]


class _CountingDict(_Counting, dict[str, Any]):
    def __init__(self, owner: CountingProvider) -> None:
        super().__init__()
        self.owner = owner


class _CountingOrderedDict(_Counting, OrderedDict[str, Any]):
    def __init__(self, owner: CountingProvider) -> None:
        super().__init__()
        self.owner = owner


class CountingProvider(MemoryProvider):
    """Counts the sessions looked up (by the sweep, sessions_of), and the sweep's batches."""

    looked = 0
    batches = 0

    def _clear(self) -> None:
        super()._clear()
        self._probation.newer = _CountingDict(self)
        self._probation.older = _CountingDict(self)
        self._protected = _CountingOrderedDict(self)

    def _sweep_batch(self, now: float) -> tuple[int, bool]:
        self.batches += 1
        return super()._sweep_batch(now)


def test_gc_finds_every_dead_session_whatever_the_lifetimes() -> None:
    # Issue 9: the old sweep walked the recency order and stopped at the first
    # live session, right only when all sessions share one idle timeout.
    # Issue 11 (8): one provider shared by managers with different lifetimes.
    p = MemoryProvider()
    idles = [10.0, 1000.0, 60.0, 30 * DAY, 5.0, 3600.0]
    for idle in idles:
        make(20, p, 0.0, idle=idle)
    for i, now in enumerate(sorted(idles)):
        assert p.gc(now - 0.5) == 0
        assert p.gc(now) == 20
        assert p.count() == 20 * (len(idles) - 1 - i)


def test_a_provider_shared_by_managers_with_different_lifetimes_keeps_sweeping() -> None:
    # Issue 11 (8): two middlewares on one MemoryProvider, 60 s and 50 min:
    # the old sweep stopped at the first long-lived session, so the short
    # ones stayed for 50 minutes.
    clock = FakeClock()
    p = MemoryProvider(gc_batch=10)
    long_lived = Manager(p, max_lifetime=3000, gc_interval=None, clock=clock)
    short_lived = Manager(p, max_lifetime=60, gc_interval=None, clock=clock)
    keep = [long_lived.create({"n": i}) for i in range(20)]
    gone = [short_lived.create({"n": i}) for i in range(100)]
    clock.advance(61)
    assert short_lived.gc() == 100
    assert p.count() == 20
    assert all(short_lived.load(sid) is None for sid in gone)
    assert all(long_lived.load(sid) is not None for sid in keep)


def test_live_sessions_met_by_the_sweep_do_not_stop_it() -> None:
    p = MemoryProvider(gc_batch=3)
    sids = make(40, p, 0.0)
    used = sids[::2]
    for sid in used:
        assert alive(p, sid, 50.0)  # still filed as due at 100, really due at 150
    assert p.gc(100.0) == 20
    assert all(alive(p, sid, 120.0) for sid in used)
    assert p.gc(220.0) == 20


def test_gc_is_exact_to_the_second() -> None:
    p = MemoryProvider()
    (a,) = make(1, p, 0.0, idle=10.0)
    (b,) = make(1, p, 0.0, idle=10.25)
    assert p.gc(9.99) == 0
    assert p.gc(10.0) == 1  # dead at its expiry
    assert p.gc(10.5) == 0  # b is dead (never returned) but in the bucket due at 11
    assert p.load(b, 10.5) is None
    assert p.count() == 0


def test_gc_does_not_visit_live_sessions_on_every_sweep() -> None:
    p = CountingProvider()
    make(1000, p, 0.0, idle=3600.0)
    dead = make(10, p, 0.0, idle=5.0)
    for now in range(6, 600, 7):  # a sweep every 7 s for ten minutes
        p.gc(float(now))
    assert p.looked == len(dead)
    assert p.count() == 1000


def test_a_used_session_is_filed_again_and_found_when_it_dies() -> None:
    p = CountingProvider()
    (sid,) = make(1, p, 0.0)
    for t in range(10, 1000, 10):
        assert alive(p, sid, float(t))  # busy: each load moves expiry 100 s on
    assert p.gc(1000.0) == 0
    looked = p.looked
    assert looked < 1 + 1000 / IDLE + 100  # visited about once per lifetime, not per sweep
    assert p.gc(1090.0) == 1


def test_a_session_filed_again_sooner_is_filed_once() -> None:
    # A shorter lifetime files a session in an earlier bucket and leaves its
    # sid, stale, in the later one: the sweep must pass it by there, not
    # file the session a second time.
    p = MemoryProvider()
    (sid, *_) = make(4, p, 0.0, idle=1000.0)  # filed due at 1000, with company
    assert alive(p, sid, 1.0)
    assert p.save(sid, {}, (), 1.0, lifetime=(100.0, False))  # filed again, due at 101
    for t in range(90, 1200, 90):
        assert alive(p, sid, float(t))
        p.gc(float(t))
    filed = [*p._buckets.values(), p._draining]
    assert sum(bucket.count(sid) for bucket in filed) == 1
    check_indexes(p)


def test_far_off_sessions_are_found_exactly() -> None:
    p = CountingProvider()
    (month,) = make(1, p, 0.0, idle=30 * DAY)
    (day,) = make(1, p, 0.0, idle=DAY + 0.5)
    for now in range(0, int(31 * DAY), 3000):
        p.gc(float(now))
    assert p.count() == 0
    assert p.looked <= 2 * 4  # each looked at a few times on the way, not per sweep
    p2 = MemoryProvider()
    make(1, p2, 0.0, idle=30 * DAY)
    assert p2.gc(30 * DAY - 1) == 0
    assert p2.gc(30 * DAY) == 1


def test_absolute_deadline_ends_a_busy_session_and_gc_finds_it() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0, deadline=250.0)
    for t in (50.0, 100.0, 150.0, 200.0, 240.0):
        assert alive(p, sid, t)
    make(3, p, 240.0)
    assert p.gc(250.0) == 1
    assert p.count() == 3


def test_gc_works_in_batches_and_leaves_nothing_behind() -> None:
    p = CountingProvider(gc_batch=7)
    make(50, p, 0.0, idle=10.0)
    make(50, p, 0.0, idle=20.0, user="ann")
    destroyed = make(30, p, 0.0, idle=15.0, user="bob")
    for sid in destroyed:
        p.destroy(sid)
    assert p.gc(30.0) == 100
    assert p.batches >= 100 // 7
    assert p.count() == 0
    # Nothing stale stays in the index structures.
    assert p._buckets == {} and p._due == [] and p._users == {}


# -- eviction -----------------------------------------------------------------------------


def test_eviction_takes_the_oldest_probationary_session_first() -> None:
    p = MemoryProvider(max_sessions=3)
    a, b, c = make(3, p, 0.0)
    assert alive(p, a, 1.0)  # a came back: protected
    (d,) = make(1, p, 2.0)
    assert p.stats() == {"evicted": 1}
    assert p.count() == 3
    assert [alive(p, s, 3.0) for s in (a, b, c, d)] == [True, False, True, True]


def test_protected_sessions_go_only_when_none_is_probationary() -> None:
    p = MemoryProvider(max_sessions=2)
    a, b = make(2, p, 0.0)
    assert alive(p, a, 1.0) and alive(p, b, 2.0)  # both protected, a the older
    (c,) = make(1, p, 3.0)
    assert not alive(p, a, 4.0)
    assert alive(p, b, 4.0)
    (d,) = make(1, p, 5.0)  # c is probationary: it goes, not b
    assert not alive(p, c, 6.0) and alive(p, b, 6.0) and alive(p, d, 6.0)


def test_a_flood_of_new_visitors_does_not_evict_returning_users() -> None:
    # Issue 11 (4): with plain LRU, max_sessions cookie-less writes evicted
    # users active a second before.
    p = MemoryProvider(max_sessions=100)
    users = make(10, p, 0.0, user="ann")
    for i, sid in enumerate(users):
        assert alive(p, sid, 1.0 + i)  # each came back once
    for t in range(5000):  # the flood: new sessions that never return
        make(1, p, 20.0 + t / 1000)
    assert p.count() == 100
    assert p.stats()["evicted"] == 5000 + 10 - 100
    assert all(alive(p, sid, 30.0) for sid in users)
    assert len(p.sessions_of("ann", 30.0)) == 10


def test_eviction_keeps_arrival_order_over_many_turns() -> None:
    # New sessions leave in the order they came, whatever left between
    # them (promoted, destroyed, renamed).
    p = MemoryProvider(max_sessions=10)
    order = make(10, p, 0.0)  # probationary, oldest first
    for t in range(1, 200):
        now = float(t)
        if t % 7 == 0:  # promote one from the middle
            sid = order.pop(len(order) // 2)
            assert alive(p, sid, now)
            p.destroy(sid)  # (and make room: protected ones go last)
        if t % 11 == 0:
            p.destroy(order.pop(1))
        if t % 13 == 0:  # (a renamed session counts as the newest, as in plain LRU)
            new = new_id()
            assert p.rename(order.pop(2), new, now)
            order.append(new)
        (sid,) = make(1, p, now)
        order.append(sid)
        if len(order) > 10:
            assert not alive(p, order.pop(0), now)  # the oldest went
        check_indexes(p)
    assert all(p.load(sid, 200.0) is not None for sid in order)


def test_bookkeeping_holds_at_most_two_entries_per_live_session() -> None:
    # SECURITY.md: a flood cannot exhaust memory. Sessions removed or filed
    # again leave stale entries in the bucket and user lists, which are
    # compacted once they outnumber the live ones.
    p = MemoryProvider(max_sessions=50)
    keep = make(20, p, 0.0, user="ann")
    for sid in keep:
        assert alive(p, sid, 1.0)  # protected: the flood evicts the others
    for i in range(3000):
        now = 2.0 + i / 1000
        (sid,) = make(1, p, now, user="ann")  # a flood, evicting as it goes
        if i % 3 == 0:
            p.rename(sid, new_id(), now)
        if i % 5 == 0:
            p.save(keep[i % 20], {}, (), now, lifetime=(IDLE - 1 - i / 1000, False))
        check_indexes(p)
    assert p.count() == 50
    buckets = sum(map(len, p._buckets.values())) + len(p._draining)
    assert buckets <= 2 * 50 and len(p._users["ann"]) <= 2 * 50


def test_the_shape_cache_is_bounded() -> None:
    p = MemoryProvider()
    for i in range(_SHAPES + 10):
        p.create(new_id(), {f"k{i}": 1}, 0.0, idle=IDLE, deadline=None)
    assert len(p._shapes) <= _SHAPES
    check_indexes(p)


def test_eviction_cleans_the_indexes() -> None:
    p = MemoryProvider(max_sessions=5)
    make(5, p, 0.0, user="ann")
    make(5, p, 1.0)
    assert p.sessions_of("ann", 2.0) == []
    assert p._users == {}
    assert p.gc(1000.0) == 5  # the evicted left nothing for the sweep


# -- users ---------------------------------------------------------------------------------


def test_the_user_index_follows_every_change() -> None:
    p = MemoryProvider()
    a, b = make(2, p, 0.0, user="ann")
    (c,) = make(1, p, 0.0)
    assert {s for s, _ in p.sessions_of("ann", 1.0)} == {a, b}
    assert p.save(c, {}, (), 2.0, user="ann")
    assert p.save(a, {}, (), 2.0, user="bob")
    assert p.save(b, {}, (), 2.0)  # UNCHANGED
    assert {s for s, _ in p.sessions_of("ann", 3.0)} == {b, c}
    assert [s for s, _ in p.sessions_of("bob", 3.0)] == [a]
    assert p.save(a, {}, (), 3.0, user=None)
    assert p.sessions_of("bob", 3.0) == []
    p.destroy(b)
    [(sid, record)] = p.sessions_of("ann", 4.0)
    assert sid == c
    assert (record.created, record.accessed, record.idle) == (0.0, 2.0, IDLE)
    assert p.sessions_of("ann", 4.0) == p.sessions_of("ann", 4.0)  # not an access


def test_sessions_of_never_lists_a_dead_session_and_never_scans() -> None:
    p = CountingProvider()
    make(1000, p, 0.0)
    (sid,) = make(1, p, 0.0, idle=10.0, user="ann")
    p.looked = 0
    assert len(p.sessions_of("ann", 5.0)) == 1
    assert p.sessions_of("ann", 10.0) == []  # dead, not yet swept
    assert p.looked <= 2 * 3  # one session, two sessions_of calls, three dicts
    assert p.sessions_of("nobody", 5.0) == []
    assert p.gc(10.0) == 1 and p._users == {}


# -- threads and forks ------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_threads_hammering_one_provider_keep_it_consistent(fast_switching: None) -> None:
    # Fails without the lock (tried: 5 runs of 5): loads racing to promote a
    # new session report it missing. The internal checks at the end show
    # that the segments, buckets and user index still agree.
    p = MemoryProvider(max_sessions=300, gc_batch=5)
    shared = new_id()
    p.create(shared, {"start": 0}, 0.0, idle=1e9, deadline=None)
    assert alive(p, shared, 0.0)  # protected: the flood of creates below cannot evict it
    errors: list[str] = []
    stop = threading.Event()
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            for j in range(150):
                sid = new_id()
                p.create(sid, {"i": i}, float(j), idle=5.0, deadline=None, user=f"u{i % 2}")
                if p.count() > p.max_sessions:
                    errors.append("bound overrun")
                assert p.save(shared, {f"t{i}": j}, (), float(j))
                if j % 3 == 0:
                    p.rename(sid, new_id(), float(j))
                if j % 5 == 0:
                    p.destroy(sid)
            barrier.wait()
            # Every thread loads every one of a set of new sessions at once.
            for _ in range(20):
                if i == 0:
                    fresh.clear()
                    fresh.extend(make(50, p, 1000.0, idle=1e6))
                barrier.wait()
                for sid in fresh:
                    if p.load(sid, 1000.0) is None:
                        errors.append("live session not found")
                barrier.wait()
                if i == 0:  # make room: the next round's sessions must fit
                    for sid in fresh:
                        p.destroy(sid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))
            barrier.abort()

    fresh: list[str] = []

    def sweeper() -> None:
        t = 0.0
        while not stop.is_set():
            t += 1
            p.gc(min(t, 999.0))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    gc_thread = threading.Thread(target=sweeper)
    gc_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    gc_thread.join(60)
    assert errors == []
    record = p.load(shared, 300.0)
    assert record is not None
    assert record.data == {"start": 0, **{f"t{i}": 149 for i in range(8)}}
    # Whether the threads' creates outran the sweeper and evicted depends on
    # scheduling; a full store after the storm must evict, and keep `shared`.
    evicted = p.stats()["evicted"]
    make(p.max_sessions + 10, p, 1000.0, idle=1e6)
    assert p.stats()["evicted"] > evicted and p.count() == p.max_sessions
    assert p.load(shared, 1000.0) is not None
    # Only the shared session outlives the sweeps, and the indexes agree.
    p.gc(2e6)
    assert p.count() == 1
    assert p._users == {}
    check_indexes(p)


def test_fork_while_another_thread_holds_the_lock_does_not_hang_the_child() -> None:
    # Issue 11 (7): a child forked while a thread of the parent was inside
    # the store inherits its lock held, by a thread the child does not have.
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0)
    inside, leave = threading.Event(), threading.Event()

    def holder() -> None:  # a request or a sweep, inside the store at the fork
        with p._mutex:
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    inside.wait(10)
    try:
        with warnings.catch_warnings():  # 3.12+ warns about forking with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: must serve, not hang
            status = 1
            try:
                (new,) = make(1, p, 1.0)
                status = 0 if alive(p, new, 2.0) and p.gc(1e9) == 1 else 2
            finally:
                os._exit(status)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the store's lock")
        assert os.waitstatus_to_exitcode(code) == 0
    finally:
        leave.set()
        thread.join(10)
    assert alive(p, sid, 1.0)  # the parent is unaffected
    assert p.count() == 1


def test_a_child_forked_with_a_free_lock_keeps_its_copy() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os._exit(0 if alive(p, sid, 1.0) and p.count() == 1 else 1)
    _, code = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(code) == 0


# -- the store against a model ----------------------------------------------------------


class _Model:
    """What the store must hold: sessions in two recency lists, dead ones
    included until something removes them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.probation: dict[str, dict[str, Any]] = {}  # insertion order: oldest first
        self.protected: dict[str, dict[str, Any]] = {}

    def find(self, sid: str) -> dict[str, Any] | None:
        return self.protected.get(sid) or self.probation.get(sid)

    def remove(self, sid: str) -> None:
        self.protected.pop(sid, None) or self.probation.pop(sid, None)

    def all(self) -> dict[str, dict[str, Any]]:
        return {**self.probation, **self.protected}

    @staticmethod
    def end(s: dict[str, Any]) -> float:
        return min(s["accessed"] + s["idle"], s["deadline"] or float("inf"))


class MemoryStoreMachine(RuleBasedStateMachine):
    """Random calls on a small store (evictions), with integer times (then a
    sweep is exact); every answer is checked against the model."""

    sids = Bundle("sids")

    def __init__(self) -> None:
        super().__init__()
        self.p = MemoryProvider(max_sessions=6, gc_batch=2)
        self.m = _Model(6)
        self.now = 1000.0

    @rule(target=sids)
    def unknown(self) -> str:
        return new_id()

    @rule(
        target=sids,
        idle=st.sampled_from([1.0, 5.0, 30.0, 5000.0, 20000.0]),
        deadline=st.sampled_from([None, 3.0, 40.0, 6000.0]),
        user=st.sampled_from([None, "ann", "bob"]),
        value=st.integers(0, 3),
    )
    def create(self, idle: float, deadline: float | None, user: str | None, value: int) -> str:
        sid = new_id()
        end = None if deadline is None else self.now + deadline
        self.p.create(sid, {"v": value}, self.now, idle=idle, deadline=end, user=user)
        if len(self.m.all()) >= self.m.size:
            segment = self.m.probation or self.m.protected
            del segment[next(iter(segment))]
        self.m.probation[sid] = {
            "data": {"v": value}, "created": self.now, "accessed": self.now,
            "idle": idle, "deadline": end, "persistent": False, "user": user,
        }
        return sid

    @rule(sid=sids)
    def load(self, sid: str) -> None:
        record = self.p.load(sid, self.now)
        s = self.m.protected.pop(sid, None) or self.m.probation.pop(sid, None)
        if s is not None:
            self.m.protected[sid] = s
            if self.now >= self.m.end(s):
                self.m.remove(sid)
                s = None
        if s is None:
            assert record is None
            return
        assert record == Record(
            s["data"], s["created"], s["accessed"], s["idle"], s["deadline"], s["persistent"]
        )
        s["accessed"] = self.now

    @rule(
        sid=sids,
        value=st.integers(0, 3),
        drop=st.booleans(),
        lifetime=st.sampled_from([None, (2.0, True), (9000.0, False)]),
        user=st.sampled_from([UNCHANGED, None, "ann", "bob"]),
    )
    def save(self, sid: str, value: int, drop: bool, lifetime: Any, user: Any) -> None:
        changed = {} if drop else {"w": value}
        removed = ["v"] if drop else []
        ok = self.p.save(sid, changed, removed, self.now, lifetime=lifetime, user=user)
        s = self.m.find(sid)
        if s is not None and self.now >= self.m.end(s):
            self.m.remove(sid)
            s = None
        assert ok is (s is not None)
        if s is not None:
            s["data"].update(changed)
            if drop:
                s["data"].pop("v", None)
            s["accessed"] = self.now
            if lifetime is not None:
                s["idle"], s["persistent"] = lifetime
            if user is not UNCHANGED:
                s["user"] = user

    @rule(target=sids, sid=sids)
    def rename(self, sid: str) -> str:
        new = new_id()
        ok = self.p.rename(sid, new, self.now)
        s = self.m.find(sid)
        if s is not None and self.now >= self.m.end(s):
            self.m.remove(sid)
            s = None
        assert ok is (s is not None)
        if s is not None:
            segment = self.m.protected if sid in self.m.protected else self.m.probation
            segment[new] = segment.pop(sid)
        return new

    @rule(sid=sids)
    def destroy(self, sid: str) -> None:
        self.p.destroy(sid)
        self.m.remove(sid)

    @rule(dt=st.sampled_from([0.0, 1.0, 3.0, 20.0, 100.0, 5000.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def gc(self) -> None:
        dead = [sid for sid, s in self.m.all().items() if self.now >= self.m.end(s)]
        assert self.p.gc(self.now) == len(dead)
        for sid in dead:
            self.m.remove(sid)

    @rule(user=st.sampled_from(["ann", "bob"]))
    def sessions_of(self, user: str) -> None:
        listed = dict(self.p.sessions_of(user, self.now))
        expected = {
            sid: s
            for sid, s in self.m.all().items()
            if s["user"] == user and self.now < self.m.end(s)
        }
        assert listed.keys() == expected.keys()
        for sid, record in listed.items():
            s = expected[sid]
            assert (record.created, record.accessed, record.idle, record.deadline) == (
                s["created"], s["accessed"], s["idle"], s["deadline"]
            )

    @invariant()
    def same_count(self) -> None:
        assert self.p.count() == len(self.m.all())

    @invariant()
    def indexes_agree(self) -> None:
        check_indexes(self.p)


TestMemoryStoreMachine = MemoryStoreMachine.TestCase
TestMemoryStoreMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
