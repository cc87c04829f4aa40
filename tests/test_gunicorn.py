"""The demo and the examples under a real gunicorn on a free loopback port.

Each server binds 127.0.0.1:0 and the test reads the port gunicorn chose from
its log, so parallel runs cannot collide. Every server is stopped (its whole
process group, if need be) when the test ends.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, ProxyHandler, Request, build_opener

import pytest
from conftest import require
from examples_common import EXAMPLES, ROOT

pytestmark = pytest.mark.server

TESTS = Path(__file__).resolve().parent
START_TIMEOUT = 30.0  # seconds for gunicorn to bind (a loaded CI machine is slow)
REQUEST_TIMEOUT = 30.0  # the first request also waits for the worker to import the app
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


@pytest.fixture(autouse=True)
def _needs_gunicorn() -> None:
    require(
        "gunicorn",
        "WSGI_SESSION_REQUIRE_GUNICORN",
        importlib.util.find_spec("gunicorn") is not None,
        "gunicorn is not installed (pip install -e '.[test]')",
    )


class Client:
    """A cookie-keeping HTTP client (never through a proxy: loopback only)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = CookieJar()
        self._opener = build_opener(ProxyHandler({}), HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self._opener.open(self.base_url + path, timeout=REQUEST_TIMEOUT) as response:
            return str(response.read().decode())

    def post(self, path: str, form: dict[str, str] | None = None) -> str:
        data = urlencode(form or {}).encode()
        with self._opener.open(self.base_url + path, data, timeout=REQUEST_TIMEOUT) as response:
            return str(response.read().decode())

    def cookie(self, name: str = "session_id") -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)


def csrf_of(page: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def get_with_cookie(url: str, cookie: str) -> str:
    """One GET sending exactly ``Cookie: session_id=<cookie>``."""
    request = Request(url, headers={"Cookie": f"session_id={cookie}"})
    with build_opener(ProxyHandler({})).open(request, timeout=REQUEST_TIMEOUT) as response:
        return str(response.read().decode())


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.base_url = f"http://127.0.0.1:{port}"

    def client(self) -> Client:
        return Client(self.base_url)


def _gunicorn_flags() -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    # gunicorn >= 24 opens a control socket at one fixed path per user:
    # parallel servers would fight over it.
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


@contextmanager
def gunicorn(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, log: Path
) -> Iterator[Server]:
    """Run ``gunicorn args...`` on a free loopback port until the block ends."""
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", "127.0.0.1:0",
        "--workers", "1",
        "--threads", "4",
        "--graceful-timeout", "3",
        *_gunicorn_flags(),
        *args,
    ]  # fmt: skip
    environ = {**os.environ, "WSGI_SESSION_PROVIDER": "memory", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers die with it
        )  # fmt: skip
    try:
        yield Server(proc, _wait_for_port(proc, log))
    finally:
        _stop(proc)


def _wait_for_port(proc: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = _LISTENING.search(log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"gunicorn did not start:\n{log.read_text(errors='replace')}", pytrace=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # the master stops its workers gracefully
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of its group still alive
    proc.wait(timeout=10)


# -- the demo -------------------------------------------------------------


@pytest.mark.parametrize("preload", [False, True], ids=["workers-load-app", "preload"])
def test_demo_keeps_a_session_across_requests(preload: bool, tmp_path: Path) -> None:
    flags = ["--preload"] if preload else []
    with gunicorn(*flags, "demo_app:app", log=tmp_path / "gunicorn.log") as server:
        browser = server.client()
        assert "Visits: 1" in browser.get("/")
        first = browser.cookie()
        assert first is not None
        page = browser.get("/")
        assert "Visits: 2" in page
        assert browser.cookie() == first

        page = browser.post("/login", {"name": "demo", "csrf_token": csrf_of(page)})
        assert "Logged in as demo" in page  # regenerated, then 303 to /
        assert "Visits: 3" in page
        logged_in = browser.cookie()
        assert logged_in is not None and logged_in != first

        stale = get_with_cookie(server.base_url + "/", first)  # the pre-login id is dead
        assert "Visits: 1" in stale
        assert "Not logged in" in stale

        page = browser.post("/logout", {"csrf_token": csrf_of(page)})  # destroy, 303 to /
        assert "Not logged in" in page
        assert "Visits: 1" in page
        assert browser.cookie() not in (None, first, logged_in)


def test_gc_thread_runs_in_the_forked_worker(tmp_path: Path) -> None:
    """With --preload the app (and its GC thread) start in the master; the
    worker must sweep expired sessions on its own, with no request to help."""
    env = {"WSGI_SESSION_MAX_LIFETIME": "1", "WSGI_SESSION_GC_INTERVAL": "0.2"}
    with gunicorn(
        "--preload", "--pythonpath", str(TESTS), "gc_probe_app:app",
        env=env, log=tmp_path / "gunicorn.log",
    ) as server:  # fmt: skip
        browsers = [server.client() for _ in range(3)]
        for browser in browsers:
            assert "Visits: 1" in browser.get("/")
        stats = _stats(server)
        assert stats["loaded_in"] == server.proc.pid  # the app was loaded in the master
        assert stats["pid"] != server.proc.pid  # and serves from a forked worker
        assert stats["gc_running"] is True
        assert 1 <= stats["sessions"] <= 3  # the first may expire already on a slow machine

        time.sleep(1.5)  # no requests: only the worker's GC thread can remove them
        stats = _stats(server)
        deadline = time.monotonic() + 10
        while stats["sessions"] and time.monotonic() < deadline:  # /stats touches no session
            time.sleep(0.2)
            stats = _stats(server)
        assert stats["sessions"] == 0
        assert stats["gc_running"] is True

        # The sessions are gone for their browsers too.
        assert "Visits: 1" in browsers[0].get("/")


def _stats(server: Server) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(server.client().get("/stats"))
    return result


# -- the examples ---------------------------------------------------------

EXAMPLE_COMMANDS = {
    "flask": ["flask_app:app"],
    "django": ["django_app:app"],
    "pyramid": ["pyramid_app:app"],
    "pyramid.ini": ["--paste", "pyramid.ini"],
}


@pytest.mark.parametrize("name", EXAMPLE_COMMANDS)
def test_example_under_gunicorn(name: str, tmp_path: Path) -> None:
    args = EXAMPLE_COMMANDS[name]
    with gunicorn(*args, cwd=EXAMPLES, log=tmp_path / "gunicorn.log") as server:
        browser = server.client()
        assert "Visits: 1" in browser.get("/")
        assert "Visits: 2" in browser.get("/")
        before = browser.cookie()
        page = browser.post("/login", {"user": "alice"})
        assert "Logged in as alice" in page
        assert "Visits: 3" in page
        assert browser.cookie() not in (None, before)
        page = browser.post("/logout")
        assert "Not logged in" in page
        assert "Visits: 1" in page
