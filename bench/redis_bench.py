"""wsgi_session's Redis provider against Beaker's ``ext:redis`` backend.

    python bench/redis_bench.py            # 9 rounds of 1000 requests (about a minute)
    python bench/redis_bench.py --quick    # 3 rounds of 100 (seconds)

Starts its own redis-server on a free loopback port (no persistence, in a
temporary directory) and serves both libraries from it. Requests are WSGI
calls in this process, so the time is the middleware's plus Redis's. The
libraries alternate block by block within every round; the figures are
medians over the rounds. Needs ``pip install -e '.[bench]'`` (Beaker, redis)
and ``redis-server`` on PATH. See bench/README_redis.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

COOKIE = "session_id"
LIFETIME = 3600
SCENARIOS = {
    "rw": "existing session: read one key, write it back",
    "new": "new session: no cookie, one key written",
    "read": "existing session: read one key, write nothing",
}


# -- a private redis-server -----------------------------------------------------


@contextmanager
def redis_server() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not on PATH (apt-get install redis-server)")
    import redis

    with tempfile.TemporaryDirectory() as directory:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            for _ in range(200):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.025)
            client.close()
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


# -- the two middlewares over the same app ----------------------------------------


def make_app(environ_key: str, save: Callable[[Any], None]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = environ[environ_key]
        n = session.get("n", 0)
        if environ["PATH_INFO"] != "/read":
            session["n"] = n + 1
            save(session)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    return app


def wsgi_session_app(url: str) -> Any:
    from wsgi_session import SessionMiddleware

    return SessionMiddleware(
        make_app("wsgi_session.session", lambda s: None),
        provider="redis",
        provider_options={"url": url},
        max_lifetime=LIFETIME,
        gc_interval=None,
        cookie_name=COOKIE,
    )


def beaker_app(url: str) -> Any:
    from beaker.middleware import SessionMiddleware

    # Beaker's best case: saved only when the app writes (auto off), and the
    # access time saved on reads so the timeout slides as ours does.
    return SessionMiddleware(
        make_app("beaker.session", lambda s: s.save()),
        {
            "session.type": "ext:redis",
            "session.url": url,
            "session.key": COOKIE,
            "session.timeout": LIFETIME,
            "session.auto": False,
        },
    )


IMPLS = {"wsgi_session": wsgi_session_app, "beaker": beaker_app}


def environ_for(path: str, sid: str | None) -> dict[str, Any]:
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
    setup_testing_defaults(environ)
    if sid is not None:
        environ["HTTP_COOKIE"] = f"theme=dark; {COOKIE}={sid}"
    return environ


def request(app: Any, environ: dict[str, Any]) -> list[tuple[str, str]]:
    sent: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        assert status.startswith("200"), status
        sent[:] = headers

    result = app(environ, start_response)
    for _ in result:
        pass
    if hasattr(result, "close"):
        result.close()
    return sent


def new_session(app: Any) -> str:
    for name, value in request(app, environ_for("/", None)):
        value = value.strip()  # Beaker sends " session_id=..."
        if name.lower() == "set-cookie" and value.startswith(COOKIE + "="):
            return value.split(";", 1)[0].split("=", 1)[1]
    raise RuntimeError("no session cookie")


def scenario_environ(app: Any, scenario: str) -> dict[str, Any]:
    if scenario == "new":
        return environ_for("/", None)
    return environ_for("/read" if scenario == "read" else "/", new_session(app))


def per_request(app: Any, environ: dict[str, Any], n: int) -> float:
    copy = environ.copy
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        request(app, copy())
    return (time.perf_counter() - start) / n


# -- counting round trips and commands ----------------------------------------------

sends = 0


@contextmanager
def counting_sends() -> Iterator[None]:
    """Count every write to a Redis socket: one per round trip (a pipeline
    sends its commands in one write). Undone afterwards, so that the timed
    requests run without the counting wrapper."""
    from redis import connection

    cls = getattr(connection, "AbstractConnection", connection.Connection)
    original = cls.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        global sends
        sends += 1
        original(self, command, check_health)

    cls.send_packed_command = send_packed_command
    try:
        yield
    finally:
        cls.send_packed_command = original


def ping_time(url: str, n: int) -> float:
    """Seconds per bare round trip: PING sent and answered on one held
    redis-py connection, the way the provider sends its commands (no pool,
    no client method). The physical floor for one round trip."""
    import redis

    pool = redis.ConnectionPool.from_url(url)
    conn = pool.make_connection()
    conn.connect()
    packed = (b"*1\r\n$4\r\nPING\r\n",)
    try:
        conn.send_packed_command(packed)
        conn.read_response()
        gc.collect()
        start = time.perf_counter()
        for _ in range(n):
            conn.send_packed_command(packed)
            conn.read_response()
        return (time.perf_counter() - start) / n
    finally:
        conn.disconnect()
        pool.disconnect()


def server_commands(client: Any) -> dict[str, int]:
    """Calls per command so far, from INFO commandstats (commands a Lua
    script runs count too)."""
    stats = client.info("commandstats")
    return {name[len("cmdstat_") :]: v["calls"] for name, v in stats.items()}


def count(app: Any, environ: dict[str, Any], client: Any, n: int) -> tuple[float, dict[str, float]]:
    global sends
    request(app, environ.copy())  # warm: scripts loaded, connection open
    before, sends_before = server_commands(client), sends
    for _ in range(n):
        request(app, environ.copy())
    trips = (sends - sends_before) / n
    after = server_commands(client)
    per = {
        cmd: (calls - before.get(cmd, 0)) / n
        for cmd, calls in after.items()
        if cmd != "info" and calls != before.get(cmd, 0)
    }
    return trips, per


def machine() -> str:
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()}: {model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"


# -- main ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 requests")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("-n", type=int, default=1000, help="requests per block")
    args = parser.parse_args()
    rounds, n = (3, 100) if args.quick else (args.rounds, args.n)

    import redis

    with redis_server() as url:
        client = redis.Redis.from_url(url)
        apps = {name: build(url) for name, build in IMPLS.items()}
        when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        print(f"# wsgi_session Redis provider vs Beaker ext:redis, {when}")
        print(f"# {machine()}, Python {platform.python_version()}")
        print(f"# redis-server {client.info()['redis_version']}, redis-py {redis.__version__}")
        print(f"# {rounds} rounds x {n} requests per scenario and library")
        print("\nRound trips and server commands per request")
        with counting_sends():
            for scenario in SCENARIOS:
                for name, app in apps.items():
                    trips, commands = count(app, scenario_environ(app, scenario), client, 100)
                    listed = ", ".join(f"{c} {v:g}" for c, v in sorted(commands.items()))
                    print(f"  {scenario:5} {name:13} {trips:g} round trips; {listed}")

        times: dict[tuple[str, str], list[float]] = {}
        pings: list[float] = []
        for r in range(rounds):
            pings.append(ping_time(url, n))
            for scenario in SCENARIOS:
                names = list(apps) if r % 2 == 0 else list(reversed(apps))
                for name in names:
                    app = apps[name]
                    seconds = per_request(app, scenario_environ(app, scenario), n)
                    times.setdefault((scenario, name), []).append(seconds)

        print("\nMedian time per request (microseconds)")
        print(f"  {'scenario':50} {'wsgi_session':>12} {'beaker':>8} {'speed-up':>9}")
        for scenario, what in SCENARIOS.items():
            ours = statistics.median(times[scenario, "wsgi_session"]) * 1e6
            theirs = statistics.median(times[scenario, "beaker"]) * 1e6
            print(f"  {what:50} {ours:12.0f} {theirs:8.0f} {theirs / ours:8.2f}x")
        ping = statistics.median(pings) * 1e6
        print(f"\nA bare round trip (PING on a held connection): {ping:.1f} us")
        print(f"  {'scenario':50} {'min. trips':>11} {'wsgi_session / bare':>20}")
        for scenario, what in SCENARIOS.items():
            ours = statistics.median(times[scenario, "wsgi_session"]) * 1e6
            trips = 1 if scenario in ("new", "read") else 2
            print(f"  {what:50} {trips:11d} {ours / (trips * ping):19.2f}x")
        client.close()
        apps["wsgi_session"].close()


if __name__ == "__main__":
    main()
