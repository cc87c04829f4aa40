"""What each store costs a request: memory, sqlite and redis side by side.

    python bench/stores.py            # 7 rounds of 2000 operations (about a minute)
    python bench/stores.py --quick    # 3 rounds of 100 (seconds; the test suite uses it)

A request's store work is timed through the Manager, as the middleware does
it: "rw" loads an existing session and saves one changed key, "read" only
loads it, "new" creates a session with one key. The providers alternate
block by block within every round; the figures are medians over the rounds,
and the ratios compare sqlite with memory and with Redis. The SQLite file is
in a temporary directory (its file system is printed: tmpfs is faster than
a disk). Redis runs only if ``redis-server`` is on PATH and redis-py is
installed, on a private server started as bench/redis_bench.py does.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # redis_bench, run as a script
from redis_bench import machine, redis_server  # noqa: E402

SCENARIOS = {
    "rw": "load a session, save one key",
    "read": "load a session",
    "new": "create a session with one key",
}


@contextmanager
def managers(directory: str, redis: bool) -> Iterator[dict[str, Any]]:
    """A Manager per available store, closed at the end."""
    from wsgi_session import Manager

    made: dict[str, Any] = {
        "memory": Manager("memory", gc_interval=None),
        "sqlite": Manager(
            "sqlite", {"path": os.path.join(directory, "sessions.db")}, gc_interval=None
        ),
    }
    stack = ExitStack()
    with stack:
        if not redis:
            print("# redis: not asked for")
        elif shutil.which("redis-server") is None:
            print("# redis: skipped (redis-server is not on PATH)")
        else:
            try:
                import redis  # noqa: F401
            except ImportError:
                print("# redis: skipped (pip install redis)")
            else:
                url = stack.enter_context(redis_server())
                made["redis"] = Manager("redis", {"url": url}, gc_interval=None)
        try:
            yield made
        finally:
            for manager in made.values():
                manager.close()


def operation(manager: Any, scenario: str) -> Callable[[], None]:
    if scenario == "new":
        return lambda: manager.create({"n": 1}) and None
    sid = manager.create({"n": 0, "user": "alice", "cart": [1, 2, 3]})
    if scenario == "read":
        return lambda: manager.load(sid) and None

    def rw() -> None:
        record = manager.load(sid)
        manager.save(sid, {"n": record.data["n"] + 1}, ())

    return rw


def per_operation(call: Callable[[], None], n: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


def file_system(directory: str) -> str:
    """The type of the file system ``directory`` is on (from /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _, point, fstype = line.split()[:3]
                if directory.startswith(point) and len(point) > len(best):
                    best, kind = point, fstype
    except OSError:
        pass
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 operations")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("-n", type=int, default=2000, help="operations per block")
    parser.add_argument("--dir", default=None, help="where the SQLite file goes")
    parser.add_argument("--no-redis", action="store_true", help="memory and sqlite only")
    args = parser.parse_args()
    rounds, n = (3, 100) if args.quick else (args.rounds, args.n)

    with (
        tempfile.TemporaryDirectory(dir=args.dir) as directory,
        managers(directory, not args.no_redis) as stores,
    ):
        when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        print(f"# wsgi_session stores, per request, through the Manager, {when}")
        print(f"# {machine()}, Python {platform.python_version()}")
        print(f"# SQLite {sqlite3.sqlite_version} on {file_system(directory)} ({directory})")
        print(f"# {rounds} rounds x {n} operations per scenario and store")
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(rounds):
            for scenario in SCENARIOS:
                names = list(stores) if r % 2 == 0 else list(reversed(stores))
                for name in names:
                    call = operation(stores[name], scenario)
                    call()  # warm: connection open, statements prepared
                    times.setdefault((scenario, name), []).append(per_operation(call, n))

        print("\nMedian time per request (microseconds)")
        header = "".join(f"{name:>9}" for name in stores)
        ratios = "  sqlite/memory" + ("  sqlite/redis" if "redis" in stores else "")
        print(f"  {'scenario':32}{header}{ratios}")
        for scenario, what in SCENARIOS.items():
            us = {name: statistics.median(times[scenario, name]) * 1e6 for name in stores}
            row = "".join(f"{us[name]:9.1f}" for name in stores)
            row += f"  {us['sqlite'] / us['memory']:12.0f}x"
            if "redis" in stores:
                row += f"  {us['sqlite'] / us['redis']:11.2f}x"
            print(f"  {what:32}{row}")


if __name__ == "__main__":
    main()
