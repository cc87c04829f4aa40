"""SessionCookie: option checks, the headers it writes, the ids it reads."""

from __future__ import annotations

from typing import Any

import pytest

from wsgi_session.cookies import MAX_CANDIDATES, SessionCookie
from wsgi_session.ids import new_id


def test_default_headers() -> None:
    c = SessionCookie()
    sid = new_id()
    assert c.name == "session_id" and c.max_age is None
    assert c.set_header(sid, None) == (
        "Set-Cookie",
        f"session_id={sid}; Path=/; HttpOnly; SameSite=Lax",
    )
    assert c.set_header(sid, 90) == (
        "Set-Cookie",
        f"session_id={sid}; Max-Age=90; Path=/; HttpOnly; SameSite=Lax",
    )
    assert c.delete_header == (
        "Set-Cookie",
        "session_id=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        "; Path=/; HttpOnly; SameSite=Lax",
    )


def test_every_attribute() -> None:
    c = SessionCookie(
        "s",
        path="/a",
        domain=".example.com",
        secure=True,
        httponly=False,
        samesite="none",
        max_age=60,
        partitioned=True,
    )
    assert c.max_age == 60  # the default the session passes back per call
    _, value = c.set_header("X" * 43, c.max_age)
    assert (
        value
        == "s="
        + "X" * 43
        + "; Max-Age=60; Path=/a; Domain=.example.com; Secure; SameSite=None; Partitioned"
    )
    assert "Max-Age=0" in c.delete_header[1] and "Max-Age=60" not in c.delete_header[1]


@pytest.mark.parametrize(
    ("options", "error", "name"),
    [
        ({"name": ""}, ValueError, "cookie_name"),
        ({"name": "a;b"}, ValueError, "cookie_name"),
        ({"name": "a b"}, ValueError, "cookie_name"),
        ({"name": "a\r\nSet-Cookie: x"}, ValueError, "cookie_name"),
        ({"name": 5}, TypeError, "cookie_name"),
        ({"path": "no-slash"}, ValueError, "cookie_path"),
        ({"path": "/a;b"}, ValueError, "cookie_path"),
        ({"path": "/a,b"}, ValueError, "cookie_path"),
        ({"path": "/a b"}, ValueError, "cookie_path"),
        ({"path": "/a\nb"}, ValueError, "cookie_path"),
        ({"path": "/\x00"}, ValueError, "cookie_path"),
        ({"domain": "ex ample.com"}, ValueError, "cookie_domain"),
        ({"domain": "example.com;"}, ValueError, "cookie_domain"),
        ({"domain": ""}, ValueError, "cookie_domain"),
        ({"samesite": "lenient"}, ValueError, "samesite"),
        ({"samesite": "None"}, ValueError, "samesite"),
        ({"samesite": 1}, TypeError, "samesite"),
        ({"secure": "yes"}, TypeError, "secure"),
        ({"httponly": 1}, TypeError, "httponly"),
        ({"partitioned": True}, ValueError, "partitioned"),
        ({"max_age": 0}, ValueError, "cookie_max_age"),
        ({"max_age": 1.5}, TypeError, "cookie_max_age"),
        ({"secret": "short"}, ValueError, "secret"),
        ({"secret": []}, TypeError, "secret"),
        ({"secret": [b"x" * 32, 5]}, TypeError, "secret"),
        ({"name": "__Host-s"}, ValueError, "cookie_name"),
        ({"name": "__HOST-s", "secure": True, "path": "/a"}, ValueError, "cookie_name"),
        ({"name": "__Host-s", "secure": True, "domain": "a.example"}, ValueError, "cookie_name"),
        ({"name": "__secure-s"}, ValueError, "cookie_name"),
    ],
    ids=lambda v: repr(v)[:50] if not isinstance(v, type) else v.__name__,
)
def test_bad_options(options: dict[str, Any], error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        SessionCookie(**options)


def test_reads_only_well_formed_ids_of_its_own_name() -> None:
    c = SessionCookie()
    a, b = new_id(), new_id()
    header = f'other={a}; session_id=bad; session_id={a} ; xsession_id={b}; session_id="{b}"'
    assert c.ids(header) == [a, b]
    assert c.ids(f"session_id={a}; session_id={a}") == [a]
    assert c.ids("") == [] and c.ids("nothing here") == []


def test_reads_a_bounded_number_of_candidates() -> None:
    c = SessionCookie()
    some = [new_id() for _ in range(MAX_CANDIDATES)]
    assert c.ids("; ".join(f"session_id={sid}" for sid in some)) == some
    # More than that: none (the one the user meant could be past the bound).
    header = "; ".join(f"session_id={new_id()}" for _ in range(50))
    assert c.ids(header) == []


def test_signed_cookies_refuse_forgeries_and_rotate() -> None:
    old_secret, new_secret = "o" * 32, "n" * 32
    old = SessionCookie(secret=old_secret)
    sid = new_id()
    old_value = old.set_header(sid, None)[1].split(";")[0].split("=", 1)[1]
    assert old_value.startswith(sid + ".")
    assert old.ids(f"session_id={old_value}") == [sid]
    assert old.ids(f"session_id={sid}") == []  # unsigned: refused
    assert (
        old.ids(f"session_id={new_id()}.{old_value.split('.')[1]}") == []
    )  # transplanted signature
    tampered = old_value[:-1] + ("B" if old_value.endswith("A") else "A")
    assert old.ids(f"session_id={tampered}") == []
    rotated = SessionCookie(secret=[new_secret, old_secret])
    assert rotated.ids(f"session_id={old_value}") == [sid]  # the old secret still verifies
    new_value = rotated.set_header(sid, None)[1].split(";")[0].split("=", 1)[1]
    assert new_value != old_value  # new cookies use the newest secret
    assert SessionCookie(secret=new_secret).ids(f"session_id={new_value}") == [sid]


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({}, "session_id"),
        ({"secure": True}, "__Host-session_id"),
        ({"secure": True, "domain": "example.com"}, "__Secure-session_id"),
        ({"secure": True, "path": "/app"}, "__Secure-session_id"),
        ({"path": "/app"}, "session_id"),
    ],
    ids=["plain", "secure", "secure-domain", "secure-path", "path"],
)
def test_the_default_name_is_the_safest_the_attributes_allow(
    options: dict[str, Any], name: str
) -> None:
    c = SessionCookie(**options)
    sid = new_id()
    assert c.name == name
    assert c.set_header(sid, None)[1].startswith(f"{name}={sid};")
    assert c.ids(f"{name}={sid}") == [sid]


def test_prefixed_names_with_their_attributes_are_accepted() -> None:
    assert SessionCookie("__Host-s", secure=True).name == "__Host-s"
    assert SessionCookie("__Secure-s", secure=True, domain="example.com", path="/a").name
