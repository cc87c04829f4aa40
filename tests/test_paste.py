"""wsgi_session.paste: options from .ini strings, loaded by real PasteDeploy."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from conftest import counter_app
from examples_common import (
    EXAMPLES,
    check_counter,
    check_login_regenerates,
    check_logout_destroys,
    load_example,
)
from paste.deploy import loadwsgi

from wsgi_session import SessionMiddleware
from wsgi_session.cookies import SessionCookie
from wsgi_session.ids import new_id
from wsgi_session.paste import CONVERTERS, filter_app_factory, filter_factory, parse_options

OLD_SECRET = "an-older-secret-still-accepted"
NEW_SECRET = "the-newest-secret-signs-cookies"


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("provider", " memory ", "memory"),
        ("provider_options", '{"max_sessions": 9, "x": "y"}', {"max_sessions": 9, "x": "y"}),
        ("provider_options", "", None),
        ("provider_options", "none", None),
        ("cookie_name", "sid", "sid"),
        ("cookie_name", "none", None),
        ("cookie_name", "", None),
        ("max_lifetime", "1800", 1800.0),
        ("max_lifetime", "0.5", 0.5),
        ("absolute_lifetime", "43200", 43200.0),
        ("absolute_lifetime", "None", None),
        ("absolute_lifetime", "", None),
        ("gc_interval", "0", 0.0),
        ("gc_interval", "none", None),
        ("gc_interval", "2.5", 2.5),
        ("cookie_path", "/app", "/app"),
        ("cookie_domain", "example.com", "example.com"),
        ("cookie_domain", "none", None),
        ("secure", "true", True),
        ("secure", "Yes", True),
        ("secure", "on", True),
        ("secure", "1", True),
        ("httponly", "false", False),
        ("httponly", "NO", False),
        ("httponly", "off", False),
        ("httponly", "0", False),
        ("partitioned", " true ", True),
        ("samesite", "Strict", "Strict"),
        ("samesite", "None", "None"),  # the attribute value, not Python's None
        ("samesite", "", None),
        ("cookie_max_age", "3600", 3600),
        ("cookie_max_age", "none", None),
        ("secret", "0123456789abcdef", "0123456789abcdef"),
        ("secret", f"\n{NEW_SECRET}\n{OLD_SECRET}", [NEW_SECRET, OLD_SECRET]),
        ("secret", f"{NEW_SECRET} {OLD_SECRET}", [NEW_SECRET, OLD_SECRET]),
        ("secret", "", None),
        ("secret", "none", None),
        ("environ_key", "my.session", "my.session"),
        ("hash_ids", "false", False),
        ("hash_ids", "yes", True),
        ("user_key", "user_id", "user_id"),
        ("user_key", "none", None),
        ("max_session_bytes", "4096", 4096),
        ("max_session_bytes", "", None),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else None,
)
def test_strings_are_converted(option: str, text: str, expected: Any) -> None:
    assert parse_options({option: text}) == {option: expected}


def test_every_configurable_keyword_has_a_converter() -> None:
    import inspect

    keywords = set(inspect.signature(SessionMiddleware).parameters) - {"app", "clock"}
    assert set(CONVERTERS) == keywords


def test_values_that_are_not_strings_are_kept() -> None:
    assert parse_options({"max_lifetime": 60, "secure": True, "secret": ["a" * 16]}) == {
        "max_lifetime": 60,
        "secure": True,
        "secret": ["a" * 16],
    }


@pytest.mark.parametrize(
    ("option", "text"),
    [
        ("secure", "maybe"),
        ("httponly", ""),
        ("partitioned", "2"),
        ("max_lifetime", "an hour"),
        ("max_lifetime", ""),
        ("absolute_lifetime", "12h"),
        ("gc_interval", "often"),
        ("cookie_max_age", "1.5"),
        ("cookie_max_age", "a day"),
        ("hash_ids", "sometimes"),
        ("max_session_bytes", "4 KB"),
        ("provider_options", "{not json"),
        ("provider_options", "[1, 2]"),
        ("provider_options", '"url"'),
    ],
    ids=lambda v: repr(v),
)
def test_unparseable_strings_name_the_option(option: str, text: str) -> None:
    with pytest.raises(ValueError, match=option):
        parse_options({option: text})


def test_unknown_options_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'max_lifetme'.*max_lifetime"):
        parse_options({"max_lifetme": "60"})
    with pytest.raises(ValueError, match="'clock'"):
        parse_options({"clock": "time.time"})


@pytest.mark.parametrize(
    ("conf", "option"),
    [
        ({"max_lifetime": "-5"}, "max_lifetime"),
        ({"gc_interval": "nan"}, "gc_interval"),
        ({"samesite": "None"}, "samesite"),  # SameSite=None needs secure
        ({"samesite": "sometimes"}, "samesite"),
        ({"cookie_max_age": "0"}, "cookie_max_age"),
        ({"cookie_name": "has space"}, "cookie_name"),
        ({"cookie_name": "__Host-sid"}, "cookie_name"),  # __Host- needs secure
        ({"secret": "short"}, "secret"),
        ({"provider": "nosuch"}, "provider"),
        ({"provider_options": '{"max_sessions": 0}'}, "max_sessions"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_converted_but_invalid_values_are_refused_by_the_middleware(
    conf: dict[str, str], option: str
) -> None:
    with pytest.raises(ValueError, match=option):
        filter_app_factory(counter_app, {}, **conf)
    with pytest.raises(ValueError, match=option):
        filter_factory({}, **conf)(counter_app)


# -- through PasteDeploy ------------------------------------------------------

FILTER_SPECS = {
    "egg": "use = egg:wsgi_session",
    "egg#main": "use = egg:wsgi_session#main",
    "filter_app_factory": "paste.filter_app_factory = wsgi_session.paste:filter_app_factory",
    "filter_factory": "paste.filter_factory = wsgi_session.paste:filter_factory",
}


def write_ini(path: Path, spec: str, options: str) -> str:
    path.write_text(f"[filter:session]\n{spec}\n" + textwrap.dedent(options))
    return f"config:{path}"


@pytest.fixture
def closing() -> Iterator[list[SessionMiddleware]]:
    made: list[SessionMiddleware] = []
    yield made
    for mw in made:
        mw.close()


@pytest.mark.parametrize("spec", FILTER_SPECS.values(), ids=FILTER_SPECS.keys())
def test_loadfilter_reads_every_kind_of_option(
    spec: str, tmp_path: Path, closing: list[SessionMiddleware]
) -> None:
    uri = write_ini(
        tmp_path / "app.ini",
        spec,
        f"""\
        cookie_name = sid
        max_lifetime = 600
        absolute_lifetime = 7200
        gc_interval = none
        cookie_path = /
        cookie_domain = example.com
        secure = yes
        httponly = true
        samesite = Strict
        cookie_max_age = 600
        secret = {NEW_SECRET}
                 {OLD_SECRET}
        provider = memory
        provider_options = {{"max_sessions": 50}}
        environ_key = wsgi_session.session
        hash_ids = true
        user_key = none
        max_session_bytes = 65536
        """,
    )
    mw = loadwsgi.loadfilter(uri, name="session")(counter_app)
    closing.append(mw)
    assert isinstance(mw, SessionMiddleware)
    assert mw.manager.max_lifetime == 600.0
    assert mw.manager.absolute_lifetime == 7200.0
    assert mw.manager.gc_interval is None
    assert mw.manager.provider.max_sessions == 50  # type: ignore[attr-defined]

    sid = new_id()
    assert mw.cookie.max_age == 600
    _, header = mw.cookie.set_header(sid, mw.cookie.max_age)
    value, _, attributes = header.partition("; ")
    assert value.startswith(f"sid={sid}.")  # signed with the newest secret
    for attribute in ("Max-Age=600", "Domain=example.com", "Secure", "HttpOnly", "SameSite=Strict"):
        assert attribute in attributes.split("; ")
    # A cookie signed with the older secret is still accepted: rotation works.
    _, old = SessionCookie("sid", secret=OLD_SECRET).set_header(sid, None)
    assert mw.cookie.ids(old.partition(";")[0]) == [sid]

    # The cookie is Secure and for example.com: browse there, over HTTPS.
    https = {"wsgi.url_scheme": "https", "HTTP_HOST": "www.example.com"}
    client = webtest.TestApp(mw, extra_environ=https)
    assert client.get("/").text.startswith("n=1")
    assert client.get("/").text.startswith("n=2")


@pytest.mark.parametrize("spec", FILTER_SPECS.values(), ids=FILTER_SPECS.keys())
def test_loadfilter_refuses_bad_values_naming_the_option(spec: str, tmp_path: Path) -> None:
    uri = write_ini(tmp_path / "bad.ini", spec, "secure = sometimes\n")
    with pytest.raises(ValueError, match="secure"):
        loadwsgi.loadfilter(uri, name="session")(counter_app)
    uri = write_ini(tmp_path / "typo.ini", spec, "max_lifetim = 60\n")
    with pytest.raises(ValueError, match="max_lifetim"):
        loadwsgi.loadfilter(uri, name="session")(counter_app)


def test_defaults_section_is_not_taken_for_options(
    tmp_path: Path, closing: list[SessionMiddleware]
) -> None:
    """[DEFAULT] values (and PasteDeploy's ``here``) reach global_conf only."""
    ini = tmp_path / "app.ini"
    ini.write_text("[DEFAULT]\ndebug = true\n\n[filter:session]\nuse = egg:wsgi_session\n")
    mw = loadwsgi.loadfilter(f"config:{ini}", name="session")(counter_app)
    closing.append(mw)
    assert mw.manager.max_lifetime == 3600.0


def test_example_ini_configures_the_pyramid_example() -> None:
    """examples/pyramid.ini: wsgi_session.* settings read by config.include."""
    from pyramid.interfaces import ISessionFactory

    load_example("pyramid_app")  # the .ini names it as call:pyramid_app:main
    app = loadwsgi.loadapp(f"config:{EXAMPLES / 'pyramid.ini'}")
    factory = app.registry.getUtility(ISessionFactory)
    manager = factory.manager
    try:
        assert manager.max_lifetime == 1800.0
        assert manager.absolute_lifetime == 43200.0
        client = webtest.TestApp(app)
        assert "Visits: 1" in client.get("/").text
        assert "." in client.cookies["session_id"]  # the example signs its cookies
        check_counter(app)
        check_login_regenerates(app, lambda sid: manager.load(sid) is not None)
        check_logout_destroys(app, lambda sid: manager.load(sid) is not None)
    finally:
        factory.close()
