"""examples/: the Flask, Django and Pyramid apps, each driven through webtest.

Every framework the test extra installs is required: a missing one fails
(an ImportError), it never skips. ``tox -e flask`` (django, pyramid) runs
one framework's share with ``-k``.
"""

from __future__ import annotations

from typing import Any

import pytest
import webtest
from examples_common import (
    Alive,
    check_counter,
    check_login_regenerates,
    check_logout_destroys,
    check_post_needs_csrf_token,
    load_example,
)


def _alive(name: str, app: Any) -> Alive:
    """How to ask the example's store whether a session id is live."""
    if name == "django":
        from wsgi_session.django import SessionStore

        return lambda sid: bool(SessionStore().exists(sid))
    if name == "flask":
        manager = app.extensions["wsgi_session"].manager
    else:
        from pyramid.interfaces import ISessionFactory

        manager = app.registry.getUtility(ISessionFactory).manager
    return lambda sid: manager.load(sid) is not None


@pytest.fixture(scope="module", params=["flask", "django", "pyramid"])
def example(request: pytest.FixtureRequest) -> tuple[Any, Alive]:
    """(the WSGI app the example serves, whether a session id is live in its store)."""
    app = load_example(f"{request.param}_app").app
    return app, _alive(request.param, app)


def test_counter(example: tuple[Any, Alive]) -> None:
    check_counter(example[0])


def test_post_needs_the_csrf_token(example: tuple[Any, Alive]) -> None:
    check_post_needs_csrf_token(example[0])


def test_login_regenerates(example: tuple[Any, Alive]) -> None:
    check_login_regenerates(*example)


def test_logout_destroys(example: tuple[Any, Alive]) -> None:
    check_logout_destroys(*example)


def test_login_needs_post(example: tuple[Any, Alive]) -> None:
    response = webtest.TestApp(example[0]).get("/login", expect_errors=True)
    assert response.status_int in (404, 405)
    assert "Set-Cookie" not in response.headers
