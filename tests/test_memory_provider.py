"""MemoryProvider: the contract, recency order, expiry, bounds, thread safety."""

from __future__ import annotations

import threading

import pytest

from wsgi_session.ids import new_id
from wsgi_session.providers.memory import MemoryProvider

IDLE = 100.0


def make(n: int, provider: MemoryProvider, now: float) -> list[str]:
    sids = [new_id() for _ in range(n)]
    for sid in sids:
        provider.create(sid, {"v": 1}, now, IDLE, None)
    return sids


def test_create_load_roundtrip_returns_a_copy() -> None:
    p = MemoryProvider()
    sid = new_id()
    p.create(sid, {"a": 1, "l": [1, 2]}, 0.0, IDLE, None)
    data = p.load(sid, 1.0, IDLE)
    assert data == {"a": 1, "l": [1, 2]}
    assert data is not None
    data["a"] = 2
    data["l"].append(3)  # nested mutation must not reach the store either
    assert p.load(sid, 2.0, IDLE) == {"a": 1, "l": [1, 2]}
    assert len(p) == 1


def test_unknown_id_is_not_created() -> None:
    # The seed's SessionRead created a session under any id it was asked for.
    p = MemoryProvider()
    assert p.load("x" * 43, 0.0, IDLE) is None
    assert len(p) == 0


def test_idle_expiry_is_enforced_on_load_without_gc() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0)
    assert p.load(sid, IDLE - 1, IDLE) is not None  # slides to 2*IDLE - 1
    assert p.load(sid, 2 * IDLE - 1.5, IDLE) is not None
    assert p.load(sid, 4 * IDLE, IDLE) is None
    assert len(p) == 0  # the dead session was dropped when found


def test_save_merges_changed_and_removed_keys() -> None:
    p = MemoryProvider()
    sid = new_id()
    p.create(sid, {"a": 1, "b": 2, "c": 3}, 0.0, IDLE, None)
    assert p.save(sid, {"a": 10, "d": 4}, {"b"}, 1.0, IDLE)
    assert p.load(sid, 2.0, IDLE) == {"a": 10, "c": 3, "d": 4}


def test_save_and_rename_never_resurrect() -> None:
    p = MemoryProvider()
    (sid,) = make(1, p, 0.0)
    p.destroy(sid)
    assert p.save(sid, {"a": 1}, (), 1.0, IDLE) is False
    assert p.rename(sid, new_id(), 1.0, IDLE) is False
    assert len(p) == 0
    (expired,) = make(1, p, 0.0)
    assert p.save(expired, {"a": 1}, (), IDLE + 1, IDLE) is False
    assert len(p) == 0


def test_destroy_removes_the_stored_session() -> None:
    # The seed's destroy looked the session up without the lock and left the
    # list element behind; here the map and the order are one structure.
    p = MemoryProvider()
    a, b = make(2, p, 0.0)
    p.destroy(a)
    p.destroy(a)  # unknown ids are ignored
    assert p.load(a, 1.0, IDLE) is None
    assert p.load(b, 1.0, IDLE) == {"v": 1}
    assert len(p) == 1
    assert p.gc(10 * IDLE) == 1
    assert len(p) == 0


def test_rename_moves_data_and_kills_the_old_id() -> None:
    p = MemoryProvider()
    (old,) = make(1, p, 0.0)
    new = new_id()
    assert p.rename(old, new, 1.0, IDLE)
    assert p.load(old, 2.0, IDLE) is None
    assert p.load(new, 2.0, IDLE) == {"v": 1}
    assert len(p) == 1


def test_gc_walks_the_cold_end_only() -> None:
    p = MemoryProvider()
    old = make(5, p, 0.0)
    fresh = make(3, p, IDLE)  # created later: at the recent end
    assert p.gc(IDLE + 1) == 5
    assert len(p) == 3
    assert all(p.load(s, IDLE + 2, IDLE) is not None for s in fresh)
    assert all(p.load(s, IDLE + 2, IDLE) is None for s in old)


def test_a_fresh_session_does_not_stop_the_sweep() -> None:
    # The seed pushed new sessions to the back of its list, where GC starts
    # its walk: one live session there ended every sweep before the dead ones.
    p = MemoryProvider()
    dead = make(100, p, 0.0)
    make(1, p, IDLE)
    assert p.gc(IDLE + 1) == 100
    assert all(p.load(s, IDLE + 2, IDLE) is None for s in dead)


def test_a_load_moves_a_session_to_the_recent_end() -> None:
    p = MemoryProvider()
    a, b = make(2, p, 0.0)
    p.load(a, IDLE - 1, IDLE)  # a is now most recent, expires at 2*IDLE - 1
    assert p.gc(IDLE + 1) == 1
    assert p.load(a, IDLE + 2, IDLE) is not None
    assert p.load(b, IDLE + 2, IDLE) is None


def test_gc_works_in_batches() -> None:
    p = MemoryProvider(gc_batch=7)
    make(50, p, 0.0)
    assert p.gc(IDLE + 1) == 50
    assert len(p) == 0


def test_absolute_deadline_ends_a_busy_session_and_gc_finds_it() -> None:
    p = MemoryProvider()
    sid = new_id()
    p.create(sid, {"v": 1}, 0.0, IDLE, 250.0)
    for t in (50.0, 100.0, 150.0, 200.0, 240.0):
        assert p.load(sid, t, IDLE) is not None  # busy: always at the recent end
    make(3, p, 240.0)  # colder sessions behind it are alive, so the idle walk stops
    assert p.gc(251.0) == 1
    assert p.load(sid, 251.0, IDLE) is None
    assert len(p) == 3


def test_deadline_caps_the_idle_expiry() -> None:
    p = MemoryProvider()
    sid = new_id()
    p.create(sid, {"v": 1}, 0.0, IDLE, 30.0)
    assert p.load(sid, 29.0, IDLE) is not None
    assert p.load(sid, 30.0, IDLE) is None


def test_renamed_session_keeps_its_deadline() -> None:
    p = MemoryProvider()
    old, new = new_id(), new_id()
    p.create(old, {"v": 1}, 0.0, IDLE, 50.0)
    assert p.rename(old, new, 10.0, IDLE)
    assert p.gc(51.0) == 1
    assert len(p) == 0


def test_max_sessions_evicts_the_least_recently_used() -> None:
    p = MemoryProvider(max_sessions=3)
    a, b, c = make(3, p, 0.0)
    p.load(a, 1.0, IDLE)  # a becomes the most recent; b is now the coldest
    (d,) = make(1, p, 2.0)
    assert len(p) == 3
    assert p.evicted == 1
    assert p.load(b, 3.0, IDLE) is None
    assert all(p.load(s, 3.0, IDLE) is not None for s in (a, c, d))


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("max_sessions", 0, ValueError),
        ("max_sessions", -5, ValueError),
        ("max_sessions", 1.5, ValueError),
        ("gc_batch", 0, ValueError),
        ("gc_batch", "10", ValueError),
    ],
    ids=lambda v: repr(v),
)
def test_bad_options_name_the_option(option: str, value: object, error: type) -> None:
    with pytest.raises(error, match=option):
        MemoryProvider(**{option: value})  # type: ignore[arg-type]


def test_threads_hammering_one_provider_keep_it_consistent() -> None:
    # The seed read and deleted from its map without the lock; this runs
    # every operation from many threads while GC sweeps, and checks the
    # store's two views (count and contents) still agree.
    p = MemoryProvider(gc_batch=5)
    shared = new_id()
    p.create(shared, {"start": 0}, 0.0, 1e9, None)
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker(i: int) -> None:
        try:
            for j in range(300):
                sid = new_id()
                p.create(sid, {"i": i}, float(j), 5.0, None)
                p.load(sid, float(j), 5.0)
                p.save(shared, {f"t{i}": j}, (), float(j), 1e9)
                if j % 3 == 0:
                    p.rename(sid, new_id(), float(j), 5.0)
                if j % 5 == 0:
                    p.destroy(sid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def sweeper() -> None:
        t = 0.0
        while not stop.is_set():
            t += 1
            p.gc(t)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    gc_thread = threading.Thread(target=sweeper)
    gc_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    gc_thread.join(30)
    assert not errors
    data = p.load(shared, 300.0, 1e9)
    assert data == {"start": 0, **{f"t{i}": 299 for i in range(8)}}
    # Only the shared session outlives the sweeps: every other one expired.
    p.gc(1e6)
    assert len(p) == 1


def test_the_deadline_order_never_outgrows_the_store() -> None:
    # Destroyed, renamed, evicted and idle-expired sessions leave no trace in
    # the second order, so a flood with an absolute lifetime stays bounded.
    p = MemoryProvider(max_sessions=100)
    for i in range(5000):
        sid = new_id()
        p.create(sid, {"v": 1}, float(i), IDLE, float(i) + 1e6)
        if i % 3 == 0:
            p.destroy(sid)
        elif i % 3 == 1:
            p.rename(sid, new_id(), float(i), IDLE)
    assert len(p) == 100
    assert len(p._by_deadline) == 100
    p.load(next(iter(p._sessions)), 1e9, IDLE)  # found dead on load
    assert len(p._by_deadline) == 99
    assert p.gc(2e6) == 99 and len(p._by_deadline) == 0
