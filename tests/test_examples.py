"""examples/: the Flask, Django and Pyramid apps, each driven through webtest.

Every framework the test extra installs is required: a missing one fails
(an ImportError), it never skips. ``tox -e flask`` (django, pyramid) runs
one framework's share with ``-k``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import webtest
from examples_common import (
    check_counter,
    check_login_regenerates,
    check_logout_destroys,
    load_example,
)

from wsgi_session import SessionMiddleware


@pytest.fixture(scope="module", params=["flask", "django", "pyramid"])
def example(request: pytest.FixtureRequest) -> Iterator[tuple[Any, SessionMiddleware]]:
    """(the WSGI app the example serves, the SessionMiddleware inside it)."""
    module = load_example(f"{request.param}_app")
    app = module.app
    # Flask wraps its wsgi_app; Django and Pyramid wrap the whole WSGI app.
    mw = app.wsgi_app if request.param == "flask" else app
    assert isinstance(mw, SessionMiddleware)
    yield app, mw
    mw.close()


def test_counter(example: tuple[Any, SessionMiddleware]) -> None:
    check_counter(example[0])


def test_login_regenerates(example: tuple[Any, SessionMiddleware]) -> None:
    check_login_regenerates(*example)


def test_logout_destroys(example: tuple[Any, SessionMiddleware]) -> None:
    check_logout_destroys(*example)


def test_login_needs_post(example: tuple[Any, SessionMiddleware]) -> None:
    response = webtest.TestApp(example[0]).get("/login", expect_errors=True)
    assert response.status_int in (404, 405)
    assert "Set-Cookie" not in response.headers
