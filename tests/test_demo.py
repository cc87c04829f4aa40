"""The demo, as a user runs it: `python demo_app.py`, driven over HTTP by a
client that keeps cookies like a browser."""

from __future__ import annotations

import http.cookiejar
import os
import socket
import subprocess
import sys
import time
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
    env = {**os.environ, "PORT": str(port)}
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


def test_python_demo_app_counts_logs_in_and_out(demo_url: str) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def page(path: str) -> str:
        with browser.open(demo_url + path, timeout=10) as response:
            return response.read().decode()

    assert "Visits: 1" in page("/")
    assert "Visits: 2" in page("/")
    (cookie,) = list(jar)
    assert cookie.name == "session_id" and cookie.has_nonstandard_attr("HttpOnly")
    before_login = cookie.value
    text = page("/login")  # redirects to / (a visit)
    assert "Logged in as demo" in text and "Visits: 3" in text
    assert list(jar)[0].value != before_login  # regenerated on login
    text = page("/logout")
    assert "Not logged in" in text and "Visits: 1" in text


def test_every_first_visit_looks_the_same() -> None:
    client = webtest.TestApp(demo_app.app)
    first = client.get("/").text
    client.reset()
    assert client.get("/").text == first
    assert client.get("/nope", status=404)
