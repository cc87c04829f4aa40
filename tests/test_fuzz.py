"""Property-based fuzzing of the middleware with hostile Cookie headers and paths.

Headers are text whose characters are the bytes 0-255, as PEP 3333 hands
them to an app (decoded latin-1). Whatever arrives, the middleware must not
raise, must not answer with a status of its own, must not adopt an id the
client made up, and must not ask the store about a value that cannot be one
of its ids.
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import CountingProvider, call, environ_for

from wsgi_session import SessionMiddleware, get_session
from wsgi_session.cookies import MAX_CANDIDATES
from wsgi_session.ids import is_valid_id

SECRET = "fuzzing-secret-0123456789"
LIVE = ["\x00LIVE0\x00", "\x00LIVE1\x00"]  # replaced by the cookie values of live sessions
ID_ALPHABET = string.ascii_letters + string.digits + "-_"

latin1 = st.characters(min_codepoint=0, max_codepoint=255)
latin1_text = st.text(latin1, max_size=60)
id_shaped = st.text(st.sampled_from(ID_ALPHABET), min_size=43, max_size=43)
near_id = st.text(st.sampled_from(ID_ALPHABET + "+/=.\"' "), min_size=40, max_size=46)
huge = st.builds(
    lambda unit, n: unit * n,
    st.sampled_from(["A", "\xff", ";", '"', "a=b;", "session_id=", "\r\n", "\x00"]),
    st.integers(1_000, 20_000),  # servers cap a header near 8-64 KB
)
live = st.sampled_from(LIVE)

plain_value = st.one_of(
    latin1_text,
    id_shaped,
    near_id,
    live,
    st.builds(lambda a, b: a + b, live, latin1_text),  # a live id with junk after it
    st.builds(lambda a, b: a + "." + b, id_shaped, st.one_of(id_shaped, latin1_text)),
    huge,
)
value = st.one_of(plain_value, plain_value.map(lambda v: f'"{v}"'))
name = st.one_of(
    st.just("session_id"),
    st.sampled_from([" session_id", "session_id ", "Session_Id", "session_id2", "$session_id"]),
    latin1_text,
)
pair = st.builds(
    lambda n, eq, v: n + eq + v, name, st.sampled_from(["=", "", "==", " = "]), value
)
structured = st.builds(
    lambda pairs, sep: sep.join(pairs),
    st.lists(pair, max_size=8),
    st.sampled_from(["; ", ";", " ;", ",", ";;", ""]),
)
duplicates = st.builds(
    lambda v, n: "; ".join([f"session_id={v}"] * n),
    st.one_of(id_shaped, live),
    st.integers(1, 2000),
)
cookie_header = st.one_of(
    st.none(),
    structured,
    duplicates,
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.builds(lambda a, b: a + b, structured, latin1_text),
)
path = st.one_of(
    latin1_text.map(lambda p: "/" + p),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
    huge,
)
ACTIONS = ["none", "read", "write", "regenerate", "destroy", "destroy_write", "stream_write"]
request = st.tuples(cookie_header, path, st.sampled_from(ACTIONS))


def fuzz_app(environ: dict[str, Any], start_response: Any) -> Any:
    """Does what ``environ["fuzz.action"]`` says, using the path as key and value."""
    action = environ["fuzz.action"]
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "text/plain")]
    if action == "none":
        start_response("200 OK", headers)
        return [b"untouched"]
    session = get_session(environ)
    environ["fuzz.session"] = session
    if action == "read":
        session.get(path)
        list(session.items())
    elif action == "write":
        session["path"] = path
        # A NUL cannot be in a key (no store could hold it): refused at once.
        key = path or "empty"
        try:
            session[key] = len(path)
        except ValueError:
            assert "\x00" in key
            session[key.replace("\x00", "NUL")] = len(path)
    elif action == "regenerate":
        session.regenerate()
        session["user"] = "someone"
    elif action == "destroy":
        session.destroy()
    elif action == "destroy_write":
        session.destroy()
        session["after"] = path
    elif action == "stream_write":

        def body() -> Any:
            yield b"a"
            if not session.new:  # a new session cannot start once the headers are out
                session["late"] = path
            yield b"b"

        start_response("200 OK", headers)
        return body()
    start_response("200 OK", headers)
    return [b"ok"]


def cookie_shape_ok(value: str, signed: bool) -> bool:
    if value == "":
        return True  # the deletion cookie
    if not signed:
        return is_valid_id(value)
    sid, dot, signature = value.partition(".")
    return bool(dot) and is_valid_id(sid) and is_valid_id(signature)


@pytest.mark.parametrize("secret", [None, SECRET], ids=["plain", "signed"])
@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(requests=st.lists(request, min_size=1, max_size=3))
def test_hostile_cookies_and_paths(secret: str | None, requests: list[Any]) -> None:
    provider = CountingProvider(max_sessions=1000)
    mw = SessionMiddleware(fuzz_app, provider=provider, gc_interval=None, secret=secret)
    # Two live sessions whose cookies the generated headers may carry.
    live_values = []
    for _ in LIVE:
        res = call(mw, environ_for("/", **{"fuzz.action": "write"}))
        cookie = res.cookie_value()
        assert cookie
        live_values.append(cookie)
    issued = {v.partition(".")[0] for v in live_values}  # every sid we handed out

    for header, req_path, action in requests:
        if header is not None:
            for placeholder, cookie in zip(LIVE, live_values, strict=True):
                header = header.replace(placeholder, cookie)
        environ = environ_for(req_path, header, **{"fuzz.action": action})
        loads_before = provider.loads

        res = call(mw, environ)  # must not raise

        assert res.status == "200 OK"  # the app's own status, never a 500 of ours
        assert provider.malformed == []  # no lookup for a value that cannot be an id
        assert provider.loads - loads_before <= MAX_CANDIDATES
        for set_cookie in res.cookies():
            assert "\r" not in set_cookie and "\n" not in set_cookie
        cookie = res.cookie_value()
        if cookie is not None:
            assert cookie_shape_ok(cookie, signed=secret is not None)
        session = environ.get("fuzz.session")
        if session is not None and session.loaded and session.sid is not None:
            sid = session.sid
            # Either a session we issued earlier, or fresh: never an id the
            # client made up.
            assert sid in issued or sid not in (header or "")
            issued.add(sid)
        if cookie:
            sid = cookie.partition(".")[0]
            assert sid in issued or sid not in (header or "")
            issued.add(sid)
    mw.close()
