"""Session: the mapping, change tracking, values, identity."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from wsgi_session import Manager, Session
from wsgi_session.cookies import SessionCookie


@pytest.fixture
def manager(clock) -> Manager:
    m = Manager("memory", clock=clock, gc_interval=None)
    yield m
    m.close()


def session_for(manager: Manager, sid: str | None = None) -> Session:
    environ = {"HTTP_COOKIE": f"session_id={sid}"} if sid else {}
    return Session(manager, SessionCookie(), environ)


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
    assert manager.load(s.sid) == {"a": 1}


def test_an_empty_new_session_is_not_stored(manager: Manager) -> None:
    s = session_for(manager)
    s["a"] = 1
    del s["a"]
    s.save()
    assert s.sid is None
    assert len(manager.provider) == 0


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
    assert manager.load(sid) == {"b": 20}


def test_values_must_be_json_compatible_and_the_error_names_the_key(manager: Manager) -> None:
    s = session_for(manager)
    for bad in (object(), {1, 2}, (1, 2), b"bytes", {1: "int key"}, [1, {"deep": object()}]):
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
    assert manager.load(s.sid) == {"cart": ["apple"]}
    s["cart"] = cart
    s.save()
    assert manager.load(s.sid) == {"cart": ["apple", "pear"]}


def test_stored_containers_are_not_shared_between_requests(manager: Manager) -> None:
    s = session_for(manager)
    s["cart"] = ["apple"]
    s.save()
    other = session_for(manager, s.sid)
    other["cart"].append("mutated in place")  # never assigned back
    assert manager.load(s.sid) == {"cart": ["apple"]}


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
    assert manager.load(old) is None and manager.load(s.sid) == {"a": 1}
    new = s.sid
    s.destroy()
    assert s.sid is None and dict(s) == {}
    assert manager.load(new) is None


def test_regenerate_after_the_session_vanished_starts_a_new_one(manager: Manager) -> None:
    s = session_for(manager)
    s["a"] = 1
    s.save()
    loaded = session_for(manager, s.sid)
    assert loaded["a"] == 1
    manager.destroy(s.sid)  # e.g. logged out in another tab
    loaded.regenerate()
    assert loaded.sid is None and loaded["a"] == 1
    loaded.save()
    assert loaded.sid not in (None, s.sid)
    assert manager.load(loaded.sid) == {"a": 1}


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
    assert len(manager.provider) == 0


def test_repr_shows_neither_id_nor_values(manager: Manager) -> None:
    s = session_for(manager)
    assert repr(s) == "<Session (not loaded)>"
    s["secret"] = "hunter2"
    s.save()
    text = repr(s)
    assert "hunter2" not in text and s.sid not in text and "secret" not in text
