"""examples/django_app.py: the one-file Django example, driven through webtest."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
import webtest

pytest.importorskip("django")

from examples_common import (  # noqa: E402
    check_counter,
    check_login_regenerates,
    check_logout_destroys,
    load_example,
)

from wsgi_session import SessionMiddleware  # noqa: E402


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    module = load_example("django_app")
    yield module
    module.app.close()


@pytest.fixture
def mw(example: ModuleType) -> SessionMiddleware:
    wsgi_app = example.app
    assert isinstance(wsgi_app, SessionMiddleware)
    return wsgi_app


def test_counter(example: ModuleType) -> None:
    check_counter(example.app)


def test_login_regenerates(example: ModuleType, mw: SessionMiddleware) -> None:
    check_login_regenerates(example.app, mw)


def test_logout_destroys(example: ModuleType, mw: SessionMiddleware) -> None:
    check_logout_destroys(example.app, mw)


def test_login_needs_post(example: ModuleType) -> None:
    response = webtest.TestApp(example.app).get("/login", expect_errors=True)
    assert response.status_int in (404, 405)
    assert "Set-Cookie" not in response.headers
