"""wsgi_session against Beaker and the bare app, side by side, in one run.

    python bench/run.py              # the full run (about two minutes)
    python bench/run.py --quick      # a tiny run (seconds; the test suite uses it)
    python bench/run.py -s 1,2,3     # only some scenarios

Every measurement runs in a fresh subprocess; the implementations alternate
round by round, and the figures printed are medians over the rounds. See
bench/README.md for what each scenario does and the figures measured.
Beaker (``pip install -e '.[bench]'``), gunicorn and wrk are optional: what
is missing is reported and skipped.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
COOKIE = "session_id"
BEAKER_KEY = "beaker.session"
WS_KEY = "wsgi_session.session"

# -- the apps ------------------------------------------------------------------

BODY = [b"ok"]


def _rw_app(key: str) -> Callable[..., Iterable[bytes]]:
    """Scenarios 1 and 2: read one key and write it back."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        session = environ[key]
        session["n"] = session.get("n", 0) + 1
        # A new header list per response: Beaker appends to it in place.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return BODY

    return app


def untouched_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Scenario 3 (and the bare app everywhere): never touches a session."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return BODY


def have_beaker() -> bool:
    try:
        import beaker  # noqa: F401
    except ImportError:
        return False
    return True


def build(impl: str, app: Callable[..., Iterable[bytes]], **options: Any) -> Any:
    """Wrap ``app`` in ``impl``'s middleware (memory store, idle timeout)."""
    lifetime = options.pop("lifetime", 3600)
    if impl == "bare":
        return app
    if impl == "wsgi_session":
        from wsgi_session import SessionMiddleware

        options.setdefault("gc_interval", 60)
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


def base_environ(cookie: str | None = None) -> dict[str, Any]:
    from wsgiref.util import setup_testing_defaults

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
    }
    setup_testing_defaults(environ)
    if cookie is not None:
        # Another site cookie around ours, as browsers send them.
        environ["HTTP_COOKIE"] = f"theme=dark; {COOKIE}={cookie}; lang=en"
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


def cookie_value(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name.lower() == "set-cookie" and value.strip().startswith(COOKIE + "="):
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


def worker_latency(scenario: int, impl: str, n: int, repeats: int) -> dict[str, Any]:
    if scenario == 3:
        app = build(impl, untouched_app)
        return {"seconds": time_requests(app, base_environ(), n, repeats)}
    key = BEAKER_KEY if impl == "beaker" else WS_KEY
    if impl == "bare":
        app = untouched_app
        environ = base_environ("x" * 43)
    else:
        app = build(impl, _rw_app(key))
        if scenario == 1:
            sid = cookie_value(call(app, base_environ()))
            environ = base_environ(sid)
        else:
            environ = base_environ()
    return {"seconds": time_requests(app, environ, n, repeats)}


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker_memory(impl: str, n: int, lifetime: float, interval: float) -> dict[str, Any]:
    """Scenario 4: RSS growth per live session, then what expiry gives back."""
    key = BEAKER_KEY if impl == "beaker" else WS_KEY
    options: dict[str, Any] = {"lifetime": lifetime}
    if impl == "wsgi_session":
        options["gc_interval"] = interval
    else:
        lifetime = max(1, math.ceil(lifetime))
    app = build(impl, _rw_app(key), **options)
    environ = base_environ()
    count: Callable[[], int]
    if impl == "wsgi_session":
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
    # intervals after that (and a little for the sweep itself to run).
    time.sleep(max(0.0, created_at + lifetime + 2 * interval + 0.05 - time.monotonic()))
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
    if impl == "wsgi_session":
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
        self._t0 = 0.0

    def acquire(self, *args: Any) -> bool:
        ok: bool = self._lock.acquire(*args)
        if ok and threading.get_ident() == self.gc_thread:
            self._t0 = time.perf_counter()
        return ok

    def release(self) -> None:
        if threading.get_ident() == self.gc_thread:
            self.holds.append(time.perf_counter() - self._t0)
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def worker_sweep(n: int, threads: int, gc_batch: int | None) -> dict[str, Any]:
    """Scenario 5: sweep ``n`` expired sessions while ``threads`` serve requests."""
    import secrets

    from wsgi_session import SessionMiddleware
    from wsgi_session.providers.memory import MemoryProvider

    options = {"max_sessions": 2 * n + 1000}
    if gc_batch is not None:
        options["gc_batch"] = gc_batch
    provider = MemoryProvider(**options)
    lock = _TimedLock(provider._mutex)
    provider._mutex = lock  # type: ignore[assignment]
    long_ago = time.time() - 3600
    data = {"n": 1}
    create = provider.create
    token = secrets.token_urlsafe
    for _ in range(n):
        create(token(32), data, long_ago, idle=60.0, deadline=None)
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
        result["removed"] = provider.gc(time.time())
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
        gc_batch=provider.gc_batch,
        batches=len(lock.holds),
        max_hold=max(lock.holds),
        median_hold=statistics.median(lock.holds),
        requests_during=len(during),
        max_latency_during=max(during) if during else 0.0,
        p99_latency_during=_quantile(during, 0.99),
        max_latency_outside=max(before) if before else 0.0,
        left=len(provider) - threads,
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
            raise RuntimeError("gunicorn exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gunicorn did not start listening")


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


def http_round(impl: str, seconds: float, connections: int) -> float:
    """Requests/s of gunicorn serving ``impl`` (bench/http_app.py) under wrk
    (or, without wrk, the Python load generator above)."""
    port = _free_port()
    env = dict(os.environ, BENCH_HTTP_IMPL=impl)
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--workers", "1", "--worker-class", "gthread", "--threads", "4",
        "--bind", f"127.0.0.1:{port}", "--chdir", HERE, "--log-level", "warning",
        "http_app:app",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            set_cookie = response.headers.get("Set-Cookie")
        sid = set_cookie.split(";", 1)[0].split("=", 1)[1] if set_cookie else "x" * 43
        cookie = f"theme=dark; {COOKIE}={sid}; lang=en"
        if shutil.which("wrk") is None:
            args = [str(port), str(seconds), str(connections), cookie]
            rps: float = run_worker(["load", *args])["rps"]
            return rps
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "-H",
                f"Cookie: {cookie}",
                url,
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                if "Non-2xx" in out or "Socket errors" in out:
                    raise RuntimeError(f"wrk saw errors:\n{out}")
                return float(line.split()[1])
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
    "full": {"n": 10_000, "repeats": 5, "rounds": 5, "sessions": 100_000, "lifetime": 1.0,
             "sweep": 1_000_000, "sweep_rounds": 3, "http_seconds": 4, "http_rounds": 3},
    "quick": {"n": 200, "repeats": 2, "rounds": 1, "sessions": 1_000, "lifetime": 0.2,
              "sweep": 5_000, "sweep_rounds": 1, "http_seconds": 1, "http_rounds": 1},
}  # fmt: skip

TITLES = {
    1: "existing session, read + write one key",
    2: "new visitor, session created and written",
    3: "request that never touches its session",
    4: "memory per live session (one small value), reclaimed after expiry",
    5: "GC: sweep of expired sessions while 2 threads serve requests",
    6: "real HTTP: gunicorn (1 worker, 4 threads) under wrk on loopback",
}


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run, for tests")
    parser.add_argument("-s", "--scenarios", default="1,2,3,4,5,6", help="e.g. 1,2,3")
    parser.add_argument("--rounds", type=int, help="processes per implementation")
    parser.add_argument("--gc-batch", type=int, help="MemoryProvider gc_batch for scenario 5")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args.worker)

    cfg = dict(SETTINGS["quick" if args.quick else "full"])
    if args.rounds:
        cfg["rounds"] = args.rounds
    wanted = {int(s) for s in args.scenarios.split(",") if s.strip()}
    beaker = have_beaker()
    peers = ["wsgi_session", "beaker"] if beaker else ["wsgi_session"]
    raw: dict[str, Any] = {"settings": cfg, "machine": machine(), "results": {}}
    print(f"wsgi_session benchmark, {raw['machine']['date']}")
    print(f"machine: {raw['machine']['summary']}")
    if not beaker:
        print("Beaker is not installed (pip install -e '.[bench]'): its columns are skipped")
    print()
    ok = True

    for scenario in (1, 2, 3):
        if scenario not in wanted:
            continue
        impls = [*peers, "bare"]
        samples: dict[str, list[float]] = {i: [] for i in impls}
        for _, impl in alternate(impls, cfg["rounds"]):
            res = run_worker(["latency", str(scenario), impl, str(cfg["n"]), str(cfg["repeats"])])
            samples[impl].append(res["seconds"])
        med = {i: statistics.median(v) for i, v in samples.items()}
        raw["results"][str(scenario)] = {"samples": samples, "median": med}
        ws, bare = med["wsgi_session"], med["bare"]
        print(f"{scenario}. {TITLES[scenario]}")
        line = f"   wsgi_session {us(ws)}"
        if beaker:
            line += f" | Beaker {us(med['beaker'])} | Beaker/wsgi_session {med['beaker'] / ws:.1f}x"
        line += f" | bare app {us(bare)} (overhead {us(ws - bare)}"
        line += f", Beaker {us(med['beaker'] - bare)})" if beaker else ")"
        print(line)
        if scenario == 3:
            print(f"   goal: overhead <= 1 µs: {_verdict(ws - bare <= 1e-6)}")
        elif beaker:
            print(f"   goal: >= 8x faster than Beaker: {_verdict(med['beaker'] / ws >= 8)}")

    if 4 in wanted:
        print(f"4. {TITLES[4]}")
        n, lifetime = cfg["sessions"], cfg["lifetime"]
        mem: dict[str, dict[str, Any]] = {}
        for _, impl in alternate(peers, 1):
            mem[impl] = run_worker(["memory", impl, str(n), str(lifetime), str(lifetime)])
        raw["results"]["4"] = mem
        for impl, res in mem.items():
            print(
                f"   {impl:<12} {res['bytes_per_session']:.0f} B/session over {n:,} sessions;"
                f" {res['reclaimed']:.0%} reclaimed two GC intervals after expiry"
                f" ({res['left_after_expiry']:,} of {res['held']:,} still held)"
            )
        ws = mem["wsgi_session"]
        goal = "   goal: "
        if beaker:
            fewer = ws["bytes_per_session"] < mem["beaker"]["bytes_per_session"]
            goal += f"fewer bytes than Beaker: {_verdict(fewer)}; "
        print(f"{goal}100% reclaimed within two GC intervals ({lifetime:g} s each): "
              f"{_verdict(ws['reclaimed'] == 1.0)}")  # fmt: skip

    if 5 in wanted:
        print(f"5. {TITLES[5]}")
        runs = []
        batch = [] if args.gc_batch is None else [str(args.gc_batch)]
        for _ in range(cfg["sweep_rounds"]):
            runs.append(run_worker(["sweep", str(cfg["sweep"]), "2", *batch]))
        raw["results"]["5"] = runs
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"   {int(m['removed']):,} expired sessions swept in {m['sweep_seconds']:.2f} s"
            f" (gc_batch={int(m['gc_batch'])}, {int(m['batches'])} lock holds);"
            f" longest hold {ms(m['max_hold'])} (median hold {ms(m['median_hold'])})"
        )
        print(
            f"   requests during the sweep: {int(m['requests_during']):,}, worst "
            f"{ms(m['max_latency_during'])}, p99 {ms(m['p99_latency_during'])}"
            f" (worst before the sweep: {ms(m['max_latency_outside'])})"
        )
        if beaker:
            print("   Beaker's memory backend has no sweep: expired sessions stay (see 4)")
        print(f"   goal: no hold over 2 ms: {_verdict(m['max_hold'] <= 0.002)}; no request over"
              f" 5 ms: {_verdict(m['max_latency_during'] <= 0.005)}"
              f"  (medians of {len(runs)} runs)")  # fmt: skip

    if 6 in wanted:
        print(f"6. {TITLES[6]}")
        try:
            import gunicorn  # noqa: F401
        except ImportError:
            print("   skipped: gunicorn is not installed")
        else:
            if shutil.which("wrk") is None:
                print("   (wrk is not installed: loaded by a Python client instead, slower)")
            impls = [*peers, "bare"]
            rps: dict[str, list[float]] = {i: [] for i in impls}
            for _, impl in alternate(impls, cfg["http_rounds"]):
                rps[impl].append(http_round(impl, cfg["http_seconds"], 4))
            med = {i: statistics.median(v) for i, v in rps.items()}
            raw["results"]["6"] = {"samples": rps, "median": med}
            line = f"   bare app {med['bare']:,.0f} req/s | wsgi_session {med['wsgi_session']:,.0f}"
            line += f" req/s ({med['wsgi_session'] / med['bare']:.1%} of bare)"
            if beaker:
                line += f" | Beaker {med['beaker']:,.0f} req/s ({med['beaker'] / med['bare']:.1%})"
            print(line)
            print(f"   goal: >= 90% of the bare app: "
                  f"{_verdict(med['wsgi_session'] / med['bare'] >= 0.9)}")  # fmt: skip

    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0 if ok else 1


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


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
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "summary": summary}


def _worker(argv: list[str]) -> int:
    kind, *rest = argv
    if kind == "latency":
        res = worker_latency(int(rest[0]), rest[1], int(rest[2]), int(rest[3]))
    elif kind == "memory":
        res = worker_memory(rest[0], int(rest[1]), float(rest[2]), float(rest[3]))
    elif kind == "load":
        res = worker_load(int(rest[0]), float(rest[1]), int(rest[2]), rest[3])
    elif kind == "sweep":
        res = worker_sweep(int(rest[0]), int(rest[1]), int(rest[2]) if len(rest) > 2 else None)
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
