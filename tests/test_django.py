"""wsgi_session.django: the session engine inside a whole Django site.

The site is examples/django_app.py (auth, admin, messages, CSRF in the
session, a real user); Django's settings can be configured once per process,
so every in-process Django test shares it, and changes what it needs with
``override_settings`` (a new ``WSGI_SESSION`` builds a new manager). The
fresh-``startproject`` checks are in tests/test_django_project.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import webtest
from conftest import FakeClock
from examples_common import load_example
from framework_support import CountingMemory, Rendezvous, concurrently, csrf_token

example = load_example("django_app")  # configures Django before the imports below

from django.contrib.sessions.backends.base import UpdateError  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from wsgi_session.django import SessionStore, get_manager  # noqa: E402

pytest_plugins = ["redis_server"]

COOKIE = "session_id"
rendezvous = Rendezvous()
loaded, logged_out = threading.Event(), threading.Event()


def write(request: HttpRequest, key: str) -> HttpResponse:
    """Writes one key, after both concurrent requests have loaded the session."""
    request.session[key] = "new"
    rendezvous.wait()
    return HttpResponse("ok")


def seed(request: HttpRequest) -> HttpResponse:
    request.session["a"] = request.session["b"] = "old"
    return HttpResponse("ok")


def untouched(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session here")


def slow_write(request: HttpRequest) -> HttpResponse:
    request.session["late"] = "write"
    loaded.set()
    logged_out.wait(10)  # meanwhile another request logs out
    return HttpResponse("ok")


def do_logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    logged_out.set()
    return HttpResponse("ok")


urlpatterns = [
    path("seed", seed),
    path("a", write, {"key": "a"}),
    path("b", write, {"key": "b"}),
    path("untouched", untouched),
    path("slow", slow_write),
    path("logout", do_logout),
]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def provider(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test once with the memory store and once with a private Redis."""
    if request.param == "memory":
        config: dict[str, Any] = {"provider": "memory"}
    else:
        url = request.getfixturevalue("redis_url")
        config = {"provider": "redis", "provider_options": {"url": url}}
    with override_settings(WSGI_SESSION=config):
        yield request.param


def test_login_changes_the_key_and_logout_kills_it(provider: str) -> None:
    client = webtest.TestApp(example.app)
    page = client.get("/")
    assert "Visits: 1" in page.text and "Not logged in" in page.text
    before = client.cookies[COOKIE]
    form = {"user": "alice", "password": "wonderland", "csrfmiddlewaretoken": csrf_token(page.text)}
    response = client.post("/login", form)
    assert response.status_int == 303
    after = client.cookies[COOKIE]
    assert after != before
    assert not SessionStore().exists(before)  # the pre-login id died at login
    page = response.follow()
    assert "Logged in as alice" in page.text
    assert "Welcome, alice!" in page.text  # contrib.messages, kept in our session
    assert "Visits: 2" in page.text  # the data moved with the session
    admin = client.get("/admin/")
    assert admin.status_int == 200 and "Site administration" in admin.text

    response = client.post("/logout", {"csrfmiddlewaretoken": csrf_token(page.text)})
    assert not SessionStore().exists(after)
    page = response.follow()
    assert "Not logged in" in page.text and "Logged out." in page.text
    replay = webtest.TestApp(example.app)
    replay.set_cookie(COOKIE, after)
    assert replay.get("/admin/").status_int == 302  # the old id is no login


def test_admin_through_django_test_client(provider: str) -> None:
    client = Client()
    assert client.login(username="alice", password="wonderland")
    key = client.cookies[COOKIE].value
    assert SessionStore(key).get("_auth_user_id") is not None
    assert "Site administration" in client.get("/admin/").content.decode()
    client.logout()
    assert not SessionStore().exists(key)
    assert client.get("/admin/").status_code == 302


def test_post_without_the_session_csrf_token_is_refused() -> None:
    client = webtest.TestApp(example.app)
    client.get("/")
    response = client.post("/login", {"user": "alice", "password": "wonderland"}, status=403)
    assert "CSRF" in response.text


def test_wrong_csrf_token_is_refused() -> None:
    client = webtest.TestApp(example.app)
    client.get("/")
    form = {"user": "alice", "password": "wonderland", "csrfmiddlewaretoken": "x" * 32}
    client.post("/login", form, status=403)


@override_settings(MESSAGE_STORAGE="django.contrib.messages.storage.fallback.FallbackStorage")
def test_default_message_storage_works_too() -> None:
    client = webtest.TestApp(example.app)
    page = client.get("/")
    form = {"user": "alice", "password": "nope", "csrfmiddlewaretoken": csrf_token(page.text)}
    page = client.post("/login", form).follow()
    assert "Wrong user name or password." in page.text
    assert "Wrong user name" not in client.get("/").text  # shown once


@override_settings(ROOT_URLCONF=__name__, CSRF_USE_SESSIONS=False)
def test_concurrent_requests_writing_different_keys_keep_both(provider: str) -> None:
    client = webtest.TestApp(example.app)
    client.get("/seed")
    concurrently(client, ["/a", "/b"])  # each read both keys as "old"
    stored = SessionStore(client.cookies[COOKIE])
    assert (stored.get("a"), stored.get("b")) == ("new", "new")


@override_settings(ROOT_URLCONF=__name__, CSRF_USE_SESSIONS=False)
def test_a_save_after_a_concurrent_logout_is_refused(provider: str) -> None:
    loaded.clear()
    logged_out.clear()
    client = webtest.TestApp(example.app)
    client.get("/seed")
    key = client.cookies[COOKIE]
    statuses: list[int] = []

    def slow() -> None:
        response = webtest.TestApp(example.app).get(
            "/slow", headers={"Cookie": f"{COOKIE}={key}"}, expect_errors=True
        )
        statuses.append(response.status_int)

    thread = threading.Thread(target=slow)
    thread.start()
    assert loaded.wait(10)  # the slow request has read the session
    client.get("/logout")
    thread.join(10)
    assert statuses == [400]  # Django's SessionInterrupted, from our UpdateError
    assert not SessionStore().exists(key)  # not brought back


@override_settings(ROOT_URLCONF=__name__, CSRF_USE_SESSIONS=False)
def test_a_request_that_never_touches_the_session_costs_nothing() -> None:
    store = CountingMemory()
    with override_settings(WSGI_SESSION={"provider": store}):
        client = webtest.TestApp(example.app)
        client.get("/seed")
        calls = store.calls
        response = client.get("/untouched")
        assert store.calls == calls  # no load, no save
        assert "Set-Cookie" not in response.headers
        assert webtest.TestApp(example.app).get("/untouched").headers.get("Set-Cookie") is None


def test_update_error_when_saving_a_session_destroyed_elsewhere() -> None:
    first = SessionStore()
    first["n"] = 1
    first.save()
    other = SessionStore(first.session_key)
    other.delete()
    first["n"] = 2
    with pytest.raises(UpdateError):
        first.save()
    assert SessionStore(first.session_key).load() == {}


def test_only_changed_keys_are_written() -> None:
    a = SessionStore()
    a.update({"x": 1, "y": [1]})
    a.save()
    b = SessionStore(a.session_key)
    b["y"].append(2)  # changed in place: seen at save
    b.modified = True
    c = SessionStore(a.session_key)
    c["x"] = 5
    c.save()
    b.save()  # writes y only: c's x stays
    assert dict(SessionStore(a.session_key).items()) == {"x": 5, "y": [1, 2]}


def test_changes_in_place_after_a_save_are_saved_too() -> None:
    s = SessionStore()
    s["cart"] = []
    s["nested"] = ([1],)  # a tuple holding a list: stored as [[1]]
    s.save()
    s["cart"].append("apple")  # the list the app holds, after the save
    s["nested"][0].append(2)
    s.save()
    assert dict(SessionStore(s.session_key).items()) == {"cart": ["apple"], "nested": [[1, 2]]}
    again = SessionStore(s.session_key)
    again["cart"].append("pear")  # loaded, changed in place, saved twice
    again.save()
    again["cart"].append("plum")
    again.save()
    assert SessionStore(s.session_key)["cart"] == ["apple", "pear", "plum"]


def test_a_save_keeps_a_lifetime_set_meanwhile_by_another_request() -> None:
    config = {"provider": "memory", "max_lifetime": 1800}
    with override_settings(WSGI_SESSION=config):
        manager = get_manager()
        s = SessionStore()
        s["a"] = 1
        s.save()
        first = SessionStore(s.session_key)
        assert first["a"] == 1  # loaded before the other request's set_expiry
        other = SessionStore(s.session_key)
        other.set_expiry(60)
        other.save()
        first["a"] = 2  # its lifetime unchanged: the store keeps the other's
        first.save()
        record = manager.load(s.session_key)
        assert record is not None and (record.idle, record.persistent) == (60, True)
        assert record.data == {"a": 2, "_session_expiry": 60}


def test_tuples_come_back_as_lists_like_djangos_json_serializer() -> None:
    s = SessionStore()
    s["pair"] = (1, "a")
    s.save()
    assert SessionStore(s.session_key)["pair"] == [1, "a"]


def test_set_expiry_gives_the_session_its_own_lifetime_in_the_store() -> None:
    clock = FakeClock()
    config = {"provider": "memory", "clock": clock, "max_lifetime": 1800}
    with override_settings(WSGI_SESSION=config):
        manager = get_manager()
        s = SessionStore()
        s["a"] = 1
        s.set_expiry(60)
        s.save()
        record = manager.load(s.session_key)
        assert record is not None and (record.idle, record.persistent) == (60, True)
        assert s.get_expiry_age() == 60 and not s.get_expire_at_browser_close()

        s.set_expiry(0)  # a browser-session cookie, the default idle timeout
        s.save()
        record = manager.load(s.session_key)
        assert record is not None and (record.idle, record.persistent) == (1800, False)
        assert s.get_expire_at_browser_close()

        s.set_expiry(60)
        s.save()
        clock.advance(61)
        assert not SessionStore().exists(s.session_key)  # expired in the store
        assert SessionStore(s.session_key).get("a") is None


def test_clear_expired_removes_expired_sessions() -> None:
    clock = FakeClock()
    with override_settings(WSGI_SESSION={"provider": "memory", "clock": clock, "max_lifetime": 60}):
        stale = SessionStore()
        stale["a"] = 1
        stale.save()
        clock.advance(61)
        assert get_manager().provider.count() == 1
        SessionStore.clear_expired()
        assert get_manager().provider.count() == 0


def test_the_user_is_indexed_for_sessions_of() -> None:
    client = Client()
    assert client.login(username="alice", password="wonderland")
    key = client.cookies[COOKIE].value
    user_id = SessionStore(key)["_auth_user_id"]
    handles = {info.handle for info in get_manager().sessions_of(user_id)}
    assert SessionStore(key).exists(key) and handles


def test_async_twins() -> None:
    async def flow() -> None:
        s = SessionStore()
        await s.aset("a", 1)
        await s.asave()
        old = s.session_key
        assert old is not None and await s.aexists(old)
        await s.acycle_key()
        assert s.session_key != old and not await s.aexists(old)
        assert await SessionStore(s.session_key).aget("a") == 1
        await s.aset_expiry(120)
        await s.asave()
        assert await SessionStore(s.session_key).aget_expiry_age() == 120
        new = s.session_key
        await s.aflush()
        assert s.session_key is None and not await s.aexists(new)

    asyncio.run(flow())


def test_bad_settings_fail_with_the_option_name() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(WSGI_SESSION={"max_lifetime": -1}), pytest.raises(
        ImproperlyConfigured, match="max_lifetime"
    ):
        SessionStore()
    with override_settings(WSGI_SESSION={"provder": "memory"}), pytest.raises(
        ImproperlyConfigured, match="provder"
    ):
        SessionStore()


def test_cycle_key_of_a_session_revoked_meanwhile_starts_empty() -> None:
    s = SessionStore()
    s["secret"] = "x"
    s.save()
    s = SessionStore(s.session_key)
    assert s["secret"] == "x"  # loaded by this request
    SessionStore().delete(s.session_key)  # revoked elsewhere after this request loaded it
    old = s.session_key
    s.cycle_key()  # as login() does
    assert s.session_key not in (None, old)
    assert dict(SessionStore(s.session_key).items()) == {}  # the data was not brought back


def test_max_session_bytes_is_enforced() -> None:
    with override_settings(WSGI_SESSION={"max_session_bytes": 100}):
        s = SessionStore()
        s["small"] = "x"
        s.save()
        s["big"] = "y" * 200
        with pytest.raises(ValueError, match="max_session_bytes"):
            s.save()
        assert "big" not in SessionStore(s.session_key)
