"""The background thread that removes expired sessions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("wsgi_session")


class Sweeper:
    """Calls ``sweep()`` every ``interval`` seconds on a daemon thread.

    The thread waits on an Event, so :meth:`stop` ends it at once rather than
    after the current interval. A sweep that raises is logged and the thread
    carries on.
    """

    def __init__(self, sweep: Callable[[], int], interval: float) -> None:
        self._sweep = sweep
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Sweeps finished since start (for tests and monitoring).
        self.sweeps = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (again, e.g. in a forked child where it does not exist)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wsgi_session-gc", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the thread and wait for it; safe to call more than once."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            started = time.perf_counter()
            try:
                removed = self._sweep()
            except Exception:
                log.exception("session GC sweep failed")
                continue
            self.sweeps += 1
            log.debug(
                "session GC removed %d sessions in %.1f ms",
                removed,
                (time.perf_counter() - started) * 1000,
            )
