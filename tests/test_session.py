"""Session: the mapping, change tracking, values, identity."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from wsgi_session import Manager, Session
from wsgi_session.cookies import SessionCookie
from wsgi_session.errors import SessionError
from wsgi_session.session import KEEP, SEND


@pytest.fixture
def manager(clock) -> Manager:
    m = Manager("memory", clock=clock, gc_interval=None)
    yield m
    m.close()


def session_for(manager: Manager, sid: str | None = None) -> Session:
    return Session(manager, SessionCookie(), f"session_id={sid}" if sid else None)


def data_of(manager: Manager, sid: str | None) -> dict[str, Any] | None:
    """The stored data of ``sid`` (a load: an access), or None if not live."""
    record = None if sid is None else manager.load(sid)
    return None if record is None else record.data


def test_is_a_mutable_mapping(manager: Manager) -> None:
    s = session_for(manager)
    assert isinstance(s, MutableMapping)
    s["a"] = 1
    s.set("b", [1, 2])
    assert s["a"] == 1 and s.get("b") == [1, 2] and s.get("zz") is None
    assert sorted(s) == ["a", "b"] and len(s) == 2 and "a" in s
    del s["a"]
    s.delete("b")
    s.delete("never-there")  # delete() tolerates a missing key, del does not
    with pytest.raises(KeyError):
        del s["never-there"]
    assert dict(s) == {}
    s.update(x=1, y=2)
    assert s.pop("x") == 1 and s.setdefault("z", 3) == 3
    assert dict(s) == {"y": 2, "z": 3}


def test_new_session_has_no_id_until_written(manager: Manager) -> None:
    s = session_for(manager)
    assert s.sid is None and s.session_id() is None and s.new
    s["a"] = 1
    s.save()
    assert s.sid is not None and len(s.sid) == 43 and not s.new
    assert data_of(manager, s.sid) == {"a": 1}


def test_an_empty_new_session_is_not_stored(manager: Manager) -> None:
    s = session_for(manager)
    s["a"] = 1
    del s["a"]
    s.save()
    assert s.sid is None
    assert manager.provider.count() == 0


def test_only_changed_keys_are_saved(manager: Manager) -> None:
    first = session_for(manager)
    first.update(a=1, b=2)
    first.save()
    sid = first.sid
    one, two = session_for(manager, sid), session_for(manager, sid)
    assert one["a"] == two["a"] == 1  # both loaded before either saves
    one["a"] = 10
    two["b"] = 20
    del two["a"]  # two deletes what one changed: the later save wins on that key
    one.save()
    two.save()
    assert data_of(manager, sid) == {"b": 20}


def test_values_must_be_json_compatible_and_the_error_names_the_key(manager: Manager) -> None:
    s = session_for(manager)
    for bad in (object(), {1, 2}, b"bytes", {1: "int key"}, [1, {"deep": object()}]):
        with pytest.raises(TypeError, match="'the_key'"):
            s["the_key"] = bad
    assert dict(s) == {} and not s.modified
    s["ok"] = {"nested": [1, 2.5, "x", None, True, {"deeper": []}]}
    assert s.modified


@pytest.mark.parametrize("key", ["", 1, None, b"k"], ids=repr)
def test_keys_must_be_non_empty_str(manager: Manager, key: Any) -> None:
    with pytest.raises(TypeError, match="keys"):
        session_for(manager)[key] = 1


def test_values_are_copied_on_assignment(manager: Manager) -> None:
    s = session_for(manager)
    cart = ["apple"]
    s["cart"] = cart
    cart.append("pear")  # not assigned again: not the session's business
    s.save()
    assert data_of(manager, s.sid) == {"cart": ["apple"]}
    s["cart"] = cart
    s.save()
    assert data_of(manager, s.sid) == {"cart": ["apple", "pear"]}


def test_stored_containers_are_not_shared_between_requests(manager: Manager) -> None:
    s = session_for(manager)
    s["cart"] = ["apple"]
    s.save()
    other = session_for(manager, s.sid)
    other["cart"].append("mutated in place")  # never assigned back
    assert data_of(manager, s.sid) == {"cart": ["apple"]}


def test_unknown_cookie_id_is_not_adopted(manager: Manager) -> None:
    forged = "F" * 43
    s = session_for(manager, forged)
    assert s.sid is None
    s["a"] = 1
    s.save()
    assert s.sid != forged
    assert manager.load(forged) is None


def test_regenerate_and_destroy(manager: Manager) -> None:
    s = session_for(manager)
    s["a"] = 1
    s.regenerate()  # not stored yet: nothing to move
    assert s.sid is None
    s.save()
    old = s.sid
    s.regenerate()
    assert s.sid not in (None, old)
    assert manager.load(old) is None and data_of(manager, s.sid) == {"a": 1}
    new = s.sid
    s.destroy()
    assert s.sid is None and dict(s) == {}
    assert manager.load(new) is None


def test_regenerate_never_brings_back_a_session_destroyed_meanwhile(manager: Manager) -> None:
    # Request B loads the session; request A logs out; B then regenerates.
    s = session_for(manager)
    s["user"] = "alice"
    s.save()
    loaded = session_for(manager, s.sid)
    assert loaded["user"] == "alice"
    manager.destroy(s.sid)  # e.g. logged out in another tab, or revoked
    loaded.regenerate()
    assert loaded.sid is None and dict(loaded) == {}
    loaded.save()
    assert loaded.sid is None  # nothing stored: the old data is gone for good
    assert manager.provider.count() == 0
    assert loaded.cookie_action == KEEP  # the cookie may hold a concurrent log in's new id


def test_save_never_resurrects_a_destroyed_session(manager: Manager) -> None:
    s = session_for(manager)
    s["a"] = 1
    s.save()
    stale = session_for(manager, s.sid)
    stale.get("a")
    manager.destroy(s.sid)
    stale["b"] = 2
    stale.save()
    assert stale.sid is None
    assert manager.provider.count() == 0


def test_writes_after_destroy_go_to_the_new_session_on_every_save(manager: Manager) -> None:
    # The session hashes its id once per request: a destroy (or a save that
    # found the session gone) must forget that storage key too.
    s = session_for(manager)
    s["a"] = 1
    s.save()
    loaded = session_for(manager, s.sid)
    loaded["a"] = 2
    loaded.save()  # the storage key of the old id is in use
    loaded.destroy()
    loaded["b"] = 1
    loaded.save()  # a new session, with a new id
    loaded["c"] = 2
    loaded.save()  # e.g. a write while the body streams
    assert loaded.sid is not None and loaded.cookie_action == SEND
    assert data_of(manager, loaded.sid) == {"b": 1, "c": 2}


def test_repr_shows_neither_id_nor_values(manager: Manager) -> None:
    s = session_for(manager)
    assert repr(s) == "<Session (not loaded)>"
    s["secret"] = "hunter2"
    s.save()
    text = repr(s)
    assert "hunter2" not in text and s.sid not in text and "secret" not in text


# -- hardening ---------------------------------------------------------------


def test_regenerate_keeps_the_absolute_deadline(clock) -> None:
    m = Manager("memory", clock=clock, gc_interval=None, max_lifetime=100, absolute_lifetime=300)
    s = session_for(m)
    s["a"] = 1
    s.save()
    sid = s.sid
    for _ in range(5):  # busy, and a new id every 50 s: the idle timeout never runs out
        clock.advance(50)
        live = session_for(m, sid)
        live.regenerate()
        live.save()
        sid = live.sid
    assert data_of(m, sid) == {"a": 1}  # 250 s in
    clock.advance(60)  # 310 s: the deadline set at creation holds across new ids
    assert m.load(sid) is None
    m.close()


def test_regenerate_at_the_deadline_does_not_restart_the_lifetime(clock) -> None:
    m = Manager("memory", clock=clock, gc_interval=None, max_lifetime=1000, absolute_lifetime=60)
    s = session_for(m)
    s["a"] = 1
    s.save()
    loaded = session_for(m, s.sid)
    assert loaded["a"] == 1
    clock.advance(61)  # the deadline passes mid-request
    loaded.regenerate()
    loaded.save()
    assert loaded.sid is None and m.provider.count() == 0
    m.close()


def test_setdefault_returns_the_stored_value_so_appends_are_kept(manager: Manager) -> None:
    s = session_for(manager)
    s.setdefault("cart", []).append("apple")
    s.save()
    later = session_for(manager, s.sid)
    later.setdefault("cart", []).append("pear")
    later.save()
    assert data_of(manager, s.sid) == {"cart": ["apple", "pear"]}


def test_a_container_changed_in_place_is_saved(manager: Manager) -> None:
    s = session_for(manager)
    s["cart"] = ["apple"]
    s["prefs"] = {"theme": "dark"}
    s.save()
    later = session_for(manager, s.sid)
    later["cart"].append("pear")
    later.get("prefs")["theme"] = "light"
    assert later.modified
    later.save()
    assert data_of(manager, s.sid) == {"cart": ["apple", "pear"], "prefs": {"theme": "light"}}
    reader = session_for(manager, s.sid)
    assert reader["cart"] == ["apple", "pear"]
    assert not reader.modified  # read, not changed: no write


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (10**5000, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ([[[]]] * 1, None),
        (("a", 1), None),
    ],
    ids=["int-5000-digits", "nan", "inf", "nested", "tuple-as-list"],
)
def test_values_are_judged_at_assignment(manager: Manager, value: Any, error: Any) -> None:
    s = session_for(manager)
    if error is None:
        s["v"] = value
        s.save()
        expected = list(value) if isinstance(value, tuple) else value
        assert data_of(manager, s.sid) == {"v": expected}
    else:
        with pytest.raises(error, match="'v'"):
            s["v"] = value


@pytest.mark.parametrize("key", ["a\x00b", "\ud800"], ids=["nul", "lone-surrogate"])
def test_keys_no_store_can_hold_are_refused(manager: Manager, key: str) -> None:
    with pytest.raises(ValueError, match="NUL or a lone surrogate"):
        session_for(manager)[key] = 1


def test_max_session_bytes_refuses_the_assignment_naming_the_key(clock) -> None:
    m = Manager("memory", clock=clock, gc_interval=None, max_session_bytes=50)
    s = session_for(m)
    s["small"] = "x" * 10
    with pytest.raises(ValueError, match="'cart'.*max_session_bytes=50"):
        s["cart"] = ["item"] * 20
    assert dict(s) == {"small": "x" * 10}
    m.close()


def _tossed(manager: Manager, *sids: str) -> Session:
    return Session(manager, SessionCookie(), "; ".join(f"session_id={sid}" for sid in sids))


def test_several_live_ids_fail_closed(manager: Manager) -> None:
    attacker, victim = session_for(manager), session_for(manager)
    attacker["user"] = "mallory"
    victim["user"] = "alice"
    attacker.save()
    victim.save()
    for order in ((attacker.sid, victim.sid), (victim.sid, attacker.sid)):
        s = _tossed(manager, *order)
        assert s.get("user") is None and s.sid is None
    assert manager.stats()["refused"] == 2


def test_one_live_id_among_stale_ones_is_used(manager: Manager) -> None:
    s = session_for(manager)
    s["user"] = "alice"
    s.save()
    assert _tossed(manager, "A" * 43, s.sid).get("user") == "alice"
    assert _tossed(manager, s.sid, "B" * 43).get("user") == "alice"


def test_headers_sent_forbids_new_ids(manager: Manager) -> None:
    s = session_for(manager)
    s["a"] = 1
    s.save()
    stored = session_for(manager, s.sid)
    stored.get("a")
    stored.headers_sent = True
    with pytest.raises(SessionError, match="regenerate"):
        stored.regenerate()
    assert data_of(manager, s.sid) == {"a": 1}  # the old session is intact
    stored["b"] = 2  # an existing session may still be written
    fresh = session_for(manager)
    fresh.headers_sent = True
    with pytest.raises(SessionError, match="after the response headers"):
        fresh["a"] = 1


# -- lifetimes, flash, CSRF -----------------------------------------------------


def test_set_lifetime_remember_me(clock) -> None:
    m = Manager("memory", clock=clock, gc_interval=None, max_lifetime=100, absolute_lifetime=5000)
    s = session_for(m)
    s["user"] = "alice"
    assert s.cookie_max_age is None and not s.persistent
    s.set_lifetime(1000, persistent=True)
    s.save()
    assert s.persistent and s.idle_timeout == 1000 and s.cookie_max_age == 1000
    clock.advance(500)  # past the default idle timeout, within the session's own
    later = session_for(m, s.sid)
    assert later["user"] == "alice" and later.persistent and later.idle_timeout == 1000
    assert later.created == clock.now - 500 and later.last_access == clock.now - 500
    assert later.expires == clock.now + 1000
    for _ in range(4):  # used every 900 s: 4100 s in
        clock.advance(900)
        assert session_for(m, s.sid).get("user") == "alice"
    clock.advance(400)  # the absolute lifetime caps even a long idle timeout
    capped = session_for(m, s.sid)
    assert capped.get("user") == "alice" and capped.cookie_max_age == 500
    clock.advance(500)
    assert session_for(m, s.sid).get("user") is None
    m.close()


def test_set_lifetime_back_to_a_browser_session(clock) -> None:
    m = Manager("memory", clock=clock, gc_interval=None, max_lifetime=100)
    s = session_for(m)
    s["a"] = 1
    s.set_lifetime(1000, persistent=True)
    s.save()
    later = session_for(m, s.sid)
    later.set_lifetime(persistent=False)
    assert later.modified and later.cookie_action == SEND
    later.save()
    assert later.cookie_max_age is None and later.idle_timeout == 100
    clock.advance(150)
    assert m.load(s.sid) is None
    m.close()


@pytest.mark.parametrize("idle", [0, -1, float("nan"), "10", 10**400], ids=repr)
def test_set_lifetime_checks_its_argument(manager: Manager, idle: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="idle"):
        session_for(manager).set_lifetime(idle)


def test_flash_queues(manager: Manager) -> None:
    s = session_for(manager)
    s.flash("saved")
    s.flash("saved", allow_duplicate=False)
    s.flash({"level": "error"}, queue="errors")
    s.save()
    later = session_for(manager, s.sid)
    assert later.peek_flash() == ["saved"] and later.peek_flash("errors") == [{"level": "error"}]
    assert later.pop_flash() == ["saved"] and later.pop_flash() == []
    later.save()
    assert data_of(manager, s.sid) == {"_flash:errors": [{"level": "error"}]}


def test_csrf_token_is_lazy_stable_and_checked(manager: Manager) -> None:
    s = session_for(manager)
    assert not s.modified
    token = s.csrf_token
    assert len(token) >= 43 and s.csrf_token == token and s.modified
    s.save()
    later = session_for(manager, s.sid)
    assert later.check_csrf_token(token) and not later.check_csrf_token(token[:-1] + "x")
    assert not later.check_csrf_token(None) and not later.check_csrf_token("\ud800")
    fresh = later.new_csrf_token()
    assert fresh != token and not later.check_csrf_token(token)
    assert not session_for(manager).check_csrf_token("")
