"""The background thread that removes expired sessions."""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import Protocol

from .logs import log


class _Sweepable(Protocol):
    def gc(self) -> int: ...


class Sweeper:
    """Calls ``owner.gc()`` every ``interval`` seconds on a daemon thread.

    The thread waits on an Event, so :meth:`stop` ends it at once rather than
    after the current interval. It holds its owner only weakly: an owner
    dropped without ``close()`` is collected, and the thread then ends. A
    sweep that raises is logged and the thread carries on.
    """

    def __init__(self, owner: _Sweepable, interval: float) -> None:
        self._owner = weakref.ref(owner)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        #: Sweeps finished since start, and the last one's figures (monitoring).
        self.sweeps = 0
        self.last_removed = 0
        self.last_seconds = 0.0

    @property
    def running(self) -> bool:
        # A thread object copied by fork says "alive" but does not run in
        # the child, whatever at-fork hooks did or did not run.
        thread = self._thread
        return thread is not None and self._pid == os.getpid() and thread.is_alive()

    def start(self) -> None:
        """Start the thread (again, e.g. in a forked child where it does not exist)."""
        self._stop = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=_run, args=(self._owner, self._stop, self), name="wsgi_session-gc", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it; safe to call more than once."""
        self._stop.set()
        thread = self._thread
        if timeout is not None and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _run(owner: weakref.ref[_Sweepable], stop: threading.Event, sweeper: Sweeper) -> None:
    # A function, not a method holding the owner: between sweeps the thread
    # keeps no strong reference to it.
    while not stop.wait(sweeper.interval):
        target = owner()
        if target is None:
            return
        started = time.perf_counter()
        try:
            removed = target.gc()
        except Exception:
            log.exception("session GC sweep failed")
            continue
        finally:
            del target
        sweeper.sweeps += 1
        sweeper.last_removed = removed
        sweeper.last_seconds = time.perf_counter() - started
        log.debug("session GC removed %d sessions in %.1f ms", removed, sweeper.last_seconds * 1e3)
