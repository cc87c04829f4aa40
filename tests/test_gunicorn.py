"""The demo and the examples under a real gunicorn on a free loopback port.

Each server binds 127.0.0.1:0 and the test reads the port gunicorn chose from
its log, so parallel runs cannot collide. Every server is stopped (its whole
process group, if need be) when the test ends.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from examples_common import EXAMPLES, token, token_field
from servers import TESTS, Server, get_with_cookie, gunicorn

pytestmark = pytest.mark.server


def csrf_of(page: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


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
        page = browser.get("/")
        assert "Visits: 2" in page
        before = browser.cookie()
        form = {"user": "alice", "password": "wonderland", token_field(page): token(page)}
        page = browser.post("/login", form)
        assert "Logged in as alice" in page and "Welcome, alice!" in page
        assert "Visits: 3" in page
        assert browser.cookie() not in (None, before)
        page = browser.post("/logout", {token_field(page): token(page)})
        assert "Not logged in" in page and "Logged out." in page
        assert "Visits: 1" in page
