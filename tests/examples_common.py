"""Loading the examples/ apps and the checks every framework example must pass.

The examples are scripts, not part of the package: they are imported the way
``cd examples && gunicorn flask_app:app`` imports them, as top-level modules.
Each uses its framework's own session API (wsgi_session.flask, .django,
.pyramid): flash messages, a log in that changes the session id, a log out
that destroys the session, and CSRF-checked POSTs.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import webtest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
COOKIE = "session_id"  # every example names its cookie so

#: ``alive(sid)``: whether the example's store holds a live session ``sid``.
Alive = Callable[[str], bool]

_TOKEN = re.compile(r'name="(?:csrf_token|csrfmiddlewaretoken)" value="([^"]+)"')


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as the module ``name`` (once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(EXAMPLES))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))
    assert Path(module.__file__ or "").parent == EXAMPLES, f"imported another {name}"
    return module


def cookie(client: webtest.TestApp) -> str | None:
    """The client's session cookie value (``id`` or, signed, ``id.signature``)."""
    return client.cookies.get(COOKIE)


def sid_of(value: str) -> str:
    return value.partition(".")[0]  # ids never hold a dot


def token(page: str) -> str:
    """The CSRF token in the page's forms."""
    found = _TOKEN.search(page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


def log_in(client: webtest.TestApp, page: str, user: str = "alice") -> webtest.TestResponse:
    form = {"user": user, "password": "wonderland", token_field(page): token(page)}
    return client.post("/login", form)


def token_field(page: str) -> str:
    return "csrfmiddlewaretoken" if "csrfmiddlewaretoken" in page else "csrf_token"


def check_counter(app: object) -> None:
    """Visits count up in one session, which keeps its id."""
    client = webtest.TestApp(app)
    first = client.get("/")
    assert "Visits: 1" in first.text
    assert "Not logged in" in first.text
    assert len(first.headers.getall("Set-Cookie")) == 1
    assert "HttpOnly" in first.headers["Set-Cookie"]
    sid = cookie(client)
    second = client.get("/")
    assert "Visits: 2" in second.text
    assert cookie(client) == sid  # Django sends it again (modified); the id stays
    other = webtest.TestApp(app)  # another browser: its own session
    assert "Visits: 1" in other.get("/").text


def check_post_needs_csrf_token(app: object) -> None:
    client = webtest.TestApp(app)
    page = client.get("/").text
    form = {"user": "alice", "password": "wonderland"}
    assert client.post("/login", form, expect_errors=True).status_int in (400, 403)
    form[token_field(page)] = "forged-" + token(page)[7:]
    assert client.post("/login", form, expect_errors=True).status_int in (400, 403)
    assert "Not logged in" in client.get("/").text


def check_login_regenerates(app: object, alive: Alive) -> None:
    """Logging in moves the session to a new id, keeps its data, kills the old id,
    and flashes a welcome shown once."""
    client = webtest.TestApp(app)
    page = client.get("/")
    before = cookie(client)
    assert before is not None
    response = log_in(client, page.text)
    assert response.status_int == 303
    after = cookie(client)
    assert after is not None and sid_of(after) != sid_of(before)
    page = response.follow()
    assert "Logged in as alice" in page.text
    assert "Welcome, alice!" in page.text
    assert "Visits: 2" in page.text  # the data moved with the session
    assert "Welcome" not in client.get("/").text  # a flash is shown once
    # The pre-login id is worthless now: presenting it gives a fresh session.
    assert not alive(sid_of(before))
    old = webtest.TestApp(app)
    old.set_cookie(COOKIE, before)
    assert "Visits: 1" in old.get("/").text


def check_logout_destroys(app: object, alive: Alive) -> None:
    """Logging out removes the session from the store; a new one holds the flash."""
    client = webtest.TestApp(app)
    page = client.get("/")
    page = log_in(client, page.text).follow()
    value = cookie(client)
    assert value is not None
    sid = sid_of(value)
    assert alive(sid)
    response = client.post("/logout", {token_field(page.text): token(page.text)})
    assert response.status_int == 303
    assert not alive(sid)
    page = response.follow()
    assert "Not logged in" in page.text
    assert "Logged out." in page.text
    assert "Visits: 1" in page.text
    replay = webtest.TestApp(app)
    replay.set_cookie(COOKIE, value)
    assert "Not logged in" in replay.get("/").text
