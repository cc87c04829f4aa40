"""The SQLite provider under a real ``gunicorn -w 4``: one visitor's session
holds whichever worker serves it, and across a restart of the server."""

from __future__ import annotations

import importlib.util
import re
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from conftest import require
from servers import TESTS, Server, gunicorn

pytestmark = pytest.mark.server

# Each worker exits after this many requests, so the run below is served by
# many processes: with a store per process the counter would start over.
MAX_REQUESTS = 5
_PAGE = re.compile(r"n=(\d+) user=(\w+) pid=(\d+)")


@pytest.fixture(autouse=True)
def _needs_gunicorn() -> None:
    require(
        "gunicorn",
        "WSGI_SESSION_REQUIRE_GUNICORN",
        importlib.util.find_spec("gunicorn") is not None,
        "gunicorn is not installed (pip install -e '.[test]')",
    )


def serve(db: Path, log: Path) -> AbstractContextManager[Server]:
    return gunicorn(
        "--workers", "4", "--threads", "2",
        "--max-requests", str(MAX_REQUESTS), "--max-requests-jitter", "0",
        "--pythonpath", str(TESTS), "gunicorn_sqlite_app:app",
        env={"WSGI_SESSION_SQLITE_PATH": str(db)}, log=log,
    )  # fmt: skip


def page(text: str) -> tuple[int, str, int]:
    found = _PAGE.fullmatch(text)
    assert found, text
    return int(found[1]), found[2], int(found[3])


def test_a_visitor_keeps_the_session_across_workers_and_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    pids: set[int] = set()
    with serve(db, tmp_path / "first.log") as server:
        browser = server.client()
        for i in range(1, 16):
            n, user, pid = page(browser.get("/"))
            assert (n, user) == (i, "None")
            pids.add(pid)
        first = browser.cookie()
        n, user, pid = page(browser.get("/login"))
        assert (n, user) == (15, "alice")
        assert browser.cookie() not in (None, first)
        for i in range(16, 26):
            n, user, pid = page(browser.get("/"))
            assert (n, user) == (i, "alice")
            pids.add(pid)
    assert len(pids) >= 25 // MAX_REQUESTS  # many processes served it

    with serve(db, tmp_path / "second.log") as server:  # a restart: new master, new workers
        browser.base_url = server.base_url  # the same cookie jar (cookies ignore the port)
        n, user, pid = page(browser.get("/"))
        assert (n, user) == (26, "alice")
        assert pid not in pids
        n, user, _ = page(browser.get("/logout"))
        assert (n, user) == (0, "None")
        n, user, _ = page(browser.get("/"))
        assert (n, user) == (1, "None")


def test_the_demo_on_sqlite_under_four_workers_keeps_counter_and_login(tmp_path: Path) -> None:
    """The demo as a user runs it: WSGI_SESSION_PROVIDER=sqlite gunicorn -w 4."""
    env = {"WSGI_SESSION_PROVIDER": "sqlite", "WSGI_SESSION_SQLITE_PATH": str(tmp_path / "s.db")}
    flags = ["--max-requests", str(MAX_REQUESTS), "--max-requests-jitter", "0", "demo_app:app"]

    def visits(text: str) -> int:
        found = re.search(r"Visits: (\d+)", text)
        assert found, text
        return int(found[1])

    def csrf(text: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert found, text
        return found[1]

    with gunicorn(*flags, env=env, workers=4, threads=2, log=tmp_path / "a.log") as server:
        browser = server.client()
        for i in range(1, 13):
            text = browser.get("/")
            assert visits(text) == i
        text = browser.post("/login", {"name": "carol", "csrf_token": csrf(text)})
        assert "Logged in as carol" in text and visits(text) == 13
        for i in range(14, 20):
            text = browser.get("/")
            assert visits(text) == i and "Logged in as carol" in text
    with gunicorn(*flags, env=env, workers=4, threads=2, log=tmp_path / "b.log") as server:
        browser.base_url = server.base_url  # a deploy: new master, new workers, same file
        text = browser.get("/")
        assert visits(text) == 20 and "Logged in as carol" in text
