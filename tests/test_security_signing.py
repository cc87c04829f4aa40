"""Cookie value hygiene and signed ids: what cannot be ours never reaches the store.

"No store lookup" is observed through a real provider (a MemoryProvider
subclass that counts its ``load`` calls) handed to the middleware.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from security_support import CountingProvider, Response, call, environ_for

from wsgi_session import SessionMiddleware
from wsgi_session.cookies import MAX_CANDIDATES
from wsgi_session.ids import new_id

OLD = "old-secret-0123456789abcdef"
NEW = "new-secret-fedcba9876543210"


def counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["wsgi_session.session"]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def send(mw: SessionMiddleware, cookie: str | None) -> Response:
    return call(mw, environ_for("/", None if cookie is None else f"session_id={cookie}"))


@pytest.fixture
def provider() -> CountingProvider:
    return CountingProvider()


def middleware(provider: CountingProvider, secret: Any = None) -> SessionMiddleware:
    return SessionMiddleware(counter, provider=provider, gc_interval=None, secret=secret)


def flip(text: str, index: int) -> str:
    c = text[index]
    return text[:index] + ("A" if c != "A" else "B") + text[index + 1 :]


# -- plain ids: shape before store ------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        "A" * 42,
        "A" * 44,
        "A" * 42 + "+",  # standard base64, not ours
        "A" * 42 + "=",
        "A" * 42 + "\xe9",
        "A" * 10_000,
        "../../etc/passwd",
        "A" * 21 + " " + "A" * 21,
    ],
    ids=[
        "empty",
        "short",
        "42-chars",
        "44-chars",
        "plus",
        "padding",
        "latin-1",
        "huge",
        "path",
        "inner-space",
    ],
)
def test_malformed_ids_are_discarded_without_a_lookup(
    provider: CountingProvider, value: str
) -> None:
    mw = middleware(provider)
    res = send(mw, value)
    assert res.body == b"1"  # a new session ...
    assert res.cookie_value() not in (None, value)  # ... with a fresh id
    assert provider.loads == 0


def test_well_formed_unknown_id_costs_one_lookup(provider: CountingProvider) -> None:
    mw = middleware(provider)
    send(mw, new_id())
    assert provider.loads == 1


def test_duplicate_cookies_cost_at_most_a_few_lookups(provider: CountingProvider) -> None:
    mw = middleware(provider)
    header = "; ".join(f"session_id={new_id()}" for _ in range(1000))
    res = call(mw, environ_for("/", header))
    assert res.body == b"1"
    assert provider.loads <= MAX_CANDIDATES


def test_a_live_id_among_duplicates_is_found(provider: CountingProvider) -> None:
    """Browsers send cookies of the same name from several paths or domains."""
    mw = middleware(provider)
    live = send(mw, None).cookie_value()
    res = call(mw, environ_for("/", f"session_id={new_id()}; other=1; session_id={live}"))
    assert res.body == b"2"


# -- signed ids --------------------------------------------------------------


def test_signed_cookie_round_trip(provider: CountingProvider) -> None:
    mw = middleware(provider, NEW)
    cookie = send(mw, None).cookie_value()
    assert cookie is not None
    sid, dot, signature = cookie.partition(".")
    assert dot and len(sid) == 43 and len(signature) == 43
    assert send(mw, cookie).body == b"2"
    assert provider.loads == 1


def forgeries(cookie: str) -> dict[str, str]:
    sid, _, signature = cookie.partition(".")
    other = new_id()
    return {
        "unsigned-live-id": sid,  # a live id is useless without its signature
        "forged-id-and-signature": f"{other}.{new_id()}",
        "live-id-foreign-signature": f"{sid}.{new_id()}",
        "tampered-signature": f"{sid}.{flip(signature, 5)}",
        "tampered-id": f"{flip(sid, 5)}.{signature}",
        "signature-of-another-id": f"{other}.{signature}",
        "truncated-signature": f"{sid}.{signature[:-1]}",
        "empty-signature": f"{sid}.",
        "non-ascii-signature": f"{sid}.{signature[:-1]}\xe9",
        "long-non-ascii-signature": f"{sid}." + "\xe9\xff" * 30,
        "double-signature": f"{cookie}.{signature}",
    }


@pytest.mark.parametrize("kind", list(forgeries(f"{new_id()}.{new_id()}")))
def test_forged_or_tampered_signature_is_refused_without_lookup(
    provider: CountingProvider, kind: str
) -> None:
    mw = middleware(provider, NEW)
    cookie = send(mw, None).cookie_value()
    assert cookie is not None
    value = forgeries(cookie)[kind]
    res = send(mw, value)
    assert res.status == "200 OK"
    assert res.body == b"1"  # a new session, not the live one
    assert res.cookie_value() not in (None, value, cookie)
    assert provider.loads == 0


def test_cookie_signed_with_another_secret_is_refused(provider: CountingProvider) -> None:
    cookie = send(middleware(provider, OLD), None).cookie_value()
    assert send(middleware(provider, NEW), cookie).body == b"1"
    assert provider.loads == 0


def test_rotation_old_secret_still_verifies_new_cookies_use_the_newest(
    provider: CountingProvider,
) -> None:
    before = middleware(provider, OLD)
    old_cookie = send(before, None).cookie_value()

    rotated = middleware(provider, [NEW, OLD])  # newest first
    assert send(rotated, old_cookie).body == b"2"  # existing users stay logged in
    new_cookie = send(rotated, None).cookie_value()
    assert new_cookie is not None

    only_new = middleware(provider, NEW)
    assert send(only_new, new_cookie).body == b"2"  # signed with NEW ...
    assert send(middleware(provider, OLD), new_cookie).body == b"1"  # ... not with OLD
    # Once OLD is retired, cookies signed with it stop working.
    assert send(only_new, old_cookie).body == b"1"


def test_a_cookie_signed_with_an_old_secret_is_re_signed_on_use(
    provider: CountingProvider,
) -> None:
    old_cookie = send(middleware(provider, OLD), None).cookie_value()
    rotated = middleware(provider, [NEW, OLD])
    response = send(rotated, old_cookie)
    assert response.body == b"2"
    resigned = response.cookie_value()
    assert resigned is not None and resigned != old_cookie
    assert resigned.split(".")[0] == old_cookie.split(".")[0]  # same session, new signature
    # Once the client holds the re-signed cookie, nothing more is sent ...
    assert send(rotated, resigned).cookie_value() is None
    # ... and the old secret can be retired without logging the user out.
    assert send(middleware(provider, NEW), resigned).body == b"4"


def test_bytes_secrets_are_accepted(provider: CountingProvider) -> None:
    mw = middleware(provider, [NEW.encode(), OLD.encode()])
    cookie = send(mw, None).cookie_value()
    assert send(middleware(provider, NEW), cookie).body == b"2"


def test_plain_middleware_refuses_signed_values(provider: CountingProvider) -> None:
    """Turning signing off does not make id.signature values acceptable."""
    cookie = send(middleware(provider, NEW), None).cookie_value()
    assert send(middleware(provider), cookie).body == b"1"
    assert provider.loads == 0


# -- parsing cost --------------------------------------------------------------


@pytest.mark.parametrize(
    "template", ['session_id="{}"', '"x"; session_id="{}"', 'a="b"; session_id={}'],
    ids=["quoted", "after-quoted", "unquoted-after-quoted"],
)
def test_quoted_values_are_unquoted(provider: CountingProvider, template: str) -> None:
    mw = middleware(provider)
    live = send(mw, None).cookie_value()
    res = call(mw, environ_for("/", template.format(live)))
    assert res.body == b"2"


def test_hostile_cookie_header_is_parsed_in_linear_time(provider: CountingProvider) -> None:
    """webob's parse_cookie, used before, is quadratic on a quoted value next
    to a long run of name characters: an 8 KB header cost about a second of
    CPU per request. A 1 MB one would take hours; linear parsing, milliseconds."""
    mw = middleware(provider)
    live = send(mw, None).cookie_value()
    header = 'session_id="x"; ' + "A" * 1_000_000 + f'; session_id="{live}"'
    result: list[Response] = []
    worker = threading.Thread(target=lambda: result.append(call(mw, environ_for("/", header))))
    worker.daemon = True
    worker.start()
    worker.join(30)  # a bound for a hang, not a speed measurement
    assert not worker.is_alive(), "parsing a 1 MB Cookie header did not finish"
    assert result[0].body == b"2"
