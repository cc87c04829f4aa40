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
    sid = Manager(provider, clock=clock, gc_interval=None).create({"still": "open"})
    assert provider.load(sid, clock(), 10) == {"still": "open"}


def test_create_load_save_regenerate_destroy(clock) -> None:
    m = Manager(clock=clock, gc_interval=None, max_lifetime=50)
    sid = m.create({"a": 1})
    assert m.load(sid) == {"a": 1}
    assert m.save(sid, {"b": 2}, {"a"})
    new = m.regenerate(sid)
    assert new and new != sid and m.load(sid) is None and m.load(new) == {"b": 2}
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
        while len(m.provider) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(m.provider) == 0
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
