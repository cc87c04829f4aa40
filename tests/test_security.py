"""Fixation, id entropy and lifetimes, through the public API."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from security_support import call, environ_for, issued_id, visit

from wsgi_session import Manager, SessionMiddleware
from wsgi_session.ids import is_valid_id, new_id
from wsgi_session.providers.memory import MemoryProvider

# -- fixation: ids the server did not issue, or no longer honours -----------


def test_forged_id_is_refused_and_replaced(make_app: Any) -> None:
    mw, client = make_app()
    forged = new_id()  # well formed, never issued
    res = visit(client, forged)
    assert res.text == "n=1 user=None"
    fresh = issued_id(res)
    assert fresh is not None and fresh != forged and is_valid_id(fresh)
    # The forged id still means nothing, and was never stored.
    assert visit(client, forged).text == "n=1 user=None"
    assert visit(client, forged, "/peek").headers.getall("Set-Cookie") == []
    assert visit(client, fresh).text == "n=2 user=None"
    assert len(mw.manager.provider) == 2  # fresh, plus the one the second visit made


def test_expired_id_is_refused(make_app: Any, clock: Any) -> None:
    _, client = make_app(max_lifetime=60)
    old = issued_id(visit(client, None))
    assert old is not None
    clock.advance(61)
    res = visit(client, old)
    assert res.text == "n=1 user=None"  # the old data is not served
    fresh = issued_id(res)
    assert fresh is not None and fresh != old
    assert visit(client, old, "/peek").text == "n=0 user=None"


def test_destroyed_id_is_refused(make_app: Any) -> None:
    _, client = make_app()
    old = issued_id(visit(client, None))
    visit(client, old)  # n=2
    res = visit(client, old, "/logout")
    assert "Max-Age=0" in res.headers["Set-Cookie"]
    res = visit(client, old)
    assert res.text == "n=1 user=None"
    assert issued_id(res) not in (None, old)


def test_regenerated_away_id_is_refused(make_app: Any) -> None:
    _, client = make_app()
    old = issued_id(visit(client, None))
    res = visit(client, old, "/login")
    new = issued_id(res)
    assert new is not None and new != old
    assert res.text == "n=1 user=alice"
    assert visit(client, new, "/peek").text == "n=1 user=alice"
    # The id from before the login grants nothing: not the user, not the data.
    assert visit(client, old, "/peek").text == "n=0 user=None"


def test_planted_session_is_worthless_after_login(make_app: Any) -> None:
    """The classic fixation attack: the attacker gets a real session id,
    plants it in the victim's browser, and waits for the victim to log in."""
    _, client = make_app()
    planted = issued_id(visit(client, None))  # the attacker's own, live session
    victim = visit(client, planted, "/login")
    victim_id = issued_id(victim)
    assert victim_id is not None and victim_id != planted
    assert visit(client, planted, "/peek").text == "n=0 user=None"  # attacker: nothing
    assert visit(client, victim_id, "/peek").text == "n=1 user=alice"


def test_login_on_a_brand_new_session_issues_a_fresh_id(make_app: Any) -> None:
    _, client = make_app()
    forged = new_id()
    res = visit(client, forged, "/login")  # regenerate() on a session not stored yet
    sid = issued_id(res)
    assert sid is not None and sid != forged
    assert visit(client, sid, "/peek").text == "n=0 user=alice"


# -- ids ---------------------------------------------------------------------


def test_ten_thousand_session_ids_are_distinct_and_256_bits() -> None:
    def writer(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi_session.session"]["k"] = 1
        start_response("200 OK", [])
        return []

    with SessionMiddleware(writer, gc_interval=None) as mw:
        ids = []
        for _ in range(10_000):
            value = call(mw, environ_for("/")).cookie_value()
            assert value is not None
            ids.append(value)
    assert len(set(ids)) == 10_000
    raw = []
    for sid in ids:
        assert is_valid_id(sid)
        decoded = base64.urlsafe_b64decode(sid + "=")
        assert len(decoded) * 8 >= 256
        raw.append(decoded)
    # A sanity check that the bits are not constant or badly skewed: over
    # 2,560,000 random bits the share of ones is 0.5 +- 0.0003 (1 sigma).
    ones = sum(int.from_bytes(b, "big").bit_count() for b in raw)
    assert 0.49 < ones / (len(raw) * 256) < 0.51
    # Nor do they share prefixes, as counters or timestamps would.
    assert len({sid[:8] for sid in ids}) == 10_000


# -- absolute lifetime ---------------------------------------------------------


def test_absolute_lifetime_ends_a_busy_session_on_load(make_app: Any, clock: Any) -> None:
    _, client = make_app(max_lifetime=60, absolute_lifetime=100)
    sid = issued_id(visit(client, None))
    for n in range(2, 5):  # used every 30 s: never idle for long
        clock.advance(30)
        assert visit(client, sid).text == f"n={n} user=None"
    clock.advance(11)  # 101 s after creation
    res = visit(client, sid)
    assert res.text == "n=1 user=None"
    assert issued_id(res) != sid


def test_regenerate_does_not_extend_the_absolute_lifetime(make_app: Any, clock: Any) -> None:
    _, client = make_app(max_lifetime=60, absolute_lifetime=100)
    sid = issued_id(visit(client, None))
    clock.advance(50)
    new = issued_id(visit(client, sid, "/login"))
    clock.advance(51)
    assert visit(client, new, "/peek").text == "n=0 user=None"


def test_gc_removes_busy_sessions_past_their_absolute_lifetime() -> None:
    """Sessions in constant use sit at the recent end of the recency order,
    behind live ones: the sweep must still find them by their deadline."""
    clock = [1000.0]
    provider = MemoryProvider()
    manager = Manager(
        provider, max_lifetime=60, absolute_lifetime=100, gc_interval=None, clock=lambda: clock[0]
    )
    busy = [manager.create({"u": i}) for i in range(5)]
    clock[0] += 50
    for sid in busy:
        assert manager.load(sid) is not None
    clock[0] += 45
    fresh = manager.create({"u": "fresh"})  # live, and colder than the busy ones below
    clock[0] += 4  # 99 s: the busy sessions are used right before their deadline
    for sid in busy:
        assert manager.load(sid) is not None
    clock[0] += 2  # 101 s
    assert manager.gc() == 5
    assert len(provider) == 1
    assert manager.load(fresh).data == {"u": "fresh"}
    manager.close()


def test_gc_thread_enforces_absolute_lifetime_without_any_request() -> None:
    clock = [1000.0]
    provider = MemoryProvider()
    manager = Manager(
        provider, max_lifetime=60, absolute_lifetime=100, gc_interval=0.005, clock=lambda: clock[0]
    )
    sids = [manager.create({"u": i}) for i in range(3)]
    for _ in range(3):
        clock[0] += 30
        for sid in sids:
            assert manager.load(sid) is not None
    manager.start_gc()
    try:
        clock[0] += 11
        deadline = time.monotonic() + 2.0
        while len(provider) and time.monotonic() < deadline:
            threading.Event().wait(0.005)
        assert len(provider) == 0
    finally:
        manager.close()
