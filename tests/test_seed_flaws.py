"""One test for each flaw of the Go sample this design comes from
(../shared/seed/memory_provider.txt); each would fail on a port of it."""

from __future__ import annotations

import threading

import webtest
from conftest import FakeClock

from wsgi_session.ids import new_id
from wsgi_session.providers.memory import MemoryProvider


def sid_of(response: webtest.TestResponse) -> str:
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def test_fixation_a_client_chosen_id_is_never_adopted(make_app) -> None:
    # SessionRead: "if not found, SessionInit(sid)" under the client's id.
    mw, client = make_app()
    planted = new_id()
    r = client.get("/", headers={"Cookie": f"session_id={planted}"})
    assert sid_of(r) != planted
    assert mw.manager.load(planted) is None


def test_the_map_is_never_touched_without_the_lock() -> None:
    # SessionRead and SessionDestroy read and deleted from the map unlocked.
    # Readers, destroyers and the sweeper race here; any unlocked access to
    # the OrderedDict raises "mutated during iteration" or loses entries.
    p = MemoryProvider(gc_batch=3)
    sids = [new_id() for _ in range(3000)]
    for i, sid in enumerate(sids):
        p.create(sid, {"i": i}, 0.0, idle=10.0 if i % 2 else 1e9, deadline=None)
    errors: list[BaseException] = []

    def run(fn) -> None:
        try:
            fn()
        except BaseException as exc:  # pragma: no cover - asserted below
            errors.append(exc)

    workers = [
        threading.Thread(target=run, args=(lambda: [p.load(s, 20.0) for s in sids],)),
        threading.Thread(target=run, args=(lambda: [p.destroy(s) for s in sids[::3]],)),
        threading.Thread(target=run, args=(lambda: p.gc(20.0),)),
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert not errors
    survivors = {s for s in sids if p.load(s, 21.0) is not None}
    assert survivors == {s for i, s in enumerate(sids) if i % 2 == 0 and i % 3 != 0}
    assert len(p) == len(survivors)


def test_new_sessions_do_not_sit_where_gc_starts_its_walk(make_app, clock: FakeClock) -> None:
    # SessionInit used PushBack and SessionGC walked from Back(): one fresh
    # session ended every sweep before reaching the expired ones.
    mw, client = make_app(max_lifetime=100)
    for _ in range(10):
        client.reset()
        client.get("/")
    clock.advance(150)
    client.reset()
    client.get("/")  # one fresh session
    assert mw.manager.gc() == 10
    assert len(mw.manager.provider) == 1


def test_expiry_is_not_left_to_gc(make_app, clock: FakeClock) -> None:
    # Only SessionGC checked timeAccessed: an expired session was served
    # until the next sweep.
    _, client = make_app(max_lifetime=100)  # make_app has no GC thread
    client.get("/")
    clock.advance(101)
    assert client.get("/peek").text == "n=0 user=None"


def test_destroy_really_removes_the_stored_session(make_app) -> None:
    # SessionDestroy deleted from the map without the lock; here destroy
    # goes through the provider's lock and the session is gone for good.
    mw, client = make_app()
    sid = sid_of(client.get("/"))
    client.get("/logout")
    assert len(mw.manager.provider) == 0
    client.reset()
    assert client.get("/peek", headers={"Cookie": f"session_id={sid}"}).text == "n=0 user=None"


def test_regenerate_makes_a_new_id_and_the_old_one_dies(make_app) -> None:
    # A "regenerate" built from SessionDestroy + SessionInit(sid) re-creates
    # the very same id.
    mw, client = make_app()
    old = sid_of(client.get("/"))
    new = sid_of(client.get("/login"))
    assert new != old
    assert mw.manager.load(old) is None and mw.manager.load(new) is not None


def test_the_gc_interval_is_seconds() -> None:
    # time.AfterFunc(time.Duration(maxlifetime), ...) read seconds as
    # nanoseconds. Covered in detail in test_sweeper.py; here through options.
    from wsgi_session import SessionMiddleware

    mw = SessionMiddleware(lambda e, s: [], gc_interval=60)
    assert mw.manager.gc_interval == 60.0
    assert mw.manager._sweeper is not None and mw.manager._sweeper.interval == 60.0
    mw.close()
