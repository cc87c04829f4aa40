"""wsgi_session against its peers and the bare app, side by side, in one run.

    python bench/run.py              # everything (about ten minutes)
    python bench/run.py --quick      # a tiny run (the test suite uses it)
    python bench/run.py -s 1,2,3     # only some sections

Sections 1-6: the middleware against Beaker and the bare app; 7: Flask,
Django and Pyramid against their session peers; 8: Redis against bare
round trips; 9: the stores (bench/stores.py). The run ends with issue 13's
table of targets, each with its goal and whether it is met.

Every measurement runs in a fresh subprocess; the implementations alternate
round by round, and the figures printed are medians over the rounds. See
bench/README.md for what each scenario does and the figures measured.
The peers (``pip install -e '.[bench]'``), redis-server, gunicorn, uWSGI
and wrk are optional: what is missing is reported and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COOKIE = "session_id"
BEAKER_KEY = "beaker.session"
WS_KEY = "wsgi_session.session"
USER_KEY = "user_id"

# -- the apps ------------------------------------------------------------------

BODY = [b"ok"]


def _rw_app(
    key: str, all_features: bool = False, idle: float = 7200
) -> Callable[..., Iterable[bytes]]:
    """Scenarios 1 and 2: read one key and write it back.

    With ``all_features`` a new session is also given a user (indexed under
    ``user_key``) and its own idle timeout ``idle``, as a "remember me"
    log-in does.
    """

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = environ[key]
        session["n"] = session.get("n", 0) + 1
        if all_features and USER_KEY not in session:
            session[USER_KEY] = "alice"
            session.set_lifetime(idle)
        # A new header list per response: Beaker appends to it in place.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return BODY

    return app


def untouched_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Scenario 3 (and the bare app everywhere): never touches a session."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return BODY


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


#: Our two configurations for scenarios 1-3. "minimal": nothing optional.
#: "all features": ids hashed at rest (the default), a user index, a
#: per-session lifetime in every session (metrics are always on).
CONFIGS = {
    "wsgi_session": {"hash_ids": False, "user_key": None},
    "wsgi_session+all": {"hash_ids": True, "user_key": USER_KEY},
}


def build(impl: str, app: Callable[..., Iterable[bytes]], **options: Any) -> Any:
    """Wrap ``app`` in ``impl``'s middleware (memory store, idle timeout)."""
    lifetime = options.pop("lifetime", 3600)
    if impl == "bare":
        return app
    if impl in CONFIGS:
        from wsgi_session import SessionMiddleware

        options.setdefault("gc_interval", 60)
        options = {**CONFIGS[impl], **options}
        return SessionMiddleware(app, max_lifetime=lifetime, cookie_name=COOKIE, **options)
    if impl == "beaker":
        from beaker.middleware import SessionMiddleware as BeakerMiddleware

        # The memory backend, saved automatically when used: the equivalent
        # of wsgi_session's defaults.
        return BeakerMiddleware(
            app,
            {
                "session.type": "memory",
                "session.auto": True,
                "session.key": COOKIE,
                "session.timeout": max(1, math.ceil(lifetime)),  # Beaker takes whole seconds
            },
        )
    raise ValueError(impl)


def base_environ(cookie: str | None = None, header: str = "browser") -> dict[str, Any]:
    """A GET's environ. ``header``: "browser" puts site cookies around ours
    (and sends them to a new visitor too), "one" sends our cookie alone."""
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
    }
    setup_testing_defaults(environ)
    if header == "browser":
        # Another site cookie around ours, as browsers send them.
        ours = "" if cookie is None else f"{COOKIE}={cookie}; "
        environ["HTTP_COOKIE"] = f"theme=dark; {ours}lang=en"
    elif cookie is not None:
        environ["HTTP_COOKIE"] = f"{COOKIE}={cookie}"
    return environ


def call(app: Any, environ: dict[str, Any]) -> list[tuple[str, str]]:
    """One request through ``app``; returns the response headers."""
    sent: list[tuple[str, str]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        sent[:] = headers
        return None

    result = app(environ, start_response)
    try:
        for _ in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return sent


def cookie_value(headers: list[tuple[str, str]], name: str = COOKIE) -> str:
    for header, value in headers:
        if header.lower() == "set-cookie" and value.strip().startswith(name + "="):
            return value.strip().split(";", 1)[0].split("=", 1)[1]
    raise RuntimeError("no session cookie in the response")


def _noop_start_response(status: str, headers: Any, exc_info: Any = None) -> None:
    return None


def time_requests(app: Any, environ: dict[str, Any], n: int, repeats: int) -> float:
    """Median seconds per request over ``repeats`` loops of ``n`` requests.

    The loop is the same for every implementation (a fresh environ copy per
    request, the body iterated, close() called), so ratios are fair.
    """
    sr = _noop_start_response
    copy = environ.copy
    times = []
    for _ in range(repeats + 1):  # the first loop warms up
        t0 = time.perf_counter()
        for _ in range(n):
            result = app(copy(), sr)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times[1:])


# -- workers (each runs in its own process) ----------------------------------------


def worker_latency(scenario: int, impl: str, header: str, n: int, repeats: int) -> dict[str, Any]:
    if scenario == 3:
        app = build(impl, untouched_app)
        return {"seconds": time_requests(app, base_environ(), n, repeats)}
    key = BEAKER_KEY if impl == "beaker" else WS_KEY
    if impl == "bare":
        app = untouched_app
        environ = base_environ("x" * 43, header)
    else:
        app = build(impl, _rw_app(key, impl == "wsgi_session+all"))
        if scenario == 1:
            sid = cookie_value(call(app, base_environ()))
            environ = base_environ(sid, header)
        else:
            environ = base_environ(None, header)
    return {"seconds": time_requests(app, environ, n, repeats)}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker_memory(impl: str, n: int, lifetime: float, interval: float) -> dict[str, Any]:
    """Scenario 4: RSS growth per live session, then what expiry gives back."""
    key = BEAKER_KEY if impl == "beaker" else WS_KEY
    options: dict[str, Any] = {"lifetime": lifetime}
    if impl in CONFIGS:
        options["gc_interval"] = interval
    else:
        lifetime = max(1, math.ceil(lifetime))
    # All features: the per-session idle timeout equals the default here,
    # so that the sessions expire in time to measure what is reclaimed.
    app = build(impl, _rw_app(key, impl == "wsgi_session+all", lifetime), **options)
    environ = base_environ()
    count: Callable[[], int]
    if impl in CONFIGS:
        count = app.manager.provider.__len__
    else:
        from beaker.container import MemoryNamespaceManager

        namespaces = MemoryNamespaceManager.namespaces.dict
        count = namespaces.__len__
    call(app, environ.copy())  # the first session: imports, the GC thread
    gc.collect()
    before = rss()
    sr = _noop_start_response
    for _ in range(n - 1):
        for _chunk in app(environ.copy(), sr):
            pass
    created_at = time.monotonic()
    gc.collect()
    after = rss()
    held = count()
    # The last session expires `lifetime` after it was made; allow two GC
    # intervals after that (and a little for the sweep itself to run), plus
    # the second the memory store rounds an expiry up to.
    time.sleep(max(0.0, created_at + lifetime + 1 + 2 * interval + 0.05 - time.monotonic()))
    left = count()
    gc.collect()
    result = {
        "bytes_per_session": (after - before) / (n - 1),
        "held": held,
        "left_after_expiry": left,
        "reclaimed": 1 - left / held if held else 0.0,
        "rss_growth": after - before,
        "rss_after_expiry": rss() - before,
    }
    if impl in CONFIGS:
        app.close()
    return result


class _TimedLock:
    """The provider's lock, timing how long the GC thread holds it.

    Installed by the benchmark only; the library's hot path is unchanged.
    """

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.gc_thread: int | None = None
        self.holds: list[float] = []
        self.cpu: list[float] = []  # the sweeping thread's CPU time per hold
        self._t0 = self._c0 = 0.0

    def acquire(self, *args: Any) -> bool:
        ok: bool = self._lock.acquire(*args)
        if ok and threading.get_ident() == self.gc_thread:
            self._t0, self._c0 = time.perf_counter(), time.thread_time()
        return ok

    def release(self) -> None:
        if threading.get_ident() == self.gc_thread:
            self.holds.append(time.perf_counter() - self._t0)
            self.cpu.append(time.thread_time() - self._c0)
        self._lock.release()

    def locked(self) -> bool:
        locked: bool = self._lock.locked()
        return locked

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def worker_sweep(n: int, threads: int, gc_batch: int | None) -> dict[str, Any]:
    """Scenario 5: sweep ``n`` sessions of mixed lifetimes (about half of them
    dead) while ``threads`` serve requests through the middleware."""
    sys.path.insert(0, HERE)
    from sweep import fill  # the memory branch's mix: a minute to 30 days, some deadlines

    from wsgi_session import SessionMiddleware
    from wsgi_session.providers.memory import MemoryProvider

    options = {"max_sessions": n + 1000}
    if gc_batch is not None:
        options["gc_batch"] = gc_batch
    provider = MemoryProvider(**options)
    lock = _TimedLock(provider._mutex)
    provider._mutex = lock  # type: ignore[assignment]
    now = float(int(time.time()))  # whole seconds: every dead session is then due
    dead = fill(provider, n, now)
    held = provider.count()
    gc.collect()
    mw = SessionMiddleware(_rw_app(WS_KEY), provider=provider, gc_interval=None)
    stop = threading.Event()
    sweeping = threading.Event()
    latencies: list[list[tuple[bool, float]]] = [[] for _ in range(threads)]

    def serve(out: list[tuple[bool, float]]) -> None:
        sid = cookie_value(call(mw, base_environ()))
        environ = base_environ(sid)
        sr = _noop_start_response
        perf = time.perf_counter
        # A request every 0.5 ms per thread (a busy server, not a saturated
        # loop). Latency runs from the request's scheduled time, so waiting
        # for the GIL or the lock while the sweep holds them is counted.
        due = perf()
        while not stop.is_set():
            due += 0.0005
            now = perf()
            if due > now:
                time.sleep(due - now)
            else:
                due = now  # behind schedule: start now, count from now
            for _chunk in mw(environ.copy(), sr):
                pass
            out.append((sweeping.is_set(), perf() - due))

    workers = [threading.Thread(target=serve, args=(out,)) for out in latencies]
    for w in workers:
        w.start()
    time.sleep(0.3)  # latencies before the sweep: the machine's own noise
    result: dict[str, Any] = {}

    def sweep() -> None:
        lock.gc_thread = threading.get_ident()
        sweeping.set()
        t0 = time.perf_counter()
        result["removed"] = provider.gc(now)
        result["sweep_seconds"] = time.perf_counter() - t0
        sweeping.clear()

    sweeper = threading.Thread(target=sweep, name="wsgi_session-gc")
    sweeper.start()
    sweeper.join()
    time.sleep(0.1)
    stop.set()
    for w in workers:
        w.join()
    during = [t for out in latencies for s, t in out if s]
    before = [t for out in latencies for s, t in out if not s]
    result.update(
        sessions=n,
        held=held,
        dead=dead,
        gc_batch=provider.gc_batch,
        batches=len(lock.holds),
        max_hold=max(lock.holds),
        median_hold=statistics.median(lock.holds),
        max_hold_cpu=max(lock.cpu),
        median_hold_cpu=statistics.median(lock.cpu),
        requests_during=len(during),
        max_latency_during=max(during) if during else 0.0,
        p99_latency_during=_quantile(during, 0.99),
        max_latency_outside=max(before) if before else 0.0,
        left=provider.count() - threads,
    )
    return result


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- scenario 6: real HTTP -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


def worker_load(port: int, seconds: float, connections: int, cookie: str) -> dict[str, Any]:
    """Scenario 6 without wrk: keep-alive GETs from ``connections`` threads
    for ``seconds`` (in its own process, like wrk). Returns requests/s."""
    import http.client

    deadline = time.monotonic() + seconds
    counts = [0] * connections
    errors: list[str] = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Cookie": cookie}
        try:
            while time.monotonic() < deadline:
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(str(response.status))
                    return
                counts[i] += 1
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"the server answered {errors[0]}")
    return {"rps": sum(counts) / (time.monotonic() - started)}


def _uwsgi() -> list[str] | None:
    """The uwsgi command: one pip built for this Python, else Debian's with
    its python3 plugin (its own Python: wsgi_session comes from PYTHONPATH,
    and needs nothing else), else None."""
    local = os.path.join(sysconfig.get_path("scripts"), "uwsgi")
    candidates = [[local]] if os.path.exists(local) else []
    system = shutil.which("uwsgi")
    if system:
        candidates.append([system, "--plugin", "python3"])
    for command in candidates:
        done = subprocess.run([*command, "--version"], capture_output=True, check=False)
        if done.returncode == 0:
            return command
    return None


@functools.cache
def _uwsgi_venv() -> str | None:
    """A venv of the Python that Debian's uWSGI embeds, in which Beaker is
    installed (this one, or the .venv that .ci/run makes), else None.

    That Python sees only its standard library and PYTHONPATH; given a venv
    of its own (``--virtualenv``) it also imports the venv's packages, so
    Beaker can race under uWSGI too. Asked of uWSGI itself, once.
    """
    command = _uwsgi()
    if command is None or len(command) == 1:  # none, or built for this Python
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        probe = os.path.join(directory, "probe.py")
        with open(probe, "w") as f:
            f.write("import beaker\nprint('beaker', beaker.__version__, 'imports')\n")
        for venv in dict.fromkeys([sys.prefix, os.path.join(ROOT, ".venv")]):
            if not os.path.exists(os.path.join(venv, "pyvenv.cfg")):
                continue
            try:
                done = subprocess.run(
                    [*command, "--virtualenv", venv, "--pyrun", probe],
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                continue
            if re.search(r"^beaker \S+ imports$", done.stdout + done.stderr, re.M):
                return venv
    return None


def _server_command(server: str, port: int) -> list[str]:
    """The same command for every implementation: only BENCH_HTTP_IMPL differs.

    4 threads in one process, as wrk's 4 connections: uWSGI's --http11-socket
    keeps each keep-alive connection on the thread that accepted it, so with
    fewer threads than connections the others are never served (with 1
    thread, wrk -c4 gets what -c1 gets), and with more some threads idle.
    """
    if server == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn",
            "--workers", "1", "--worker-class", "gthread", "--threads", "4",
            "--bind", f"127.0.0.1:{port}", "--chdir", HERE, "--log-level", "warning",
            "http_app:app",
        ]  # fmt: skip
    command = _uwsgi()
    assert command is not None
    venv = _uwsgi_venv()
    return [
        *command, *(["--virtualenv", venv] if venv else []),
        "--http11-socket", f"127.0.0.1:{port}",
        "--master", "--processes", "1", "--threads", "4", "--chdir", HERE,
        "--wsgi-file", "http_app.py", "--callable", "app", "--need-app",
        "--disable-logging", "--die-on-term",
    ]  # fmt: skip


def _server_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of the server ``pid`` and
    its workers (its children), from /proc; 0.0 where there is none."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [pid, *map(int, f.read().split())]
        total = 0
        for p in pids:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return 0.0
    return total / os.sysconf("SC_CLK_TCK")


def http_round(server: str, impl: str, seconds: float, connections: int) -> dict[str, float]:
    """Requests/s of ``server`` (gunicorn or uwsgi) serving ``impl``
    (bench/http_app.py) under wrk (or, without wrk, the Python load
    generator above), and the server's CPU µs per request ("cpu", 0 where
    /proc cannot tell)."""
    port = _free_port()
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, BENCH_HTTP_IMPL=impl, PYTHONPATH=ROOT + (":" + path if path else ""))
    proc = subprocess.Popen(
        _server_command(server, port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            set_cookie = response.headers.get("Set-Cookie")
        sid = set_cookie.split(";", 1)[0].split("=", 1)[1] if set_cookie else "x" * 43
        cookie = f"theme=dark; {COOKIE}={sid}; lang=en"
        cpu = _server_cpu(proc.pid)
        if shutil.which("wrk") is None:
            args = [str(port), str(seconds), str(connections), cookie]
            rps: float = run_worker(["load", *args])["rps"]
            requests = rps * seconds
        else:
            out = subprocess.run(
                ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Cookie: {cookie}", url],
                capture_output=True,
                text=True,
                timeout=seconds + 30,
                check=True,
            ).stdout
            if "Non-2xx" in out or "Socket errors" in out:
                raise RuntimeError(f"wrk saw errors:\n{out}")
            found = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
            count = re.search(r"^\s*(\d+) requests in", out, re.M)
            if not found or not count:
                raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
            rps, requests = float(found.group(1)), int(count.group(1))
        cpu = _server_cpu(proc.pid) - cpu
        return {"rps": rps, "cpu": cpu / requests * 1e6 if requests else 0.0}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def have_uwsgi() -> bool:
    return _uwsgi() is not None


# -- section 7: frameworks; section 8: Redis -------------------------------------------


def worker_framework(
    framework: str, impl: str, n: int, repeats: int, redis_url: str
) -> dict[str, Any]:
    """Per request through ``framework``'s app with ``impl``'s sessions:
    "rw" an existing session read and written, "new" a new visitor."""
    import tempfile

    sys.path.insert(0, HERE)
    import frameworks

    with tempfile.TemporaryDirectory() as directory:
        app, name = frameworks.build(framework, impl, directory, redis_url or None)
        fresh = base_environ(None)
        if impl == "bare":
            existing = base_environ(None)
            existing["HTTP_COOKIE"] = f"theme=dark; {name}={'x' * 43}; lang=en"
        else:
            value = cookie_value(call(app, fresh.copy()), name)
            existing = base_environ(None)
            existing["HTTP_COOKIE"] = f"theme=dark; {name}={value}; lang=en"
        result = {
            "rw": time_requests(app, existing, _fitting(app, existing, n), repeats),
            "new": time_requests(app, fresh, _fitting(app, fresh, n), repeats),
        }
        close = getattr(app, "close", None)
        if close is not None:
            close()
        return result


def _fitting(app: Any, environ: dict[str, Any], n: int) -> int:
    """``n``, or fewer requests if ``n`` would take over half a second (a store
    that writes to disk on every request), at least 50."""
    probe = max(1, min(n, 50))
    seconds = time_requests(app, environ, probe, 1)
    return max(probe, min(n, int(0.5 / max(seconds, 1e-9))))


def worker_redis(url: str, n: int) -> dict[str, Any]:
    """Section 8, one round in one process: a bare round trip (PING), then
    our Redis middleware and Beaker's ``ext:redis`` taking turns on
    bench/redis_bench.py's three requests."""
    sys.path.insert(0, HERE)
    import redis_bench

    apps = {"wsgi_session": redis_bench.wsgi_session_app(url)}
    if have("beaker"):
        apps["beaker"] = redis_bench.beaker_app(url)
    result: dict[str, Any] = {"ping": redis_bench.ping_time(url, n)}
    for scenario in redis_bench.SCENARIOS:
        for name, app in apps.items():
            environ = redis_bench.scenario_environ(app, scenario)
            redis_bench.per_request(app, environ, max(1, n // 10))  # warm
            result[f"{scenario}/{name}"] = redis_bench.per_request(app, environ, n)
    result["ping_after"] = redis_bench.ping_time(url, n)
    apps["wsgi_session"].close()
    return result


# -- the orchestrator --------------------------------------------------------------------


def run_worker(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def alternate(impls: list[str], rounds: int) -> Iterable[tuple[int, str]]:
    """Round-robin order, rotated each round so no implementation always goes first."""
    for r in range(rounds):
        k = r % len(impls)
        for impl in impls[k:] + impls[:k]:
            yield r, impl


SETTINGS = {
    # requests per timed loop, loops per process, processes (rounds) per implementation
    # (lifetime: the 100,000 sessions of scenario 4 must all be alive when
    # RSS is read; the fill takes over a second on a busy machine)
    "full": {"n": 10_000, "repeats": 5, "rounds": 5, "sessions": 100_000, "lifetime": 6.0,
             "sweep": 1_000_000, "sweep_rounds": 3, "http_seconds": 3, "http_rounds": 5,
             "fw_n": 1000, "fw_repeats": 3, "fw_rounds": 5, "redis_n": 1000, "redis_rounds": 9},
    "quick": {"n": 200, "repeats": 2, "rounds": 1, "sessions": 1_000, "lifetime": 0.2,
              "sweep": 5_000, "sweep_rounds": 1, "http_seconds": 1, "http_rounds": 1,
              "fw_n": 20, "fw_repeats": 1, "fw_rounds": 1, "redis_n": 50, "redis_rounds": 1},
}  # fmt: skip

TITLES = {
    1: "existing session, read + write one key",
    2: "new visitor, session created and written",
    3: "request that never touches its session",
    4: "memory per live session (one small value), reclaimed after expiry",
    5: "GC: sweep of sessions with mixed lifetimes while 2 threads serve requests",
    6: "real HTTP: gunicorn gthread and uWSGI (1 worker, 4 threads) under wrk on loopback",
    7: "frameworks: per request, each adapter against its peers over the bare framework app",
    8: "Redis: per request against bare round trips (PING) and Beaker's ext:redis",
    9: "stores: memory, sqlite, redis, postgres per request (bench/stores.py)",
}
HEADERS = {"browser": "browser-like Cookie header", "one": "one-cookie header"}
LABELS = {"wsgi_session": "minimal", "wsgi_session+all": "all features"}


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def spread(values: list[float]) -> str:
    """The range of a figure's rounds, in µs."""
    return f"{min(values) * 1e6:.2f}-{max(values) * 1e6:.2f}"


class Targets:
    """Issue 13's table: a row per target with its measure, goal and verdict."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, row: str, measured: str, goal: str, met: bool | None) -> None:
        self.rows.append((row, measured, goal, met))

    def print(self) -> None:
        print("Issue 13 targets (ratios measured side by side in this run)")
        width = max((len(r[0]) for r in self.rows), default=10)
        mwidth = max((len(r[1]) for r in self.rows), default=10)
        for row, measured, goal, met in self.rows:
            verdict = "-" if met is None else _verdict(met)
            print(f"  {row:<{width}}  {measured:<{mwidth}}  goal {goal}: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, for tests")
    parser.add_argument("-s", "--scenarios", default="1,2,3,4,5,6,7,8,9", help="e.g. 1,2,3")
    parser.add_argument("--rounds", type=int, help="processes per implementation")
    parser.add_argument("--gc-batch", type=int, help="MemoryProvider gc_batch for scenario 5")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker)

    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    if args.rounds:
        cfg["rounds"] = cfg["fw_rounds"] = cfg["redis_rounds"] = args.rounds
    wanted = {int(s) for s in args.scenarios.split(",") if s.strip()}
    beaker = have("beaker")
    peers = ["wsgi_session", "wsgi_session+all", *(["beaker"] if beaker else [])]
    raw: dict[str, Any] = {"settings": cfg, "machine": machine(), "results": {}}
    print(f"wsgi_session benchmark, {raw['machine']['date']}")
    print(f"machine: {raw['machine']['summary']}")
    print(f"versions: {raw['machine']['versions']}")
    print(f"load average at the start: {raw['machine']['load']}")
    if not beaker:
        print("Beaker is not installed (pip install -e '.[bench]'): its columns are skipped")
    print("wsgi_session minimal: hash_ids=False, no user_key; all features: hash_ids=True,")
    print("user_key set and a user in every session, a per-session lifetime (set_lifetime),")
    print("metrics (always on)")
    print()
    targets = Targets()
    started = time.monotonic()

    with _redis_for(wanted) as redis_url:
        for scenario in (1, 2, 3):
            if scenario in wanted:
                _latency_section(scenario, cfg, peers, beaker, raw, targets)
        if 4 in wanted:
            _memory_section(cfg, peers, beaker, raw, targets)
        if 5 in wanted:
            _sweep_section(cfg, args.gc_batch, beaker, raw, targets)
        if 6 in wanted:
            _http_section(cfg, beaker, raw, targets)
        if 7 in wanted:
            _frameworks_section(cfg, redis_url, raw, targets)
        if 8 in wanted:
            _redis_section(cfg, redis_url, raw, targets)
    if 9 in wanted:
        _stores_section(args.quick, raw)

    minutes, secs = divmod(int(time.monotonic() - started), 60)
    print(f"load average at the end: {_load()}; the run took {minutes} min {secs} s")
    print()
    targets.print()
    raw["targets"] = targets.rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0


def _latency_section(
    scenario: int,
    cfg: dict[str, Any],
    peers: list[str],
    beaker: bool,
    raw: dict[str, Any],
    targets: Targets,
) -> None:
    print(f"{scenario}. {TITLES[scenario]}")
    headers = ["browser"] if scenario == 3 else ["browser", "one"]
    impls = [*peers, "bare"]
    for header in headers:
        samples: dict[str, list[float]] = {i: [] for i in impls}
        for _, impl in alternate(impls, cfg["rounds"]):
            args = [str(scenario), impl, header, str(cfg["n"]), str(cfg["repeats"])]
            samples[impl].append(run_worker(["latency", *args])["seconds"])
        med = {i: statistics.median(v) for i, v in samples.items()}
        key = str(scenario) if header == "browser" else f"{scenario}/one"
        raw["results"][key] = {"samples": samples, "median": med}
        bare = med["bare"]
        if scenario != 3:
            print(f"   {HEADERS[header]}:")
        figures = [f"bare app {us(bare)} ({spread(samples['bare'])})"]
        if beaker:
            figures.append(f"Beaker {us(med['beaker'])} ({spread(samples['beaker'])})")
        print("   " + " | ".join(figures))
        for impl, label in LABELS.items():
            ws = med[impl]
            line = f"   wsgi_session, {label}: {us(ws)} ({spread(samples[impl])})"
            line += f", overhead {us(ws - bare)}"
            if beaker:
                line += f", Beaker/wsgi_session {med['beaker'] / ws:.1f}x"
            print(line)
            if scenario == 3:
                over = ws - bare
                extra = f" (Beaker +{(med['beaker'] - bare) * 1e6:.2f} µs)" if beaker else ""
                targets.add(
                    f"3 untouched request, {label}",
                    f"+{over * 1e6:.2f} µs over the bare app{extra}",
                    "<= +0.4 µs",
                    over <= 0.4e-6,
                )
            elif beaker:
                ratio = med["beaker"] / ws
                goal = 8 if (scenario == 1 and header == "one") else 10
                what = "existing session, read + write" if scenario == 1 else "new visitor"
                targets.add(
                    f"{scenario} {what}, {header} header, {label}",
                    f"{ratio:.1f}x Beaker ({us(ws)} vs {us(med['beaker'])})",
                    f">= {goal}x",
                    ratio >= goal,
                )
    print()


def _memory_section(
    cfg: dict[str, Any], peers: list[str], beaker: bool, raw: dict[str, Any], targets: Targets
) -> None:
    print(f"4. {TITLES[4]}")
    n, lifetime = cfg["sessions"], cfg["lifetime"]
    interval = min(lifetime, 1.0)
    mem: dict[str, dict[str, Any]] = {}
    for _, impl in alternate(peers, 1):
        mem[impl] = run_worker(["memory", impl, str(n), str(lifetime), str(interval)])
    raw["results"]["4"] = mem
    for impl, res in mem.items():
        print(
            f"   {LABELS.get(impl, impl):<14} {res['bytes_per_session']:.0f} B/session over"
            f" {n:,} sessions; {res['reclaimed']:.0%} reclaimed two GC intervals after expiry"
            f" ({res['left_after_expiry']:,} of {res['held']:,} still held)"
        )
    goal = 280.0
    if beaker:
        goal = min(goal, mem["beaker"]["bytes_per_session"] / 2)
    for impl, label in LABELS.items():
        size = mem[impl]["bytes_per_session"]
        versus = f" (Beaker {mem['beaker']['bytes_per_session']:.0f} B)" if beaker else ""
        # Sessions that expired during the fill would make the figure too low.
        valid = mem[impl]["held"] >= n
        note = "" if valid else f" INVALID: only {mem[impl]['held']:,} of {n:,} held"
        targets.add(
            f"4 memory per session, {label}",
            f"{size:.0f} B{versus}; {mem[impl]['reclaimed']:.0%} reclaimed{note}",
            f"<= {goal:.0f} B (280 B and half of Beaker's)",
            valid and size <= goal,
        )
    print()


def _sweep_section(
    cfg: dict[str, Any], gc_batch: int | None, beaker: bool, raw: dict[str, Any], targets: Targets
) -> None:
    print(f"5. {TITLES[5]}")
    runs = []
    batch = [] if gc_batch is None else [str(gc_batch)]
    for _ in range(cfg["sweep_rounds"]):
        runs.append(run_worker(["sweep", str(cfg["sweep"]), "2", *batch]))
    raw["results"]["5"] = runs
    m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"   {int(m['held']):,} sessions (idle a minute to 30 days, some with a deadline, a"
        f" third used again), {int(m['dead']):,} of them dead"
    )
    print(
        f"   {int(m['removed']):,} swept in {m['sweep_seconds']:.2f} s"
        f" (gc_batch={int(m['gc_batch'])}, {int(m['batches'])} lock holds);"
        f" longest hold {ms(m['max_hold'])} (median hold {ms(m['median_hold'])});"
        f" longest per run {', '.join(ms(r['max_hold']) for r in runs)}"
    )
    print(
        f"   CPU time of the sweeping thread per hold (without the waits for a CPU that a busy"
        f" machine adds): longest {ms(m['max_hold_cpu'])}, median {ms(m['median_hold_cpu'])}"
    )
    print(
        f"   requests during the sweep: {int(m['requests_during']):,}, worst "
        f"{ms(m['max_latency_during'])}, p99 {ms(m['p99_latency_during'])}"
        f" (worst before the sweep: {ms(m['max_latency_outside'])})"
    )
    if beaker:
        print("   Beaker's memory backend has no sweep: expired sessions stay (see 4)")
    targets.add(
        "5 sweep, longest lock hold (mixed lifetimes)",
        f"{ms(m['max_hold'])} over {int(m['held']):,} sessions (CPU"
        f" {ms(m['max_hold_cpu'])}; worst request {ms(m['max_latency_during'])})",
        "<= 1 ms",
        m["max_hold"] <= 0.001,
    )
    print()


def _http_section(cfg: dict[str, Any], beaker: bool, raw: dict[str, Any], targets: Targets) -> None:
    print(f"6. {TITLES[6]}")
    if shutil.which("wrk") is None:
        print("   (wrk is not installed: loaded by a Python client instead, slower)")
    servers = []
    if have("gunicorn"):
        servers.append("gunicorn")
    else:
        print("   gunicorn: skipped (not installed)")
    if have_uwsgi():
        servers.append("uwsgi")
    else:
        print("   uWSGI: skipped (no uwsgi built for Python, nor one with the python3 plugin)")
    print("   +µs: what a request costs more than the bare app's, from the throughputs")
    print("   (1/req/s, same server, same 4 threads and 4 connections); and the server's")
    print("   CPU per request (from /proc, all its processes and threads)")
    for server in servers:
        # Debian's uWSGI runs its own Python: Beaker only from a venv of it.
        same_python = server == "gunicorn" or len(_uwsgi() or []) == 1 or bool(_uwsgi_venv())
        if beaker and not same_python:
            print(
                "   uWSGI: Beaker skipped (uWSGI's own Python has no venv with it: "
                "/usr/bin/python3 -m venv .venv && .venv/bin/pip install -e '.[bench]')"
            )
        impls = ["wsgi_session", *(["beaker"] if beaker and same_python else []), "bare"]
        rps: dict[str, list[float]] = {i: [] for i in impls}
        cpu: dict[str, list[float]] = {i: [] for i in impls}
        for _, impl in alternate(impls, cfg["http_rounds"]):
            done = http_round(server, impl, cfg["http_seconds"], 4)
            rps[impl].append(done["rps"])
            cpu[impl].append(done["cpu"])
        med = {i: statistics.median(v) for i, v in rps.items()}
        med_cpu = {i: statistics.median(v) for i, v in cpu.items()}
        added = {i: 1e6 / med[i] - 1e6 / med["bare"] for i in impls}
        raw["results"][f"6/{server}"] = {
            "samples": rps, "median": med, "added_us": added,
            "cpu_samples": cpu, "cpu_median": med_cpu,
        }  # fmt: skip
        share = med["wsgi_session"] / med["bare"]
        line = f"   {server}: bare app {med['bare']:,.0f} req/s ({1e6 / med['bare']:.1f} µs)"
        line += f" | wsgi_session {med['wsgi_session']:,.0f} req/s ({share:.1%} of bare,"
        line += f" {added['wsgi_session']:+.1f} µs)"
        if "beaker" in med:
            line += f" | Beaker {med['beaker']:,.0f} req/s ({med['beaker'] / med['bare']:.1%},"
            line += f" {added['beaker']:+.1f} µs)"
        print(line)
        ranges = ", ".join(f"{i} {min(v):,.0f}-{max(v):,.0f}" for i, v in rps.items())
        print(f"      rounds: {ranges}")
        if med_cpu["bare"]:
            base = med_cpu["bare"]
            costs = ", ".join(f"{i} {med_cpu[i]:.1f} ({med_cpu[i] - base:+.1f})" for i in impls)
            print(f"      server CPU per request (µs, all its threads): {costs}")
        measured = f"{share:.1%} of bare ({added['wsgi_session']:+.1f} µs a request"
        if med_cpu["bare"]:
            measured += f"; server CPU {med_cpu['wsgi_session'] - med_cpu['bare']:+.1f} µs"
        targets.add(
            f"6 {server} gthread + wrk" if server == "gunicorn" else "6 uWSGI threads + wrk",
            measured + ")",
            ">= 93% of bare",
            share >= 0.93,
        )
    print()


@contextlib.contextmanager
def _redis_for(wanted: set[int]) -> Iterator[str]:
    """A private redis-server for sections 7 and 8 (as bench/redis_bench.py
    starts one), or "" when it cannot run here."""
    if not wanted & {7, 8}:
        yield ""
        return
    if shutil.which("redis-server") is None or not have("redis"):
        print("Redis: skipped (needs redis-server on PATH and redis-py)")
        yield ""
        return
    sys.path.insert(0, HERE)
    from redis_bench import redis_server

    with redis_server() as url:
        yield url


def _frameworks_section(
    cfg: dict[str, Any], redis_url: str, raw: dict[str, Any], targets: Targets
) -> None:
    sys.path.insert(0, HERE)
    import frameworks

    print(f"7. {TITLES[7]}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for framework, impls in frameworks.IMPLS.items():
        runnable = []
        for impl in impls:
            why = frameworks.missing(framework, impl, redis_url or None)
            if why is None:
                runnable.append(impl)
            else:
                print(f"   {framework} {impl}: skipped ({why})")
        if "bare" not in runnable:
            continue
        samples: dict[str, dict[str, list[float]]] = {i: {"rw": [], "new": []} for i in runnable}
        for _, impl in alternate(runnable, cfg["fw_rounds"]):
            args = [framework, impl, str(cfg["fw_n"]), str(cfg["fw_repeats"]), redis_url]
            res = run_worker(["framework", *args])
            for kind in ("rw", "new"):
                samples[impl][kind].append(res[kind])
        med = {i: {k: statistics.median(v) for k, v in s.items()} for i, s in samples.items()}
        results[framework] = med
        raw["results"][f"7/{framework}"] = {"samples": samples, "median": med}
        bare = med["bare"]
        print(f"   {framework} (bare app: rw {us(bare['rw'])}, new {us(bare['new'])})")
        print(f"      {'sessions':28} {'existing, read + write':>30} {'new visitor':>30}")
        for impl in runnable[1:]:
            cells = [
                f"{us(med[impl][k])} (+{(med[impl][k] - bare[k]) * 1e6:.1f})" for k in ("rw", "new")
            ]
            print(f"      {impl:28} {cells[0]:>30} {cells[1]:>30}")
    for framework, ours, peer, store in [*frameworks.RACES, *[
        (f, o, p, "") for f, o, p in frameworks.CLIENT_SIDE
    ]]:  # fmt: skip
        med = results.get(framework, {})
        if ours not in med or peer not in med:
            continue
        ratios = {k: med[peer][k] / med[ours][k] for k in ("rw", "new")}
        over = {
            k: (med[peer][k] - med["bare"][k]) / (med[ours][k] - med["bare"][k]) for k in ratios
        }
        measured = (
            f"rw {ratios['rw']:.2f}x, new {ratios['new']:.2f}x"
            f" (over the bare app: {over['rw']:.2f}x, {over['new']:.2f}x)"
        )
        if store:
            targets.add(
                f"7 {framework}: {ours} vs {peer} ({store})",
                measured,
                "ahead (> 1x)",
                min(ratios.values()) > 1,
            )
        else:
            targets.add(f"7 {framework}: {ours} vs {peer} (client side)", measured, "none", None)
    raw["results"]["7"] = results
    print()


def _redis_section(
    cfg: dict[str, Any], redis_url: str, raw: dict[str, Any], targets: Targets
) -> None:
    print(f"8. {TITLES[8]}")
    if not redis_url:
        print("   skipped (no private redis-server)")
        print()
        return
    runs = [
        run_worker(["redis", redis_url, str(cfg["redis_n"])]) for _ in range(cfg["redis_rounds"])
    ]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    raw["results"]["8"] = {"runs": runs, "median": med}
    ping = med["ping"]
    print(f"   a bare round trip (PING on a held connection): {us(ping)}")
    names = {"rw": "read + write", "read": "read only", "new": "new session"}
    trips = {"rw": 2, "read": 1, "new": 1}
    for scenario, what in names.items():
        ours = med[f"{scenario}/wsgi_session"]
        line = f"   {what:13} wsgi_session {us(ours)} = {ours / (trips[scenario] * ping):.2f}x"
        line += f" {trips[scenario]} round trip{'s' if trips[scenario] > 1 else ''}"
        if f"{scenario}/beaker" in med:
            theirs = med[f"{scenario}/beaker"]
            line += f" | Beaker {us(theirs)} ({theirs / ours:.2f}x ours)"
        print(line)
    for scenario in ("rw", "read"):
        ours = med[f"{scenario}/wsgi_session"]
        floor = trips[scenario] * ping
        targets.add(
            f"8 Redis {names[scenario]}",
            f"{ours / floor:.2f}x {trips[scenario]} bare round trip(s) ({us(ours)} vs {us(floor)})",
            "<= 1.2x",
            ours <= 1.2 * floor,
        )
    flask = raw["results"].get("7", {}).get("flask", {})
    if "wsgi_session/redis" in flask and "flask-session/redis" in flask:
        ours_f, theirs_f = flask["wsgi_session/redis"], flask["flask-session/redis"]
        ratios = {k: theirs_f[k] / ours_f[k] for k in ("rw", "new")}
        print(
            f"   Flask over Redis (section 7): Flask-Session/wsgi_session rw {ratios['rw']:.2f}x,"
            f" new {ratios['new']:.2f}x"
        )
        targets.add(
            "8 Redis vs Flask-Session's Redis interface",
            f"rw {ratios['rw']:.2f}x, new {ratios['new']:.2f}x",
            "ahead (> 1x)",
            min(ratios.values()) > 1,
        )
    print()


def _stores_section(quick: bool, raw: dict[str, Any]) -> None:
    print(f"9. {TITLES[9]}")
    argv = [
        sys.executable,
        os.path.join(HERE, "stores.py"),
        *(["--quick", "-p", "2"] if quick else []),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench/stores.py failed:\n{done.stderr}")
    for line in done.stdout.splitlines():
        print(f"   {line}" if line else "")
    raw["results"]["9"] = done.stdout
    print()


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import wsgi_session

    found = [f"wsgi_session {wsgi_session.__version__}"]
    for name in ("beaker", "flask", "flask-session", "cachelib", "django", "pyramid",
                 "pyramid_session_redis", "redis", "psycopg", "gunicorn"):  # fmt: skip
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    for tool in ("redis-server", "uwsgi", "wrk"):
        if shutil.which(tool):
            out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
            match = re.search(r"\d+\.\d+(\.\d+)?", out.stdout or out.stderr)
            found.append(f"{tool} {match.group(0) if match else '?'}")
    return ", ".join(found)


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    summary = (
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": summary,
        "versions": _versions(),
        "load": _load(),
    }


def _worker(argv: list[str]) -> int:
    kind, *rest = argv
    if kind == "latency":
        res = worker_latency(int(rest[0]), rest[1], rest[2], int(rest[3]), int(rest[4]))
    elif kind == "memory":
        res = worker_memory(rest[0], int(rest[1]), float(rest[2]), float(rest[3]))
    elif kind == "load":
        res = worker_load(int(rest[0]), float(rest[1]), int(rest[2]), rest[3])
    elif kind == "sweep":
        res = worker_sweep(int(rest[0]), int(rest[1]), int(rest[2]) if len(rest) > 2 else None)
    elif kind == "framework":
        res = worker_framework(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
    elif kind == "redis":
        res = worker_redis(rest[0], int(rest[1]))
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
