"""Real WSGI servers for the tests: gunicorn and uWSGI on free loopback ports.

Each server binds 127.0.0.1:0 and the test reads the port the server chose
from its log, so parallel runs cannot collide. Every server runs in its own
process group and is stopped (the whole group, if need be) when its block
ends. The child imports this checkout first (PYTHONPATH), not an installed copy.

uWSGI comes from Debian (``uwsgi`` and ``uwsgi-plugin-python3``): an apt
binary needs no compiler, where PyPI's ``uwsgi`` compiles for a minute and
fails where there is no C toolchain. Its python3 plugin embeds Debian's
``/usr/bin/python3``, so it can load the packages of this test run only
when this run is that same Python (``bash .ci/run`` makes its venv from
it): pip picks dependencies by exact version (redis needs ``async_timeout``
below 3.11.3), so "3.11" is not enough. A ``uwsgi`` built for this Python
(PyPI's, in this venv) is used first when there is one.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
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

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
START_TIMEOUT = 30.0  # seconds for a server to bind and fork (a loaded CI machine is slow)
REQUEST_TIMEOUT = 30.0  # the first request may also wait for a worker to import the app


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


def get_with_cookie(url: str, cookie: str) -> str:
    """One GET sending exactly ``Cookie: session_id=<cookie>``."""
    request = Request(url, headers={"Cookie": f"session_id={cookie}"})
    with build_opener(ProxyHandler({})).open(request, timeout=REQUEST_TIMEOUT) as response:
        return str(response.read().decode())


def get_json(url: str, cookie: str | None = None, timeout: float = REQUEST_TIMEOUT) -> Any:
    """GET ``url`` with at most our one cookie; the JSON body and the
    session cookie the response set (or None)."""
    headers = {"Cookie": f"session_id={cookie}"} if cookie else {}
    opener = build_opener(ProxyHandler({}))
    with opener.open(Request(url, headers=headers), timeout=timeout) as response:
        body = json.loads(response.read().decode())
        set_cookie = response.headers.get_all("Set-Cookie") or []
    sid = None
    for header in set_cookie:
        name, _, rest = header.partition("=")
        if name.strip() == "session_id":
            sid = rest.split(";", 1)[0] or None
    return body, sid


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log

    def client(self) -> Client:
        return Client(self.base_url)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _child_env(env: dict[str, str] | None) -> dict[str, str]:
    # This checkout after the caller's own PYTHONPATH (which names it too, or
    # another copy under test), before any installed copy.
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(ROOT)) if p)
    return {**os.environ, "WSGI_SESSION_PROVIDER": "memory", **(env or {}), "PYTHONPATH": path}


@contextmanager
def _serve(
    command: list[str], *, cwd: Path, env: dict[str, str] | None, log: Path, listening: str
) -> Iterator[Server]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=_child_env(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers die with it
        )  # fmt: skip
    try:
        yield Server(proc, _wait_for_port(proc, log, re.compile(listening)), log)
    finally:
        _stop(proc)


def _wait_for_port(proc: subprocess.Popen[bytes], log: Path, listening: re.Pattern[str]) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = listening.search(log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"{proc.args[0]} did not start:\n{log.read_text(errors='replace')}", pytrace=False)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()  # the master stops its workers gracefully
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of its group still alive (a hung worker)
    proc.wait(timeout=10)


# -- gunicorn ---------------------------------------------------------------


def need_gunicorn() -> None:
    require(
        "gunicorn",
        "WSGI_SESSION_REQUIRE_GUNICORN",
        importlib.util.find_spec("gunicorn") is not None,
        "gunicorn is not installed (pip install -e '.[test]')",
    )


def _gunicorn_flags() -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    # gunicorn >= 24 opens a control socket at one fixed path per user:
    # parallel servers would fight over it.
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


@contextmanager
def gunicorn(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    log: Path,
    workers: int = 1,
    threads: int = 4,
) -> Iterator[Server]:
    """Run ``gunicorn args...`` on a free loopback port until the block ends."""
    need_gunicorn()
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", "127.0.0.1:0",
        "--workers", str(workers),
        "--threads", str(threads),
        "--graceful-timeout", "3",
        *_gunicorn_flags(),
        *args,
    ]  # fmt: skip
    with _serve(
        command, cwd=cwd, env=env, log=log, listening=r"Listening at: http://127\.0\.0\.1:(\d+)"
    ) as server:
        yield server


# -- uWSGI ------------------------------------------------------------------


def _python_version(command: list[str]) -> str | None:
    """The Python version a uwsgi command embeds, or None if it has none."""
    try:
        result = subprocess.run(
            [*command, "--python-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[-1].strip() if result.returncode == 0 and lines else None


@functools.cache
def _uwsgi() -> tuple[list[str] | None, str]:
    """The uwsgi command for this Python, or None and why there is none."""
    here = platform.python_version()
    found = []
    # PyPI's build in this environment has Python built in; Debian's loads a plugin.
    local = Path(sysconfig.get_path("scripts")) / "uwsgi"
    if local.exists():
        found.append([str(local)])
    system = shutil.which("uwsgi")
    if system:
        found += [[system], [system, "--plugin", "python3"]]
    if not found:
        return None, "uwsgi is not installed (apt-get install uwsgi uwsgi-plugin-python3)"
    versions = []
    for command in found:
        version = _python_version(command)
        if version == here:
            return command, ""
        versions.append(version)
    seen = ", ".join(sorted({v for v in versions if v})) or "none"
    return None, (
        f"no uwsgi embeds this Python {here} (found Python {seen}); run the tests in a "
        "venv of the Python uWSGI's plugin was built for, as bash .ci/run does"
    )


def need_uwsgi() -> list[str]:
    command, reason = _uwsgi()
    require("uwsgi", "WSGI_SESSION_REQUIRE_UWSGI", command is not None, reason)
    assert command is not None
    return command


@contextmanager
def uwsgi(
    app: str,
    *,
    workers: int,
    env: dict[str, str] | None = None,
    log: Path,
    pythonpath: tuple[Path, ...] = (TESTS,),
    extra: tuple[str, ...] = (),
) -> Iterator[Server]:
    """Run ``app`` (``module:callable``) under uWSGI with ``workers`` processes.

    uWSGI's default mode: the master imports the app, then forks the workers
    (no ``--lazy-apps``), and without ``--py-call-osafterfork`` the workers run
    no ``os.register_at_fork`` hook. ``--enable-threads`` lets Python threads
    (the GC thread) run at all; without it uWSGI never releases the GIL.
    """
    command = need_uwsgi()
    if sys.prefix != sys.base_prefix:
        site = ["--virtualenv", sys.prefix]
    else:
        site = ["--pythonpath", sysconfig.get_path("purelib")]
    command = [
        *command,
        "--master",
        "--workers", str(workers),
        "--http-socket", "127.0.0.1:0",
        "--enable-threads",
        *site,
        *[a for p in pythonpath for a in ("--pythonpath", str(p))],
        "--module", app,
        "--need-app",
        "--die-on-term",  # SIGTERM stops uWSGI instead of reloading it
        "--worker-reload-mercy", "3",
        "--reload-mercy", "3",
        "--disable-logging",  # no line per request
        "--no-orphans",
        *extra,
    ]  # fmt: skip
    with _serve(
        command, cwd=ROOT, env=env, log=log, listening=r"bound to TCP address 127\.0\.0\.1:(\d+)"
    ) as server:
        _wait_for_workers(server, workers)
        yield server


def _wait_for_workers(server: Server, workers: int) -> None:
    """Wait until the master forked every worker (the app loaded before that)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if len(re.findall(r"spawned uWSGI worker \d+", server.output())) >= workers:
            return
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"uwsgi did not start its workers:\n{server.output()}", pytrace=False)
