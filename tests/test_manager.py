"""Manager: options, lifetimes, the provider it owns, the GC thread."""

from __future__ import annotations

import os
import time

import pytest

from wsgi_session import Manager, Provider
from wsgi_session.providers.memory import MemoryProvider


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"max_lifetime": 0}, ValueError, "max_lifetime"),
        ({"max_lifetime": -1}, ValueError, "max_lifetime"),
        ({"max_lifetime": float("nan")}, ValueError, "max_lifetime"),
        ({"max_lifetime": float("inf")}, ValueError, "max_lifetime"),
        ({"max_lifetime": "3600"}, TypeError, "max_lifetime"),
        ({"max_lifetime": True}, TypeError, "max_lifetime"),
        ({"absolute_lifetime": 0}, ValueError, "absolute_lifetime"),
        ({"gc_interval": -1}, ValueError, "gc_interval"),
        ({"gc_interval": "60"}, TypeError, "gc_interval"),
        ({"max_lifetime": 10**400}, ValueError, "max_lifetime"),
        ({"absolute_lifetime": 10**400}, ValueError, "absolute_lifetime"),
        ({"hash_ids": 1}, TypeError, "hash_ids"),
        ({"user_key": ""}, ValueError, "user_key"),
        ({"user_key": 5}, TypeError, "user_key"),
        ({"max_session_bytes": 0}, ValueError, "max_session_bytes"),
        ({"max_session_bytes": 1.5}, TypeError, "max_session_bytes"),
        ({"clock": 5}, TypeError, "clock"),
        ({"provider": 42}, TypeError, "provider"),
        (
            {"provider": "memory", "provider_options": {"max_sessions": 0}},
            ValueError,
            "max_sessions",
        ),
        ({"provider": "memory", "provider_options": {"bogus": 1}}, TypeError, "bogus"),
        (
            {"provider": MemoryProvider(), "provider_options": {"max_sessions": 1}},
            ValueError,
            "provider_options",
        ),
    ],
    ids=lambda v: repr(v)[:60] if not isinstance(v, type) else v.__name__,
)
def test_bad_options_fail_at_construction_naming_the_option(
    options: dict, error: type, name: str
) -> None:
    with pytest.raises(error, match=name):
        Manager(**options)


def test_a_named_provider_is_built_per_manager_and_closed_with_it() -> None:
    closed: list[bool] = []

    class Tracking(MemoryProvider):
        def close(self) -> None:
            closed.append(True)

    from wsgi_session import registry

    registry.register("tracking-test", Tracking)
    one, two = (
        Manager("tracking-test", gc_interval=None),
        Manager("tracking-test", gc_interval=None),
    )
    assert isinstance(one.provider, Tracking) and one.provider is not two.provider
    one.close()
    one.close()
    assert closed == [True]
    two.close()


def test_an_instance_is_the_callers(clock) -> None:
    provider = MemoryProvider()
    m = Manager(provider, clock=clock)
    assert m.provider is provider
    m.close()
    other = Manager(provider, clock=clock, gc_interval=None)
    sid = other.create({"still": "open"})
    assert provider.load(other.key(sid), clock()).data == {"still": "open"}


def test_create_load_save_regenerate_destroy(clock) -> None:
    m = Manager(clock=clock, gc_interval=None, max_lifetime=50)
    sid = m.create({"a": 1})
    assert m.load(sid).data == {"a": 1}
    assert m.save(sid, {"b": 2}, {"a"})
    new = m.regenerate(sid)
    assert new and new != sid and m.load(sid) is None and m.load(new).data == {"b": 2}
    m.destroy(new)
    assert m.load(new) is None and m.regenerate(new) is None
    m.create({"x": 1})
    clock.advance(51)
    assert m.gc() == 1


def test_gc_thread_sweeps_on_its_interval() -> None:
    m = Manager(max_lifetime=0.05, gc_interval=0.02)
    try:
        m.create({"a": 1})
        m.start_gc()
        deadline = time.monotonic() + 2
        while m.provider.count() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.provider.count() == 0
    finally:
        m.close()
    assert not m.gc_running


def test_close_stops_the_thread_at_once() -> None:
    m = Manager(gc_interval=3600)
    m.start_gc()
    assert m.gc_running
    started = time.monotonic()
    m.close()
    assert not m.gc_running
    assert time.monotonic() - started < 2  # not after the hour-long interval
    m.start_gc()  # a closed manager does not start again
    assert not m.gc_running


def test_no_thread_when_gc_interval_is_zero_or_none() -> None:
    for interval in (0, None):
        m = Manager(gc_interval=interval)
        m.start_gc()
        assert not m.gc_running
        m.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process.*fork:DeprecationWarning")
def test_a_forked_child_starts_its_own_gc_thread() -> None:
    m = Manager(gc_interval=3600)
    m.start_gc()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread did not survive the fork
        ok = not m.gc_running
        m.start_gc()
        ok = ok and m.gc_running
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    m.close()


def test_the_provider_contract_is_abstract() -> None:
    with pytest.raises(TypeError):
        Provider()  # type: ignore[abstract]


def test_close_racing_the_first_start_gc_leaves_no_thread() -> None:
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for _ in range(300):
            m = Manager(gc_interval=3600)
            starter = threading.Thread(target=m.start_gc)
            starter.start()
            m.close()
            starter.join()
            assert not m.gc_running
            m._sweeper.stop()
    finally:
        sys.setswitchinterval(interval)


def test_a_manager_dropped_without_close_ends_its_thread_and_frees_its_store() -> None:
    import gc
    import threading
    import weakref

    before = {t for t in threading.enumerate() if t.name == "wsgi_session-gc"}
    refs = []
    for _ in range(5):
        m = Manager(gc_interval=3600)
        m.start_gc()
        refs.append(weakref.ref(m.provider))
        del m
    gc.collect()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        alive = {t for t in threading.enumerate() if t.name == "wsgi_session-gc"} - before
        if not alive:
            break
        time.sleep(0.01)
    assert not alive
    assert all(ref() is None for ref in refs)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process.*fork:DeprecationWarning")
def test_a_forked_child_without_hooks_gets_its_own_ids_and_gc_thread(clock) -> None:
    # os.fork() here runs the at-fork hooks; the library must not need them,
    # so none of its state is reset by a hook: the check is the pid.
    from wsgi_session import ids

    m = Manager(gc_interval=3600, clock=clock)
    m.create({"warm": "up"})  # the pool now holds ids this process will hand out
    m.start_gc()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child = [ids.new_id() for _ in range(3)]
            m.load("A" * 43)  # a load does not check the process (no system call)
            before = m.gc_running
            m.create({"first": "session"})  # the first new session here does
            state = f"{before}-{m.gc_running}"
            os.write(write, (",".join(child) + "|" + state).encode())
        finally:
            os._exit(0)
    os.close(write)
    reply = b""
    while chunk := os.read(read, 4096):
        reply += chunk
    os.waitpid(pid, 0)
    child_ids, gc_state = reply.decode().split("|")
    parent = {ids.new_id() for _ in range(3)}
    assert not parent & set(child_ids.split(","))
    assert gc_state == "False-True"
    m.close()


# -- users and revocation ------------------------------------------------------


def test_sessions_of_revoke_and_revoke_user(clock) -> None:
    m = Manager(clock=clock, gc_interval=None, user_key="user_id", max_lifetime=100)
    devices = [m.create({"user_id": 7}, user="7") for _ in range(3)]
    m.create({"user_id": "8"}, user="8")
    clock.advance(1)
    infos = m.sessions_of(7)
    assert len(infos) == 3 and m.sessions_of("7") == infos
    assert all(info.created == clock.now - 1 and info.expires == clock.now + 99 for info in infos)
    mine = m.handle(devices[0], "7")
    assert mine in {info.handle for info in infos}
    assert all(d not in info.handle for d in devices for info in infos)  # never the id
    assert m.revoke_user(7, keep=mine) == 2
    assert m.load(devices[0]) is not None
    assert m.load(devices[1]) is None and m.load(devices[2]) is None
    assert [info.handle for info in m.sessions_of(7)] == [mine]
    assert m.revoke(mine) and not m.revoke(mine)
    assert m.load(devices[0]) is None and m.sessions_of(7) == []
    assert len(m.sessions_of(8)) == 1
    assert m.stats()["revoked"] == 3


def test_a_regenerated_session_gets_a_new_handle(clock) -> None:
    m = Manager(clock=clock, gc_interval=None, user_key="u")
    sid = m.create({"u": "alice"}, user="alice")
    old = m.handle(sid, "alice")
    new_sid = m.regenerate(sid)
    assert [info.handle for info in m.sessions_of("alice")] == [m.handle(new_sid, "alice")]
    assert not m.revoke(old)
    assert m.load(new_sid) is not None


@pytest.mark.parametrize("handle", ["", "x", "x.!!!", "x." + "A" * 10, "a.b.c"], ids=repr)
def test_revoke_of_a_bad_handle_is_false(clock, handle: str) -> None:
    m = Manager(clock=clock, gc_interval=None)
    assert m.revoke(handle) is False


def test_hash_ids_keys_the_store_by_a_digest(clock) -> None:
    hashed = Manager(clock=clock, gc_interval=None)
    plain = Manager(clock=clock, gc_interval=None, hash_ids=False)
    for m in (hashed, plain):
        sid = m.create({"a": 1})
        keys = [*m.provider._probation, *m.provider._protected]  # the raw store
        assert (sid in keys) is (m is plain)
        assert m.load(sid).data == {"a": 1}
        # a key read from a dump of the store is no use as a cookie
        assert (m.load(keys[0]) is None) is (m is hashed)


def test_stats_count_what_happened(clock) -> None:
    m = Manager(clock=clock, gc_interval=None, max_lifetime=10)
    sid = m.create({"a": 1})
    m.load(sid)
    m.load("Z" * 43)
    clock.advance(11)
    assert not m.save(sid, {"a": 2}, ())
    stats = m.stats()
    assert stats["created"] == 1 and stats["loaded"] == 1 and stats["missed"] == 1
    assert stats["lost"] == 1 and stats["store_errors"] == 0
