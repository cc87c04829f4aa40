"""A real browser: headless Chromium keeps the demo's session cookie.

Debian's chromium and chromium-driver, driven by selenium with both paths
given explicitly and SE_OFFLINE set, so selenium-manager never downloads a
browser or a driver. The demo runs on a threaded standard-library server on
a free loopback port.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from conftest import require
from examples_common import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--window-size=900,600",
]
WAIT = 20.0  # seconds for a page to show what we expect


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # A browser opens several connections at once (and may hold one idle).
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def demo_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("WSGI_SESSION_PROVIDER", "memory")
    monkeypatch.syspath_prepend(str(ROOT))
    import demo_app

    app = demo_app.make_app()
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="demo-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        app.close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    require(
        "browser",
        "WSGI_SESSION_REQUIRE_BROWSER",
        not missing,
        f"Debian's chromium and chromium-driver are not installed (missing {', '.join(missing)})",
    )
    require(
        "browser",
        "WSGI_SESSION_REQUIRE_BROWSER",
        importlib.util.find_spec("selenium") is not None,
        "selenium is not installed (pip install -e '.[test]')",
    )
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager must never download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")  # a fresh profile
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def test_chromium_keeps_the_session_through_visit_login_logout(
    browser: Any, demo_url: str, tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shows(visits: int, user: str) -> None:
        """Wait until the page (after a click and any redirect) says this."""

        def ready(driver: Any) -> bool:
            return bool(
                driver.find_element(By.ID, "visits").text == f"Visits: {visits}"
                and driver.find_element(By.ID, "user").text == user
            )

        WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
            ready, f"the page never showed 'Visits: {visits}' and {user!r}"
        )

    def session_cookie() -> dict[str, Any] | None:
        cookie: dict[str, Any] | None = browser.get_cookie("session_id")
        return cookie

    browser.get(demo_url + "/")
    shows(1, "Not logged in")
    first = session_cookie()
    assert first is not None
    assert first["httpOnly"] is True
    assert first["sameSite"] == "Lax"

    browser.find_element(By.ID, "visit").click()
    shows(2, "Not logged in")
    assert session_cookie() == first

    # Scripts see the page's other cookies, never the HttpOnly session cookie.
    browser.execute_script("document.cookie = 'visible=yes; path=/'")
    seen = browser.execute_script("return document.cookie")
    assert "visible=yes" in seen
    assert "session_id" not in seen

    browser.find_element(By.ID, "login").click()  # regenerate, 303 to /
    shows(3, "Logged in as demo")
    logged_in = session_cookie()
    assert logged_in is not None
    assert logged_in["value"] != first["value"]
    assert "session_id" not in browser.execute_script("return document.cookie")
    browser.save_screenshot(str(tmp_path / "logged-in.png"))

    browser.find_element(By.ID, "logout").click()  # destroy, 303 to / (a new session)
    shows(1, "Not logged in")
    after = session_cookie()
    assert after is not None
    assert after["value"] not in (first["value"], logged_in["value"])

