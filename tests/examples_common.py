"""Loading the examples/ apps and the checks every framework example must pass.

The examples are scripts, not part of the package: they are imported the way
``cd examples && gunicorn flask_app:app`` imports them, as top-level modules.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import webtest

from wsgi_session import SessionMiddleware

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


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
    return client.cookies.get("session_id")


def sid_of(value: str) -> str:
    return value.partition(".")[0]  # ids never hold a dot


def check_counter(app: object) -> None:
    """Visits count up in one session; the cookie is sent once, when created."""
    client = webtest.TestApp(app)
    first = client.get("/")
    assert "Visits: 1" in first.text
    assert "Not logged in" in first.text
    assert len(first.headers.getall("Set-Cookie")) == 1
    assert "HttpOnly" in first.headers["Set-Cookie"]
    second = client.get("/")
    assert "Visits: 2" in second.text
    assert second.headers.getall("Set-Cookie") == []  # same id: nothing to send
    other = webtest.TestApp(app)  # another browser: its own session
    assert "Visits: 1" in other.get("/").text


def check_login_regenerates(app: object, mw: SessionMiddleware) -> None:
    """Logging in moves the session to a new id, keeps its data, kills the old id."""
    client = webtest.TestApp(app)
    client.get("/")
    before = cookie(client)
    assert before is not None
    response = client.post("/login", {"user": "bob <b>"})
    assert response.status_int == 303
    after = cookie(client)
    assert after is not None and sid_of(after) != sid_of(before)
    page = response.follow()
    assert "Logged in as bob &lt;b&gt;" in page.text  # escaped
    assert "Visits: 2" in page.text  # the data moved with the session
    # The pre-login id is worthless now: presenting it gives a fresh session.
    old = webtest.TestApp(app)
    old.set_cookie("session_id", before)
    assert "Visits: 1" in old.get("/").text
    assert mw.manager.load(sid_of(before)) is None


def check_logout_destroys(app: object, mw: SessionMiddleware) -> None:
    """Logging out removes the session from the store and deletes the cookie."""
    client = webtest.TestApp(app)
    client.post("/login", {"user": "carol"})
    value = cookie(client)
    assert value is not None
    sid = sid_of(value)
    assert mw.manager.load(sid) is not None
    response = client.post("/logout")
    assert response.status_int == 303
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert cookie(client) is None
    assert mw.manager.load(sid) is None
    page = response.follow()
    assert "Not logged in" in page.text
    assert "Visits: 1" in page.text
