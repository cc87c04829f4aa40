"""Strict configuration: every bad option fails at construction, naming itself."""

from __future__ import annotations

from typing import Any

import pytest
from security_support import call, environ_for

from wsgi_session import SessionMiddleware, register
from wsgi_session.providers.memory import MemoryProvider


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return []


NAN = float("nan")
INF = float("inf")
GOOD_SECRET = "s" * 32

# (id, options, exception, text the message must contain)
BAD: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    # lifetimes and intervals
    ("max_lifetime-zero", {"max_lifetime": 0}, ValueError, "max_lifetime"),
    ("max_lifetime-negative", {"max_lifetime": -1}, ValueError, "max_lifetime"),
    ("max_lifetime-nan", {"max_lifetime": NAN}, ValueError, "max_lifetime"),
    ("max_lifetime-inf", {"max_lifetime": INF}, ValueError, "max_lifetime"),
    ("max_lifetime-str", {"max_lifetime": "3600"}, TypeError, "max_lifetime"),
    ("max_lifetime-none", {"max_lifetime": None}, TypeError, "max_lifetime"),
    ("max_lifetime-bool", {"max_lifetime": True}, TypeError, "max_lifetime"),
    ("absolute_lifetime-zero", {"absolute_lifetime": 0}, ValueError, "absolute_lifetime"),
    ("absolute_lifetime-negative", {"absolute_lifetime": -5}, ValueError, "absolute_lifetime"),
    ("absolute_lifetime-str", {"absolute_lifetime": "1d"}, TypeError, "absolute_lifetime"),
    ("gc_interval-negative", {"gc_interval": -1}, ValueError, "gc_interval"),
    ("gc_interval-tiny-negative", {"gc_interval": -0.001}, ValueError, "gc_interval"),
    ("gc_interval-nan", {"gc_interval": NAN}, ValueError, "gc_interval"),
    ("gc_interval-str", {"gc_interval": "60"}, TypeError, "gc_interval"),
    ("cookie_max_age-zero", {"cookie_max_age": 0}, ValueError, "cookie_max_age"),
    ("cookie_max_age-negative", {"cookie_max_age": -1}, ValueError, "cookie_max_age"),
    ("cookie_max_age-float", {"cookie_max_age": 1.5}, TypeError, "cookie_max_age"),
    ("cookie_max_age-bool", {"cookie_max_age": True}, TypeError, "cookie_max_age"),
    # samesite, secure, partitioned
    ("samesite-unknown", {"samesite": "Lx"}, ValueError, "samesite"),
    ("samesite-empty", {"samesite": ""}, ValueError, "samesite"),
    ("samesite-int", {"samesite": 1}, TypeError, "samesite"),
    ("samesite-None-without-secure", {"samesite": "None"}, ValueError, "samesite"),
    ("samesite-none-without-secure", {"samesite": "none"}, ValueError, "samesite"),
    ("partitioned-without-secure", {"partitioned": True}, ValueError, "partitioned"),
    ("partitioned-str", {"partitioned": "yes", "secure": True}, TypeError, "partitioned"),
    ("secure-str", {"secure": "yes"}, TypeError, "secure"),
    ("secure-int", {"secure": 1}, TypeError, "secure"),
    ("httponly-none", {"httponly": None}, TypeError, "httponly"),
    # cookie names that would break or inject a header
    ("cookie_name-empty", {"cookie_name": ""}, ValueError, "cookie_name"),
    ("cookie_name-semicolon", {"cookie_name": "a;b"}, ValueError, "cookie_name"),
    ("cookie_name-comma", {"cookie_name": "a,b"}, ValueError, "cookie_name"),
    ("cookie_name-space", {"cookie_name": "a b"}, ValueError, "cookie_name"),
    ("cookie_name-tab", {"cookie_name": "a\tb"}, ValueError, "cookie_name"),
    ("cookie_name-crlf", {"cookie_name": "a\r\nSet-Cookie: x"}, ValueError, "cookie_name"),
    ("cookie_name-lf", {"cookie_name": "a\n"}, ValueError, "cookie_name"),
    ("cookie_name-nul", {"cookie_name": "a\x00b"}, ValueError, "cookie_name"),
    ("cookie_name-del", {"cookie_name": "a\x7f"}, ValueError, "cookie_name"),
    ("cookie_name-equals", {"cookie_name": "a=b"}, ValueError, "cookie_name"),
    ("cookie_name-quote", {"cookie_name": 'a"b'}, ValueError, "cookie_name"),
    ("cookie_name-non-ascii", {"cookie_name": "sessi\xf6n"}, ValueError, "cookie_name"),
    ("cookie_name-bytes", {"cookie_name": b"sid"}, TypeError, "cookie_name"),
    # cookie-name prefixes without the attributes browsers require for them
    ("host-prefix-insecure", {"cookie_name": "__Host-sid"}, ValueError, "cookie_name"),
    ("host-prefix-lowercase", {"cookie_name": "__host-sid"}, ValueError, "cookie_name"),
    (
        "host-prefix-domain",
        {"cookie_name": "__Host-sid", "secure": True, "cookie_domain": "example.com"},
        ValueError,
        "cookie_name",
    ),
    (
        "host-prefix-path",
        {"cookie_name": "__Host-sid", "secure": True, "cookie_path": "/app"},
        ValueError,
        "cookie_name",
    ),
    ("secure-prefix-insecure", {"cookie_name": "__Secure-sid"}, ValueError, "cookie_name"),
    ("secure-prefix-uppercase", {"cookie_name": "__SECURE-sid"}, ValueError, "cookie_name"),
    # paths
    ("cookie_path-empty", {"cookie_path": ""}, ValueError, "cookie_path"),
    ("cookie_path-relative", {"cookie_path": "app"}, ValueError, "cookie_path"),
    ("cookie_path-semicolon", {"cookie_path": "/a;Domain=evil"}, ValueError, "cookie_path"),
    ("cookie_path-comma", {"cookie_path": "/a,b"}, ValueError, "cookie_path"),
    ("cookie_path-space", {"cookie_path": "/a b"}, ValueError, "cookie_path"),
    ("cookie_path-crlf", {"cookie_path": "/\r\nX: y"}, ValueError, "cookie_path"),
    ("cookie_path-nul", {"cookie_path": "/\x00"}, ValueError, "cookie_path"),
    ("cookie_path-control", {"cookie_path": "/\x1b"}, ValueError, "cookie_path"),
    ("cookie_path-non-ascii", {"cookie_path": "/\xe9"}, ValueError, "cookie_path"),
    ("cookie_path-none", {"cookie_path": None}, TypeError, "cookie_path"),
    # domains
    ("cookie_domain-empty", {"cookie_domain": ""}, ValueError, "cookie_domain"),
    ("cookie_domain-semicolon", {"cookie_domain": "a.com;Secure"}, ValueError, "cookie_domain"),
    ("cookie_domain-comma", {"cookie_domain": "a.com,b.com"}, ValueError, "cookie_domain"),
    ("cookie_domain-space", {"cookie_domain": "a .com"}, ValueError, "cookie_domain"),
    ("cookie_domain-crlf", {"cookie_domain": "a.com\r\n"}, ValueError, "cookie_domain"),
    ("cookie_domain-nul", {"cookie_domain": "a\x00.com"}, ValueError, "cookie_domain"),
    ("cookie_domain-empty-label", {"cookie_domain": "a..com"}, ValueError, "cookie_domain"),
    ("cookie_domain-int", {"cookie_domain": 5}, TypeError, "cookie_domain"),
    # secrets
    ("secret-short", {"secret": "short"}, ValueError, "secret"),
    ("secret-empty", {"secret": ""}, ValueError, "secret"),
    ("secret-empty-list", {"secret": []}, TypeError, "secret"),
    ("secret-short-in-list", {"secret": [GOOD_SECRET, "short"]}, ValueError, "secret"),
    ("secret-int-in-list", {"secret": [GOOD_SECRET, 5]}, TypeError, "secret"),
    ("secret-int", {"secret": 42}, TypeError, "secret"),
    ("secret-dict", {"secret": {"k": GOOD_SECRET}}, TypeError, "secret"),
    # the rest
    ("environ_key-empty", {"environ_key": ""}, TypeError, "environ_key"),
    ("environ_key-int", {"environ_key": 3}, TypeError, "environ_key"),
    ("provider-unknown", {"provider": "nope"}, ValueError, "provider"),
    ("provider-int", {"provider": 42}, TypeError, "provider"),
    ("provider_options-str", {"provider_options": "max_sessions=3"}, TypeError,
     "provider_options"),
    ("provider_options-with-instance",
     {"provider": MemoryProvider(), "provider_options": {"max_sessions": 3}}, ValueError,
     "provider_options"),
    ("max_sessions-zero", {"provider_options": {"max_sessions": 0}}, ValueError, "max_sessions"),
    ("max_sessions-negative", {"provider_options": {"max_sessions": -1}}, ValueError,
     "max_sessions"),
    ("gc_batch-zero", {"provider_options": {"gc_batch": 0}}, ValueError, "gc_batch"),
    ("provider_options-unknown", {"provider_options": {"bogus": 1}}, TypeError, "bogus"),
    ("clock-not-callable", {"clock": "time"}, TypeError, "clock"),
]


@pytest.mark.parametrize(
    ("options", "error", "named"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
)
def test_bad_option_fails_at_construction_naming_it(
    options: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error) as info:
        SessionMiddleware(app, **options)
    assert named in str(info.value)


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("samesite-None-with-secure", {"samesite": "None", "secure": True}),
    ("samesite-lowercase", {"samesite": "strict"}),
    ("samesite-off", {"samesite": None}),
    ("partitioned-with-secure", {"partitioned": True, "secure": True, "samesite": "None"}),
    ("domain-with-dot", {"cookie_domain": ".example.com"}),
    ("domain-localhost", {"cookie_domain": "localhost"}),
    ("nested-path", {"cookie_path": "/app/v1"}),
    ("host-prefix", {"cookie_name": "__Host-sid", "secure": True}),
    (
        "secure-prefix-domain-path",
        {"cookie_name": "__Secure-sid", "secure": True, "cookie_domain": "example.com",
         "cookie_path": "/app"},
    ),
    ("secret-rotation", {"secret": [GOOD_SECRET, b"b" * 16]}),
    ("float-lifetimes", {"max_lifetime": 0.5, "absolute_lifetime": 7200.0}),
    ("no-gc", {"gc_interval": 0}),
    ("no-gc-none", {"gc_interval": None}),
    ("max_sessions", {"provider_options": {"max_sessions": 10}}),
]


@pytest.mark.parametrize("options", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_options_are_accepted(options: dict[str, Any]) -> None:
    options.setdefault("gc_interval", None)
    with SessionMiddleware(app, **options):
        pass


def test_cookie_attributes_follow_the_options() -> None:
    def writer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi_session.session"]["k"] = 1
        start_response("200 OK", [])
        return []

    with SessionMiddleware(
        writer,
        gc_interval=None,
        cookie_name="__Host-sid",
        secure=True,
        samesite="none",
        partitioned=True,
        cookie_max_age=600,
    ) as mw:
        (header,) = call(mw, environ_for("/")).cookies()
    attrs = header.split("; ")
    assert attrs[0].startswith("__Host-sid=")
    assert set(attrs[1:]) == {
        "Max-Age=600",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=None",
        "Partitioned",
    }


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({}, "session_id"),
        ({"secure": True}, "__Host-session_id"),
        ({"secure": True, "cookie_domain": "example.com"}, "__Secure-session_id"),
        ({"secure": True, "cookie_path": "/app"}, "__Secure-session_id"),
        ({"cookie_domain": "example.com"}, "session_id"),
        ({"secure": True, "cookie_name": "sid"}, "sid"),
    ],
    ids=["plain", "secure", "secure-domain", "secure-path", "domain", "named"],
)
def test_the_default_cookie_name_is_the_safest_the_options_allow(
    options: dict[str, Any], name: str
) -> None:
    def writer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi_session.session"]["k"] = 1
        start_response("200 OK", [])
        return []

    path = options.get("cookie_path", "/")
    with SessionMiddleware(writer, gc_interval=None, **options) as mw:
        sid = call(mw, environ_for(path)).cookie_value(name)
        assert sid  # and the name reads it back: the same session
        assert call(mw, environ_for(path, f"{name}={sid}")).cookie_value(name) is None
    assert mw.cookie.name == name


def test_a_refused_option_builds_no_provider() -> None:
    """Options are checked before the provider is made: nothing to leak."""
    built: list[object] = []

    class Tracked(MemoryProvider):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            built.append(self)

    register("tracked-for-test_config", Tracked)
    with pytest.raises(ValueError, match="samesite"):
        SessionMiddleware(app, provider="tracked-for-test_config", samesite="bogus")
    with pytest.raises(ValueError, match="max_lifetime"):
        SessionMiddleware(app, provider="tracked-for-test_config", max_lifetime=0)
    assert built == []


def _as_ini(options: dict[str, Any]) -> dict[str, str] | None:
    """The options as an .ini file would give them, or None if it cannot."""
    out = {}
    for key, value in options.items():
        if type(value) is bool:
            out[key] = "true" if value else "false"
        elif type(value) in (int, float, str):
            text = str(value)
            if text != text.strip():
                return None  # an .ini file cannot carry surrounding whitespace
            if text == "" and key in ("samesite", "cookie_domain", "secret", "cookie_name"):
                return None  # in an .ini file, empty means None for these
            out[key] = text
        else:
            return None
    return out


PASTE = [
    (case[0], ini, case[3])
    for case in BAD
    if case[2] is ValueError
    and "provider" not in case[1]
    and (ini := _as_ini(case[1])) is not None
]


@pytest.mark.parametrize(("conf", "named"), [p[1:] for p in PASTE], ids=[p[0] for p in PASTE])
def test_the_same_checks_apply_to_pastedeploy_strings(conf: dict[str, str], named: str) -> None:
    from wsgi_session.paste import filter_app_factory

    with pytest.raises((ValueError, TypeError)) as info:
        filter_app_factory(app, {}, **conf)
    assert named in str(info.value)
