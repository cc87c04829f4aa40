"""The demo and the examples under a real gunicorn on a free loopback port.

Each server binds 127.0.0.1:0 and the test reads the port gunicorn chose from
its log, so parallel runs cannot collide. Every server is stopped (its whole
process group, if need be) when the test ends.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from examples_common import EXAMPLES, token, token_field
from servers import get_with_cookie, gunicorn

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
