"""The demo, as a user runs it: `python demo_app.py`, driven over HTTP by a
client that keeps cookies like a browser."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import webtest

import demo_app

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def demo_url() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WSGI_SESSION_PROVIDER": "memory"}
    proc = subprocess.Popen(
        [sys.executable, "demo_app.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"demo_app.py did not start: {out}")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def _fingerprint(page: str) -> str:
    match = re.search(r'id="fingerprint">([^<]+)<', page)
    assert match
    return match.group(1)


def test_python_demo_app_counts_logs_in_and_out(demo_url: str) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def page(path: str, form: dict[str, str] | None = None) -> str:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        with browser.open(demo_url + path, data, timeout=10) as response:
            return response.read().decode()

    assert "Visits: 1" in page("/")
    text = page("/")
    assert "Visits: 2" in text
    (cookie,) = list(jar)
    assert cookie.name == "session_id" and cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.value not in text  # the page shows a fingerprint, never the id
    before_login, fingerprint = cookie.value, _fingerprint(text)
    text = page("/login", {"name": "demo", "csrf_token": _csrf(text)})  # 303 to /
    assert "Logged in as demo" in text and "Visits: 3" in text
    assert list(jar)[0].value != before_login  # regenerated on login
    assert _fingerprint(text) != fingerprint and "The session id changed" in text
    text = page("/logout", {"csrf_token": _csrf(text)})
    assert "Not logged in" in text and "Visits: 1" in text and "Logged out" in text


def test_post_without_the_csrf_token_is_refused() -> None:
    client = webtest.TestApp(demo_app.app)
    client.get("/")
    client.post("/login", {"name": "mallory"}, status=403)
    client.post("/login", {"name": "mallory", "csrf_token": "x" * 43}, status=403)
    assert "Not logged in" in client.get("/").text


def test_your_sessions_revoke_and_log_out_everywhere() -> None:
    laptop, phone, tablet = (webtest.TestApp(demo_app.app) for _ in range(3))
    for client in (laptop, phone, tablet):
        page = client.get("/").text
        client.post("/login", {"name": "carol", "csrf_token": _csrf(page)})
    page = laptop.get("/").text
    assert page.count("Another browser") == 2 and "This browser" in page
    handle = re.search(r'name="handle" value="([^"]+)"', page).group(1)
    laptop.post("/revoke", {"handle": handle, "csrf_token": _csrf(page)})
    assert laptop.get("/").text.count("Another browser") == 1
    page = laptop.get("/").text
    laptop.post("/logout-others", {"csrf_token": _csrf(page)})
    assert "Another browser" not in laptop.get("/").text
    assert "Logged in as carol" in laptop.get("/").text
    for client in (phone, tablet):
        assert "Not logged in" in client.get("/").text


def test_remember_me_gives_a_persistent_cookie() -> None:
    client = webtest.TestApp(demo_app.app)
    page = client.get("/").text
    response = client.post("/login", {"name": "d", "remember": "on", "csrf_token": _csrf(page)})
    assert "Max-Age=2592000" in response.headers["Set-Cookie"]
    assert "kept by the browser for 30 days" in response.follow().text


def test_a_taken_port_gives_one_clear_line(demo_url: str) -> None:
    port = demo_url.rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "demo_app.py", "--port", port],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"demo_app: port {port} is in use; try --port {int(port) + 1}"


def test_redis_without_a_url_never_falls_back_to_a_default_server() -> None:
    env = {**os.environ, "WSGI_SESSION_PROVIDER": "redis"}
    env.pop("WSGI_SESSION_REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "import demo_app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "needs WSGI_SESSION_REDIS_URL" in done.stderr


def test_every_first_visit_looks_the_same() -> None:
    client = webtest.TestApp(demo_app.app)
    first = re.sub(r'value="[^"]+"', "", client.get("/").text)
    client.reset()
    assert re.sub(r'value="[^"]+"', "", client.get("/").text) == first
    assert client.get("/nope", status=404)
