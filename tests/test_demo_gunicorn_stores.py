"""The demo under a real ``gunicorn -w 3`` on each shared store: one client's
counter and login go on, whichever worker process serves it (each worker
exits after a few requests, so many processes serve one client)."""

from __future__ import annotations

import http.cookiejar
import importlib.util
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require

pytest_plugins = ["redis_server", "postgres_server"]
pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
# Each worker exits after this many requests, so a run of N requests is
# served by at least N / MAX_REQUESTS processes: with the memory provider
# the counter would start over.
MAX_REQUESTS = 8
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


def _store_env(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if store == "redis":
        return {"WSGI_SESSION_REDIS_URL": request.getfixturevalue("redis_url")}
    if store == "postgres":
        server = request.getfixturevalue("postgres_server")
        request.addfinalizer(lambda: _drop_demo_table(server.dsn))
        return {"WSGI_SESSION_POSTGRES_DSN": server.dsn}
    return {"WSGI_SESSION_SQLITE_PATH": str(tmp_path / "sessions.db")}


def _drop_demo_table(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS wsgi_sessions")  # the demo's default table


@pytest.fixture(
    params=[("redis", False), ("postgres", True), ("sqlite", True)],
    ids=["redis", "postgres-preload", "sqlite-preload"],
)
def gunicorn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store, preload = request.param
    require(
        "gunicorn",
        "WSGI_SESSION_REQUIRE_GUNICORN",
        importlib.util.find_spec("gunicorn") is not None,
        "gunicorn is not installed (pip install -e '.[test]')",
    )
    access_log = tmp_path / "access.log"
    output = tmp_path / "gunicorn.out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "WSGI_SESSION_PROVIDER": store,
        **_store_env(store, request, tmp_path),
    }
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn",
                "-w", "3",
                *(["--preload"] if preload else []),  # the provider made before the fork
                "--max-requests", str(MAX_REQUESTS),
                "--max-requests-jitter", "0",
                "-b", "127.0.0.1:0",  # the port gunicorn picks is read from its log
                "--access-logfile", str(access_log),
                "--access-logformat", "%(p)s %(s)s %(U)s",
                "--chdir", str(ROOT),
                "demo_app:app",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30  # a loaded machine is slow
        while not (listening := LISTENING.search(output.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{output.read_text()}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{listening.group(1)}", access_log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_counter_and_login_hold_across_gunicorn_workers(gunicorn: tuple[str, Path]) -> None:
    url, access_log = gunicorn
    browser = urllib.request.build_opener(
        urllib.request.ProxyHandler({}),  # loopback only, whatever the environment says
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )

    def visit(path: str = "/", form: dict[str, str] | None = None) -> str:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        with browser.open(url + path, data, timeout=30) as response:
            return response.read().decode()

    def csrf(page: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    def visits(page: str) -> int:
        match = re.search(r"Visits: (\d+)", page)
        assert match, page
        return int(match.group(1))

    for n in range(1, 11):
        page = visit()
        assert visits(page) == n
    page = visit("/login", {"name": "demo", "csrf_token": csrf(page)})  # regenerate, redirect
    assert "Logged in as demo" in page and visits(page) == 11
    for n in range(12, 21):
        page = visit()
        assert visits(page) == n and "Logged in as demo" in page
    page = visit("/logout", {"csrf_token": csrf(page)})
    assert "Not logged in" in page and visits(page) == 1

    requests = 23  # 21 pages and 2 redirects, each logged with its worker's pid
    deadline = time.monotonic() + 5
    while len(lines := access_log.read_text().splitlines()) < requests:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    served = Counter(line.split()[0] for line in lines)
    assert max(served.values()) <= MAX_REQUESTS
    assert len(served) >= math.ceil(requests / MAX_REQUESTS), served
