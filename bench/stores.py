"""What each store costs a request: memory, sqlite, redis and postgres side by side.

    python bench/stores.py            # 7 rounds of 2000 operations (about a minute)
    python bench/stores.py --quick    # 3 rounds of 100 (seconds; the test suite uses it)

A request's store work is timed through the Manager, as the middleware does
it: "rw" loads an existing session and saves one changed key, "read" only
loads it, "new" creates a session with one key. The providers alternate
block by block within every round; the figures are medians over the rounds,
and the ratios compare sqlite with memory and with Redis. The SQLite file is
in a temporary directory (its file system is printed: tmpfs is faster than
a disk). Redis runs only if ``redis-server`` is on PATH and redis-py is
installed, on a private server started as bench/redis_bench.py does;
PostgreSQL only if ``initdb``/``pg_ctl`` and psycopg are, on a private
cluster with the server's default settings (bench/pg_server.py): a save's
commit waits for the disk; ``--postgres-no-wait`` measures
``durable_saves=False``.

Two tables: wall-clock time, and this process's CPU time (on a busy machine
the first grows with every wait for a CPU; Redis's work is only in the
first). Then the shared stores under ``-p`` processes at once (as
``gunicorn -w 4`` would run them), in requests per second all together.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # redis_bench, run as a script
from redis_bench import machine, redis_server  # noqa: E402

try:  # bench/pg_server.py comes with the PostgreSQL provider
    from pg_server import pg_bin, postgres_server
except ImportError:  # pragma: no cover - without it, no postgres column
    pg_bin = None  # type: ignore[assignment]

SCENARIOS = {
    "rw": "load a session, save one key",
    "read": "load a session",
    "new": "create a session with one key",
}


@contextmanager
def store_options(
    directory: str, redis: bool, postgres: bool = True, durable_saves: bool = True
) -> Iterator[dict[str, dict[str, Any]]]:
    """The provider_options of each available store (a Redis server runs meanwhile)."""
    stores: dict[str, dict[str, Any]] = {
        "memory": {},
        "sqlite": {"path": os.path.join(directory, "sessions.db")},
    }
    with ExitStack() as stack:
        if not redis:
            print("# redis: not asked for")
        elif shutil.which("redis-server") is None:
            print("# redis: skipped (redis-server is not on PATH)")
        elif importlib.util.find_spec("redis") is None:
            print("# redis: skipped (pip install redis)")
        else:
            stores["redis"] = {"url": stack.enter_context(redis_server())}
        if not postgres:
            print("# postgres: not asked for")
        elif pg_bin is None or importlib.util.find_spec("wsgi_session.providers.postgres") is None:
            print("# postgres: skipped (no PostgreSQL provider in this checkout)")
        elif pg_bin() is None:
            print("# postgres: skipped (initdb and pg_ctl not found)")
        elif importlib.util.find_spec("psycopg") is None:
            print("# postgres: skipped (pip install psycopg)")
        else:
            dsn = stack.enter_context(postgres_server())
            stores["postgres"] = {"dsn": dsn, "durable_saves": durable_saves}
            print(f"# postgres: a private server, default settings, {durable_saves=}")
        yield stores


@contextmanager
def managers(stores: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    from wsgi_session import Manager

    made = {name: Manager(name, options, gc_interval=None) for name, options in stores.items()}
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


def per_operation(call: Callable[[], None], n: int) -> tuple[float, float]:
    """Seconds per call: wall-clock, and this process's CPU."""
    gc.collect()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


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
    parser.add_argument("--no-redis", action="store_true", help="no Redis")
    parser.add_argument("--no-postgres", action="store_true", help="no PostgreSQL")
    parser.add_argument(
        "--postgres-no-wait", action="store_true", help="PostgreSQL with durable_saves=False"
    )
    parser.add_argument("-p", "--processes", type=int, default=4, help="for the shared test")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds, n = (3, 100) if args.quick else (args.rounds, args.n)

    if args.worker:
        worker(*args.worker)
        return
    with (
        tempfile.TemporaryDirectory(dir=args.dir) as directory,
        store_options(
            directory, not args.no_redis, not args.no_postgres, not args.postgres_no_wait
        ) as options,
        managers(options) as stores,
    ):
        when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        print(f"# wsgi_session stores, per request, through the Manager, {when}")
        print(f"# {machine()}, Python {platform.python_version()}")
        print(f"# SQLite {sqlite3.sqlite_version} on {file_system(directory)} ({directory})")
        print(f"# {rounds} rounds x {n} operations per scenario and store")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in range(rounds):
            for scenario in SCENARIOS:
                names = list(stores) if r % 2 == 0 else list(reversed(stores))
                for name in names:
                    call = operation(stores[name], scenario)
                    call()  # warm: connection open, statements prepared
                    times.setdefault((scenario, name), []).append(per_operation(call, n))

        report(stores, times, 0, "Median time per request (microseconds, wall-clock)")
        report(
            stores,
            times,
            1,
            "Median CPU time of this process per request (microseconds; Redis's own is not in it)",
        )
        shared = [name for name in options if name != "memory"]  # memory: one process only
        print(
            f"\n{args.processes} processes at once, each loading its own session and saving "
            "one key (median of the rounds)"
        )
        for name in shared:
            rates = [together(name, options[name], args.processes, n) for _ in range(rounds)]
            print(f"  {name:8} {statistics.median(rates):9.0f} requests/s")


def together(name: str, options: dict[str, Any], processes: int, n: int) -> float:
    """Requests per second of ``processes`` workers doing "rw" at the same moment."""
    with tempfile.TemporaryDirectory() as directory:
        go = os.path.join(directory, "go")
        argv = [sys.executable, __file__, "--worker", name, json.dumps(options), str(n), go]
        procs = [
            subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(processes)
        ]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        Path(go).touch()
        elapsed = [float(proc.communicate(timeout=600)[0]) for proc in procs]
    return processes * n / max(elapsed)


def worker(name: str, options: str, n: str, go: str) -> None:
    """One process of :func:`together`: print "ready", wait for ``go``, print the seconds."""
    with managers({name: json.loads(options)}) as made:
        call = operation(made[name], "rw")
        call()
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.001)
        start = time.perf_counter()
        for _ in range(int(n)):
            call()
        print(time.perf_counter() - start, flush=True)


def report(
    stores: dict[str, Any], times: dict[tuple[str, str], list[tuple[float, float]]], which: int,
    title: str,
) -> None:  # fmt: skip
    """A table of medians, and each shared store as a multiple of memory and of Redis."""
    print(f"\n{title}")
    header = "".join(f"{name:>9}" for name in stores)
    pairs = [(name, base) for name in stores if name != "memory" for base in ("memory", "redis")]
    pairs = [(name, base) for name, base in pairs if base in stores and base != name]
    ratios = "".join(f"{name + '/' + base:>17}" for name, base in pairs)
    print(f"  {'scenario':32}{header}{ratios}")
    for scenario, what in SCENARIOS.items():
        us = {
            name: statistics.median(t[which] for t in times[scenario, name]) * 1e6
            for name in stores
        }
        row = "".join(f"{us[name]:9.1f}" for name in stores)
        row += "".join(f"{us[name] / us[base]:16.2f}x" for name, base in pairs)
        print(f"  {what:32}{row}")


if __name__ == "__main__":
    main()
