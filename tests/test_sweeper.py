"""Sweeper: the stoppable daemon thread behind GC."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from wsgi_session.sweeper import Sweeper


class Owner:
    """What a Sweeper sweeps: anything with gc() (held weakly by the sweeper)."""

    def __init__(self, sweep) -> None:
        self.gc = sweep


def wait_for(condition, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_sweeps_repeatedly_on_a_daemon_thread() -> None:
    calls: list[str] = []
    owner = Owner(lambda: calls.append(threading.current_thread().name) or 0)
    s = Sweeper(owner, 0.01)
    s.start()
    try:
        assert wait_for(lambda: s.sweeps >= 3)
        assert s._thread is not None and s._thread.daemon
        assert set(calls) == {"wsgi_session-gc"}
    finally:
        s.stop()
    assert not s.running


def test_interval_is_in_seconds() -> None:
    # The seed scheduled its GC with time.Duration(maxlifetime): nanoseconds,
    # so "every 3600" meant a sweep every 3.6 µs. Here 60 means a minute.
    owner = Owner(lambda: 0)
    s = Sweeper(owner, 60)
    s.start()
    try:
        time.sleep(0.2)
        assert s.sweeps == 0 and s.running
    finally:
        s.stop()


def test_stop_is_immediate_and_idempotent() -> None:
    owner = Owner(lambda: 0)
    s = Sweeper(owner, 3600)
    s.start()
    started = time.monotonic()
    s.stop()
    s.stop()
    assert not s.running
    assert time.monotonic() - started < 2


def test_a_failing_sweep_is_logged_and_the_thread_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    def sweep() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store hiccup")
        return 5

    owner = Owner(sweep)
    s = Sweeper(owner, 0.01)
    with caplog.at_level(logging.DEBUG, logger="wsgi_session"):
        s.start()
        try:
            assert wait_for(lambda: s.sweeps >= 2)
        finally:
            s.stop()
    assert "session GC sweep failed" in caplog.text
    assert "session GC removed 5 sessions" in caplog.text
