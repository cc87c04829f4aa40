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


ARTIFACTS = ROOT / ".artifacts" / "screenshots"


def test_chromium_through_visit_login_revoke_logout(browser: Any, demo_url: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(900, 1500)  # the whole page in each screenshot

    def text(element_id: str) -> str:
        return str(browser.find_element(By.ID, element_id).text)

    def shows(visits: int, user: str) -> None:
        """Wait until the page (after a click and any redirect) says this."""

        def ready(driver: Any) -> bool:
            return text("visits") == f"Visits: {visits}" and text("user") == user

        WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
            ready, f"the page never showed 'Visits: {visits}' and {user!r}"
        )

    def session_cookie() -> dict[str, Any]:
        cookie: dict[str, Any] | None = browser.get_cookie("session_id")
        assert cookie is not None
        return cookie

    browser.get(demo_url + "/")
    shows(1, "Not logged in")
    first = session_cookie()
    assert first["httpOnly"] is True and first["sameSite"] == "Lax"
    assert "expiry" not in first  # a browser-session cookie

    browser.find_element(By.ID, "visit").click()
    shows(2, "Not logged in")
    assert session_cookie() == first
    fingerprint = text("fingerprint")
    assert first["value"] not in browser.page_source  # never the id itself

    # Scripts see the page's other cookies, never the HttpOnly session cookie.
    browser.execute_script("document.cookie = 'visible=yes; path=/'")
    seen = browser.execute_script("return document.cookie")
    assert "visible=yes" in seen and "session_id" not in seen

    browser.find_element(By.ID, "login").click()  # a POST with the CSRF token, 303 to /
    shows(3, "Logged in as demo")
    assert "Logged in as demo" in text("flash")
    logged_in = session_cookie()
    assert logged_in["value"] != first["value"]
    assert text("fingerprint") != fingerprint
    browser.save_screenshot(str(ARTIFACTS / "demo-logged-in.png"))

    # The pre-login cookie is dead: presented again, it opens nothing.
    browser.delete_cookie("session_id")
    browser.add_cookie({"name": "session_id", "value": first["value"], "path": "/"})
    browser.get(demo_url + "/")
    shows(1, "Not logged in")
    browser.delete_cookie("session_id")
    browser.add_cookie({"name": "session_id", "value": logged_in["value"], "path": "/"})
    browser.get(demo_url + "/")
    shows(4, "Logged in as demo")

    # A second device logs in as the same user; this browser revokes it.
    phone = _Device(demo_url)
    phone.login("demo")
    assert phone.who() == "Logged in as demo"
    browser.get(demo_url + "/")
    WebDriverWait(browser, WAIT).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "button.revoke")) == 1
    )
    browser.save_screenshot(str(ARTIFACTS / "demo-two-devices.png"))
    browser.find_element(By.CSS_SELECTOR, "button.revoke").click()
    WebDriverWait(browser, WAIT).until(lambda d: "is logged out" in text("flash"))
    assert phone.who() == "Not logged in"

    # Two more devices; "log out everywhere else" ends both, not this one.
    tablet, laptop = _Device(demo_url), _Device(demo_url)
    tablet.login("demo")
    laptop.login("demo")
    browser.get(demo_url + "/")
    WebDriverWait(browser, WAIT).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "button.revoke")) == 2
    )
    browser.find_element(By.ID, "logout-others").click()
    WebDriverWait(browser, WAIT).until(lambda d: "Logged out 2 other sessions" in text("flash"))
    assert tablet.who() == laptop.who() == "Not logged in"
    assert text("user") == "Logged in as demo"

    browser.find_element(By.ID, "logout").click()  # destroy, 303 to / (a new session)
    shows(1, "Not logged in")
    assert "Logged out" in text("flash")
    after = session_cookie()
    assert after["value"] not in (first["value"], logged_in["value"])
    browser.save_screenshot(str(ARTIFACTS / "demo-logged-out.png"))


class _Device:
    """Another browser, as plain HTTP with a cookie jar."""

    def __init__(self, base: str) -> None:
        import http.cookiejar
        import urllib.request

        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def page(self, path: str = "/", form: dict[str, str] | None = None) -> str:
        import urllib.parse

        data = None if form is None else urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data, timeout=WAIT) as response:
            return str(response.read().decode())

    def login(self, name: str) -> None:
        import re

        token = re.search(r'name="csrf_token" value="([^"]+)"', self.page())
        assert token
        self.page("/login", {"name": name, "csrf_token": token.group(1)})

    def who(self) -> str:
        import re

        found = re.search(r'<p id="user">([^<]*)</p>', self.page())
        assert found
        return found.group(1)


@pytest.fixture(params=["flask", "django", "pyramid"])
def example_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(the framework, the URL of its examples/ app on a threaded standard-library server)."""
    from examples_common import load_example

    app = load_example(f"{request.param}_app").app
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="example-server", daemon=True)
    thread.start()
    try:
        yield request.param, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_chromium_drives_each_example_through_login_and_logout(
    browser: Any, example_url: tuple[str, str]
) -> None:
    """Flash messages, a CSRF-checked log in with a new id, a log out: as a user sees them."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shows(visits: int, user: str, flash: str | None = None) -> None:
        def ready(driver: Any) -> bool:
            flashes = [e.text for e in driver.find_elements(By.CLASS_NAME, "flash")]
            return bool(
                driver.find_element(By.ID, "visits").text == f"Visits: {visits}"
                and driver.find_element(By.ID, "user").text == user
                and (flash is None or flash in flashes)
            )

        WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException]).until(
            ready, f"the page never showed 'Visits: {visits}', {user!r} and {flash!r}"
        )

    def session_cookie() -> Any:
        cookie = browser.get_cookie("session_id")
        assert cookie is not None and cookie["httpOnly"] is True
        return cookie["value"]

    name, url = example_url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(url + "/")
    shows(1, "Not logged in")
    first = session_cookie()
    browser.find_element(By.ID, "login").click()  # the form carries the CSRF token
    shows(2, "Logged in as alice", "Welcome, alice!")
    logged_in = session_cookie()
    assert logged_in != first
    browser.save_screenshot(str(ARTIFACTS / f"{name}-logged-in.png"))
    browser.find_element(By.ID, "logout").click()
    shows(1, "Not logged in", "Logged out.")
    browser.save_screenshot(str(ARTIFACTS / f"{name}-logged-out.png"))
    assert session_cookie() not in (first, logged_in)
