"""The Redis provider, against a real private redis-server (see redis_server.py)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
import webtest

from wsgi_session import ProviderError, SessionMiddleware, get_session, values
from wsgi_session.provider import Record
from wsgi_session.providers.redis import RedisProvider

if TYPE_CHECKING:
    from redis_server import AppFactory, RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis

SID = "A" * 43
OTHER = "B" * 43
NOW = 1_000_000.0


def key(sid: str, prefix: str = "session:") -> bytes:
    return (prefix + sid).encode()


def sid_of(client: webtest.TestApp) -> str:
    return client.cookies["session_id"]


def stored_key(mw: SessionMiddleware, client: webtest.TestApp) -> bytes:
    """The Redis key of the client's session (ids are hashed at rest)."""
    return key(mw.manager.key(sid_of(client)))


def create(
    provider: RedisProvider,
    sid: str,
    data: dict[str, Any],
    now: float = NOW,
    idle: float = 60,
    deadline: float | None = None,
    **extra: Any,
) -> None:
    provider.create(sid, data, now, idle=idle, deadline=deadline, **extra)


def data_of(provider: RedisProvider, sid: str, now: float = NOW) -> dict[str, Any] | None:
    record = provider.load(sid, now)
    return None if record is None else record.data


@pytest.fixture
def provider(redis_url: str) -> Iterator[RedisProvider]:
    p = RedisProvider(url=redis_url)
    yield p
    p.close()


# -- construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"prefix": ""}, ValueError, "prefix"),
        ({"prefix": b"s:"}, TypeError, "prefix"),
        ({"url": 6379}, TypeError, "url"),
        ({"url": "http://127.0.0.1:6379"}, ValueError, "url"),
        ({"url": "http://user:hunter2@127.0.0.1"}, ValueError, "^url is not a Redis URL[^2]*$"),
        ({"socket_timeout": 0}, ValueError, "socket_timeout"),
        ({"socket_timeout": float("nan")}, ValueError, "socket_timeout"),
        ({"socket_timeout": "5"}, TypeError, "socket_timeout"),
        ({"socket_timeout": 10**400}, ValueError, "socket_timeout"),
        ({"socket_connect_timeout": -1}, ValueError, "socket_connect_timeout"),
        ({"socket_connect_timeout": float("inf")}, ValueError, "socket_connect_timeout"),
        ({"client": "redis://127.0.0.1"}, TypeError, "client"),
    ],
    ids=lambda v: repr(v)[:40] if not isinstance(v, type) else v.__name__,
)
def test_bad_options_name_the_option(options: dict[str, Any], error: type, names: str) -> None:
    with pytest.raises(error, match=names):
        RedisProvider(**options)


def test_client_excludes_url_and_timeouts() -> None:
    client = redis.Redis()
    with pytest.raises(ValueError, match="url"):
        RedisProvider(url="redis://127.0.0.1:6379/0", client=client)
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisProvider(client=client, socket_timeout=1)
    client.close()


def test_bad_options_through_the_middleware() -> None:
    with pytest.raises(ValueError, match="socket_timeout"):
        SessionMiddleware(lambda e, s: [], provider="redis", provider_options={"socket_timeout": 0})


def test_constructing_does_not_connect() -> None:
    # Nothing listens on port 1; the app can start before Redis does.
    RedisProvider(url="redis://127.0.0.1:1/0").close()


def test_missing_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    with pytest.raises(ImportError, match=r"pip install wsgi_session\[redis\]"):
        RedisProvider()
    with pytest.raises(ImportError, match=r"wsgi_session\[redis\]"):
        SessionMiddleware(lambda e, s: [], provider="redis")


def test_the_provider_module_imports_no_manager() -> None:
    # manager -> registry -> providers.redis -> manager was an import cycle.
    import wsgi_session.providers.redis as module

    assert "manager" not in vars(module)
    assert "check_seconds" not in vars(module)


# -- storage ------------------------------------------------------------------


def test_one_hash_per_session_values_in_the_one_codec(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    data = {"n": 1, "f": 1.5, "s": "é\u2603", "l": [1, None, True], "d": {"a": {"b": []}}}
    create(provider, SID, data, deadline=NOW + 100, persistent=True, user="alice")
    stored = rclient.hgetall(key(SID))
    assert rclient.type(key(SID)) == b"hash"
    for k, v in data.items():
        assert stored[k.encode()] == values.encode(v).encode()
    # The reserved fields: lifetime and user, and the last access.
    assert stored[b""] == b"60 1000100 1 1000000 alice"
    assert stored[b"\x00"] == b"1000000"
    assert set(stored) == {b"", b"\x00", *(k.encode() for k in data)}


def test_numbers_read_back_exactly_in_either_text(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    # Written with 17 significant digits now, as reprs before: both load.
    now = 1_796_144_001.7267861
    create(provider, SID, {}, now, idle=0.1, deadline=now + 1e-3 * 3)
    meta = b"0.10000000000000001 1796144001.7297862 0 1796144001.7267861"
    assert rclient.hget(key(SID), "") == meta
    record = provider.load(SID, now + 1e-3)
    assert record == Record({}, now, now, 0.1, now + 1e-3 * 3, False)
    assert provider.load(SID, now + 2e-3).accessed == now + 1e-3  # type: ignore[union-attr]
    rclient.hset(key(OTHER), mapping={"": "60.5 1000100.25 1 1000000.125 u", "\x00": "1000000.75"})
    rclient.expire(key(OTHER), 60)
    expected = Record({}, 1000000.125, 1000000.75, 60.5, 1000100.25, True)
    assert provider.load(OTHER, NOW + 1) == expected


def test_load_returns_the_record_and_the_previous_access(provider: RedisProvider) -> None:
    create(provider, SID, {"a": 1}, idle=60, deadline=NOW + 1000, persistent=True)
    first = provider.load(SID, NOW + 10)
    assert first == Record({"a": 1}, NOW, NOW, 60.0, NOW + 1000, True)
    second = provider.load(SID, NOW + 20)
    assert second is not None and second.accessed == NOW + 10
    create(provider, OTHER, {}, idle=5)
    assert provider.load(OTHER, NOW) == Record({}, NOW, NOW, 5.0, None, False)


def test_values_keep_their_types(provider: RedisProvider) -> None:
    # Parity with every other store: what values.encode gives, decode returns.
    data = {
        "float": 1.0,
        "negzero": -0.0,
        "big": 2**80,
        "tiny": 5e-324,
        "nested": [[[{"x": "y"}]]],
        "nul": "a\x00b",
        "surrogate": "\udfff",
        "nl": "line\nbreak",
        "empty": {},
        "key:with\nodd\tchars é": "x",
    }
    create(provider, SID, data)
    loaded = data_of(provider, SID)
    assert loaded == data
    assert loaded is not None
    assert type(loaded["float"]) is float and str(loaded["negzero"]) == "-0.0"
    assert provider.save(SID, {"float": 2.0}, [], NOW)
    loaded = data_of(provider, SID)
    assert loaded is not None and type(loaded["float"]) is float


def test_a_session_with_thousands_of_keys(provider: RedisProvider) -> None:
    # Beyond what one Lua call can unpack: written in chunks.
    data = {f"k{i}": i for i in range(3000)}
    create(provider, SID, data)
    assert data_of(provider, SID) == data
    changed = {f"k{i}": -i for i in range(2500)}
    assert provider.save(SID, changed, [f"k{i}" for i in range(2500, 3000)], NOW)
    assert data_of(provider, SID) == changed


def test_load_returns_data_the_caller_owns(provider: RedisProvider) -> None:
    create(provider, SID, {"l": [1]})
    loaded = data_of(provider, SID)
    assert loaded is not None
    loaded["l"].append(2)
    assert data_of(provider, SID) == {"l": [1]}


def test_metadata_cannot_collide_with_user_keys(provider: RedisProvider) -> None:
    create(provider, SID, {"deadline": 1, "__meta__": 2}, deadline=NOW + 100)
    assert provider.save(SID, {"x": 1}, ["deadline", "__meta__"], NOW)
    assert data_of(provider, SID) == {"x": 1}
    # Past the deadline the session is dead although the user removed every key.
    assert provider.load(SID, NOW + 101) is None


def test_a_hash_without_the_metadata_fields_is_not_a_session(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    rclient.hset(key(SID), "x", "1")  # someone else's hash under our prefix
    assert provider.load(SID, NOW) is None
    assert not provider.save(SID, {"x": 2}, [], NOW)
    assert not provider.rename(SID, OTHER, NOW)
    assert rclient.hgetall(key(SID)) == {b"x": b"1"}


def test_emptied_session_stays_live(provider: RedisProvider) -> None:
    create(provider, SID, {"a": 1})
    assert provider.save(SID, {}, ["a"], NOW)
    assert data_of(provider, SID) == {}


def test_prefixes_keep_apps_apart(redis_url: str, rclient: redis.Redis) -> None:
    one = RedisProvider(url=redis_url, prefix="app1:")
    two = RedisProvider(url=redis_url, prefix="app2:")
    create(one, SID, {"app": 1}, user="u")
    assert rclient.exists(key(SID, "app1:"))
    assert two.load(SID, NOW) is None
    assert not two.save(SID, {"app": 2}, [], NOW)
    assert two.sessions_of("u", NOW) == []
    assert one.count() == 1 and two.count() == 0
    one.close()
    two.close()


def test_a_prefix_with_percent_signs(redis_url: str, rclient: redis.Redis) -> None:
    # The commonest commands are packed with bytes formats holding the prefix.
    provider = RedisProvider(url=redis_url, prefix="%d%b%%:")
    create(provider, SID, {"a": 1}, user="u")
    assert provider.save(SID, {"b": 2}, ["a"], NOW)
    assert data_of(provider, SID) == {"b": 2}
    assert rclient.hgetall(key(SID, "%d%b%%:"))[b"b"] == b"2"
    assert [sid for sid, _ in provider.sessions_of("u", NOW)] == [SID]
    provider.close()


@pytest.mark.parametrize("protocol", [2, 3], ids=["RESP2", "RESP3"])
def test_a_callers_client_of_either_protocol(redis_url: str, protocol: int) -> None:
    # RESP2: the provider reads replies on the socket itself; RESP3 (where a
    # push message may come first): redis-py reads them.
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    provider = RedisProvider(client=client)
    create(provider, SID, {"a": "x" * 200_000}, user="u")
    assert provider.save(SID, {"b": None}, [], NOW)
    assert data_of(provider, SID) == {"a": "x" * 200_000, "b": None}
    assert data_of(provider, OTHER) is None
    assert [sid for sid, _ in provider.sessions_of("u", NOW)] == [SID]
    provider.destroy(SID)
    assert not provider.save(SID, {}, [], NOW)
    assert provider._lean is (protocol == 2)
    provider.close()
    client.close()


def test_decode_responses_client(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    provider = RedisProvider(client=client)
    create(provider, SID, {"k": ["v"]}, deadline=NOW + 10, user="\udc80")
    assert data_of(provider, SID) == {"k": ["v"]}
    assert provider.rename(SID, OTHER, NOW)
    assert data_of(provider, OTHER) == {"k": ["v"]}
    assert [sid for sid, _ in provider.sessions_of("\udc80", NOW)] == [OTHER]
    client.close()


def test_count_scans_session_hashes_under_a_glob_prefix(
    redis_url: str, rclient: redis.Redis
) -> None:
    provider = RedisProvider(url=redis_url, prefix="a*[b]?:")
    for i in range(25):
        create(provider, f"{i:043d}", {"i": i}, user=f"user{i % 3}")
    rclient.set("a-other:x", 1)  # matched by the unescaped glob, not ours
    rclient.set("session:y", 1)
    assert provider.count() == 25  # the three user indexes are not sessions
    provider.close()


def test_gc_leaves_redis_alone(provider: RedisProvider, rclient: redis.Redis) -> None:
    create(provider, SID, {"a": 1})
    before = rclient.info("stats")["total_commands_processed"]
    assert provider.gc(NOW + 10_000) == 0
    after = rclient.info("stats")["total_commands_processed"]
    assert after == before + 1  # only our own INFO
    assert rclient.exists(key(SID))


def test_close_closes_only_its_own_client(redis_url: str) -> None:
    mine = RedisProvider(url=redis_url)
    mine.load(SID, NOW)
    mine.close()
    client = redis.Redis.from_url(redis_url)
    theirs = RedisProvider(client=client)
    theirs.close()
    assert client.ping()  # still the caller's to use
    client.close()


# -- expiry -------------------------------------------------------------------


def test_ttl_slides_by_each_sessions_own_idle(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    create(provider, SID, {"a": 1}, idle=60)
    create(provider, OTHER, {"a": 1}, idle=600)
    assert 50_000 < rclient.pttl(key(SID)) <= 60_000
    assert 590_000 < rclient.pttl(key(OTHER)) <= 600_000
    for sid, idle in ((SID, 60_000), (OTHER, 600_000)):
        rclient.pexpire(key(sid), 5000)
        assert provider.load(sid, NOW + 1) is not None  # a read slides it
        assert idle - 10_000 < rclient.pttl(key(sid)) <= idle
        rclient.pexpire(key(sid), 5000)
        assert provider.save(sid, {"b": 2}, [], NOW + 2)  # so does a write
        assert idle - 10_000 < rclient.pttl(key(sid)) <= idle


def test_save_changes_the_lifetime(provider: RedisProvider, rclient: redis.Redis) -> None:
    create(provider, SID, {"a": 1}, idle=60, deadline=NOW + 10_000)
    assert provider.save(SID, {}, [], NOW + 1, lifetime=(3000.0, True))
    assert 2_990_000 < rclient.pttl(key(SID)) <= 3_000_000
    record = provider.load(SID, NOW + 2)
    assert record is not None
    assert (record.idle, record.deadline, record.persistent) == (3000.0, NOW + 10_000, True)
    assert record.created == NOW
    # The new idle counts at once: 100 s of silence no longer kill it.
    assert provider.load(SID, NOW + 102) is not None
    assert provider.save(SID, {}, [], NOW + 103, lifetime=(60.0, False))
    assert provider.load(SID, NOW + 164) is None


def test_idle_expiry_is_judged_on_the_managers_clock(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    # Redis's TTL is real time; the manager's clock decides too (a fake one here).
    create(provider, SID, {"a": 1}, idle=60)
    assert provider.load(SID, NOW + 59.9) is not None
    assert provider.load(SID, NOW + 59.9 + 60) is None
    assert not rclient.exists(key(SID))  # the dead session was removed there and then
    create(provider, OTHER, {"a": 1}, idle=60)
    assert not provider.save(OTHER, {"a": 2}, [], NOW + 60)
    assert not provider.rename(OTHER, SID, NOW + 60)
    assert rclient.keys("*") == []


def test_ttl_never_passes_the_absolute_deadline(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    create(provider, SID, {"a": 1}, idle=60, deadline=NOW + 100)
    assert provider.load(SID, NOW + 50) is not None
    assert provider.load(SID, NOW + 75) is not None
    assert 20_000 < rclient.pttl(key(SID)) <= 25_000  # 100 - 75 left, not 60
    assert provider.load(SID, NOW + 100) is None
    assert not rclient.exists(key(SID))


def test_ttl_through_the_middleware(redis_app: AppFactory, rclient: redis.Redis) -> None:
    mw, client = redis_app(max_lifetime=120)
    client.get("/")
    k = stored_key(mw, client)
    assert 110_000 < rclient.pttl(k) <= 120_000
    rclient.pexpire(k, 1000)
    assert client.get("/peek").text.startswith("n=1")  # a read-only request
    assert 110_000 < rclient.pttl(k) <= 120_000


def test_absolute_deadline_through_the_middleware(
    redis_app: AppFactory, rclient: redis.Redis, clock: Any
) -> None:
    mw, client = redis_app(max_lifetime=60, absolute_lifetime=100)
    client.get("/")
    k = stored_key(mw, client)
    clock.advance(50)
    client.get("/")
    clock.advance(51)
    assert client.get("/").text == "n=1 user=None"  # past the deadline: a new session
    assert not rclient.exists(k)


def test_redis_expires_idle_sessions(redis_url: str, rclient: redis.Redis) -> None:
    # Real time: idle expiry is Redis's own job, not the GC thread's.
    with SessionMiddleware(
        _counter,
        provider="redis",
        provider_options={"url": redis_url},
        max_lifetime=1,
        gc_interval=None,
    ) as mw:
        client = webtest.TestApp(mw)
        assert client.get("/").text == "n=1"
        k = stored_key(mw, client)
        assert 0 < rclient.pttl(k) <= 1000
        deadline = time.monotonic() + 3
        while rclient.exists(k):
            assert time.monotonic() < deadline, "Redis did not expire the session"
            time.sleep(0.05)
        assert client.get("/").text == "n=1"  # a new session


def _counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = get_session(environ)
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"n={session['n']}".encode()]


# -- the user index ---------------------------------------------------------------


def index(user: str) -> bytes:
    return b"session:user:" + user.encode("utf-8", "surrogatepass")


def listed(provider: RedisProvider, user: str, now: float = NOW) -> set[str]:
    return {sid for sid, _ in provider.sessions_of(user, now)}


def test_sessions_of_lists_a_users_live_sessions(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    sids = [f"{c}" * 43 for c in "CDE"]
    for i, sid in enumerate(sids):
        create(provider, sid, {"i": i}, idle=60 + i, deadline=NOW + 500, user="alice")
    create(provider, SID, {}, user="bob")
    create(provider, OTHER, {})
    assert listed(provider, "alice") == set(sids)
    assert listed(provider, "bob") == {SID}
    assert listed(provider, "carol") == set()
    found = dict(provider.sessions_of("alice", NOW + 1))
    assert found[sids[2]] == Record({}, NOW, NOW, 62.0, NOW + 500, False)
    # Listing is not an access.
    record = provider.load(sids[0], NOW + 5)
    assert record is not None and record.accessed == NOW
    assert rclient.smembers(index("alice")) == {key(s) for s in sids}


def test_the_index_follows_the_user(provider: RedisProvider, rclient: redis.Redis) -> None:
    create(provider, SID, {}, user="alice")
    assert provider.save(SID, {"x": 1}, [], NOW)  # UNCHANGED
    assert listed(provider, "alice") == {SID}
    assert provider.save(SID, {}, [], NOW, lifetime=(100.0, True))
    assert listed(provider, "alice") == {SID}
    assert provider.save(SID, {}, [], NOW, user="bob")
    assert listed(provider, "alice") == set() and listed(provider, "bob") == {SID}
    assert not rclient.exists(index("alice"))  # moved in the save, not left stale
    assert provider.save(SID, {}, [], NOW, user=None)
    assert listed(provider, "bob") == set()
    assert rclient.keys("session:user:*") == []
    assert provider.save(SID, {}, [], NOW, user="")  # an empty name is a name
    assert listed(provider, "") == {SID}
    assert not provider.save(OTHER, {}, [], NOW, user="carol")  # not live: no entry
    assert listed(provider, "carol") == set()


def test_the_index_follows_rename_and_destroy(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    create(provider, SID, {}, user="alice")
    assert provider.rename(SID, OTHER, NOW)
    assert listed(provider, "alice") == {OTHER}
    assert rclient.smembers(index("alice")) == {key(OTHER)}
    provider.destroy(OTHER)
    assert listed(provider, "alice") == set()
    assert rclient.keys("*") == []


def test_expired_and_vanished_sessions_are_never_listed(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    create(provider, SID, {}, idle=10, user="alice")
    create(provider, OTHER, {}, idle=100, user="alice")
    assert listed(provider, "alice", NOW + 10) == {OTHER}  # SID is dead at NOW + 10
    assert not rclient.exists(key(SID))
    rclient.delete(key(OTHER))  # as Redis's own expiry or eviction would
    assert listed(provider, "alice", NOW + 11) == set()
    assert rclient.keys("*") == []  # the stale entries went at the read


def test_the_index_outlives_its_sessions(provider: RedisProvider, rclient: redis.Redis) -> None:
    create(provider, SID, {}, idle=60, user="alice")
    create(provider, OTHER, {}, idle=3600, user="alice")
    assert rclient.pttl(index("alice")) >= rclient.pttl(key(OTHER))
    # The index's TTL is stretched as a session slides past it.
    rclient.pexpire(index("alice"), 1000)
    assert provider.load(SID, NOW + 1) is not None
    assert rclient.pttl(index("alice")) >= rclient.pttl(key(SID))
    assert provider.save(OTHER, {}, [], NOW + 2)
    assert rclient.pttl(index("alice")) >= rclient.pttl(key(OTHER))
    # An index lost (a FLUSH, an eviction) is rebuilt by the next access.
    rclient.delete(index("alice"))
    assert provider.load(SID, NOW + 3) is not None
    assert listed(provider, "alice") == {SID}


def test_a_changed_owner_is_not_listed_under_the_old_one(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    create(provider, SID, {}, user="alice")
    rclient.sadd(index("mallory"), key(SID))  # a stale or forged entry
    assert listed(provider, "mallory") == set()
    assert not rclient.exists(index("mallory"))


def test_sessions_of_never_scans(provider: RedisProvider, rclient: redis.Redis) -> None:
    for i in range(300):
        create(provider, f"{i:043d}", {}, user=f"user{i}")
    rclient.config_resetstat()
    assert listed(provider, "user7") == {f"{7:043d}"}
    stats = rclient.info("commandstats")
    assert not {"cmdstat_scan", "cmdstat_keys"} & set(stats)
    assert stats["cmdstat_hmget"]["calls"] == 1


# -- sharing, regenerate, destroy -------------------------------------------


def test_two_middlewares_share_sessions(redis_app: AppFactory, rclient: redis.Redis) -> None:
    # Two "processes": separate middlewares, providers and connection pools.
    mw1, client1 = redis_app()
    mw2, client2 = redis_app()
    assert mw1.manager.provider is not mw2.manager.provider
    assert client1.get("/").text == "n=1 user=None"
    client2.set_cookie("session_id", sid_of(client1))
    assert client2.get("/").text == "n=2 user=None"
    assert client1.get("/").text == "n=3 user=None"
    # Log in on one: the other follows the new id, the old id is dead.
    old = sid_of(client1)
    assert client1.get("/login").text == "n=3 user=alice"
    new = sid_of(client1)
    assert new != old and not rclient.exists(key(mw1.manager.key(old)))
    stale = webtest.TestApp(mw2)
    stale.set_cookie("session_id", old)
    assert stale.get("/peek").text == "n=0 user=None"
    client2.set_cookie("session_id", new)
    assert client2.get("/").text == "n=4 user=alice"
    # Log out on one: gone for both.
    client2.get("/logout")
    assert rclient.keys("*") == []
    assert client1.get("/peek").text == "n=0 user=None"


def test_users_sessions_through_the_middleware(redis_app: AppFactory) -> None:
    mw, _ = redis_app(user_key="user")
    clients = [webtest.TestApp(mw) for _ in range(3)]
    for client in clients:
        assert client.get("/login").text == "n=0 user=alice"
    infos = mw.manager.sessions_of("alice")
    assert len(infos) == 3
    keep = infos[0].handle
    assert mw.manager.revoke_user("alice", keep=keep) == 2
    assert [i.handle for i in mw.manager.sessions_of("alice")] == [keep]
    logged_in = [c.get("/peek").text == "n=0 user=alice" for c in clients]
    assert sorted(logged_in) == [False, False, True]


def test_rename_moves_everything_but_the_access(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    create(provider, SID, {"a": 1}, idle=60, deadline=NOW + 30, persistent=True, user="u")
    assert provider.rename(SID, OTHER, NOW + 5)
    assert not rclient.exists(key(SID))
    assert provider.load(SID, NOW + 5) is None
    assert provider.load(OTHER, NOW + 6) == Record({"a": 1}, NOW, NOW, 60.0, NOW + 30, True)
    assert 20_000 < rclient.pttl(key(OTHER)) <= 30_000
    assert provider.load(OTHER, NOW + 31) is None  # the deadline came along


def test_rename_of_a_dead_session_creates_nothing(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    assert not provider.rename(SID, OTHER, NOW)
    create(provider, SID, {"a": 1}, deadline=NOW + 10, user="u")
    assert not provider.rename(SID, OTHER, NOW + 11)
    assert rclient.keys("*") == []


def test_destroy(provider: RedisProvider, rclient: redis.Redis) -> None:
    create(provider, SID, {"a": 1})
    provider.destroy(SID)
    assert not rclient.exists(key(SID))
    provider.destroy(SID)  # unknown ids are ignored
    assert provider.load(SID, NOW) is None


def test_no_resurrection(provider: RedisProvider, rclient: redis.Redis) -> None:
    assert not provider.save(SID, {"a": 1}, [], NOW)  # never created
    create(provider, SID, {"a": 1}, user="u")
    provider.destroy(SID)
    assert not provider.save(SID, {"a": 2}, ["b"], NOW, user="v")  # destroyed
    assert not provider.rename(SID, OTHER, NOW)
    create(provider, OTHER, {"a": 1}, deadline=NOW + 5)
    assert not provider.save(OTHER, {"a": 2}, [], NOW + 6)  # past its deadline
    assert rclient.keys("*") == []


def test_no_resurrection_through_the_middleware(
    redis_app: AppFactory, rclient: redis.Redis
) -> None:
    # While a request runs, another one (here: a second middleware) logs out.
    other_mw, _ = redis_app()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        n = session.get("n", 0)
        path = environ["PATH_INFO"]
        if path.startswith("/race"):
            other_mw.manager.destroy(session.sid)
        if path == "/race-regenerate":
            session.regenerate()  # would store the old data under a new id
        else:
            session["n"] = n + 1
        start_response("200 OK", [])
        return [f"n={session.get('n', 0)}".encode()]

    mw, client = redis_app(app=app)
    client.get("/")
    client.get("/race")
    assert rclient.keys("*") == []
    client.get("/")
    assert client.get("/").text == "n=2"
    assert client.get("/race-regenerate").text == "n=0"
    assert rclient.keys("*") == []


def test_regenerate_and_destroy_cookies(redis_app: AppFactory, rclient: redis.Redis) -> None:
    mw, client = redis_app()
    client.get("/")
    first = sid_of(client)
    client.get("/login")
    second = sid_of(client)
    assert first != second
    assert rclient.keys("*") == [key(mw.manager.key(second))]
    response = client.get("/logout")
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert rclient.keys("*") == []


# -- concurrency ----------------------------------------------------------------


def test_concurrent_requests_writing_different_keys_keep_both(
    redis_app: AppFactory, rclient: redis.Redis
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        name = environ["PATH_INFO"].strip("/")
        if name:
            session.get("seed")  # load before the others write
            barrier.wait(5)
            session[name] = name
        else:
            session["seed"] = 1
        start_response("200 OK", [])
        return [b"ok"]

    mw, client = redis_app(app=app)
    client.get("/")
    cookie = f"session_id={sid_of(client)}"
    names = [f"k{i}" for i in range(8)]
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def request(name: str) -> None:
        try:
            webtest.TestApp(mw).get(f"/{name}", headers={"Cookie": cookie})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=request, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    stored = rclient.hgetall(stored_key(mw, client))
    assert {k.decode() for k in stored} == {"", "\x00", "seed", *names}


# -- round trips -------------------------------------------------------------------


def test_each_operation_is_one_round_trip(
    provider: RedisProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counted on the client: every send is a round trip (no pipelining here),
    # through redis-py or on the socket by the provider itself (_talk).
    from redis import connection

    sends = []
    cls = getattr(connection, "AbstractConnection", connection.Connection)
    original = cls.send_packed_command
    talk = RedisProvider._talk

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(1)
        original(self, command, check_health)

    def counting_talk(self: RedisProvider, conn: Any, packed: bytes) -> Any:
        sends.append(1)
        return talk(self, conn, packed)

    monkeypatch.setattr(cls, "send_packed_command", counting)
    monkeypatch.setattr(RedisProvider, "_talk", counting_talk)
    a, b = "C" * 43, "D" * 43
    calls = {
        "create": lambda: create(provider, a, {"a": 1}, user="u"),
        "load": lambda: provider.load(a, NOW),
        "save": lambda: provider.save(a, {"b": 2}, ["a"], NOW, lifetime=(90.0, True)),
        "save with a new user": lambda: provider.save(a, {}, [], NOW, user="v"),
        "sessions_of": lambda: provider.sessions_of("v", NOW),
        "rename": lambda: provider.rename(a, b, NOW),
        "destroy": lambda: provider.destroy(b),
        "count": lambda: provider.count(),
    }
    for call in calls.values():
        call()  # the first time loads the scripts
    for name, call in calls.items():
        sends.clear()
        call()
        assert len(sends) == 1, name


# -- bad values and stored garbage -----------------------------------------------


def test_unstorable_value_is_refused_at_assignment(
    redis_app: AppFactory, rclient: redis.Redis
) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        if environ["PATH_INFO"] == "/bad":
            session["when"] = {1, 2}  # a set: the app sees the TypeError
        else:
            session["when"] = "original"
        start_response("200 OK", [])
        return [b"ok"]

    mw, client = redis_app(app=app)
    client.get("/")
    with pytest.raises(TypeError, match="'when'"):
        client.get("/bad")
    assert rclient.hget(stored_key(mw, client), "when") == b'"original"'


@pytest.mark.parametrize(
    "fields",
    [
        {"": "60.0 - 0 1000000.0", "\x00": "1000000.0", "x": "not json"},
        {"": "60.0 - 0 1000000.0", "\x00": "1000000.0", "x": "1}"},
        {"": "60.0 - 0 1000000.0", "\x00": "1000000.0", "x": b"\xff"},
        {"": "60.0 -", "\x00": "1000000.0"},
        {"": "sixty - 0 1000000.0", "\x00": "1000000.0"},
    ],
    ids=["not-json", "breaks-the-object", "not-utf8", "short-meta", "bad-number"],
)
def test_stored_garbage_is_a_provider_error(
    provider: RedisProvider, rclient: redis.Redis, fields: dict[str, Any]
) -> None:
    rclient.hset(key(SID), mapping=fields)
    with pytest.raises(ProviderError) as info:
        provider.load(SID, NOW)
    assert SID not in str(info.value)


# -- failures ---------------------------------------------------------------------


def test_scripts_are_reloaded_after_a_flush(provider: RedisProvider, rclient: redis.Redis) -> None:
    create(provider, SID, {"a": 1}, user="u")
    rclient.script_flush()
    assert data_of(provider, SID) == {"a": 1}
    rclient.script_flush()
    assert provider.save(SID, {"a": 2}, [], NOW)
    assert data_of(provider, SID) == {"a": 2}
    rclient.script_flush()
    assert listed(provider, "u") == {SID}
    rclient.script_flush()
    provider.destroy(SID)
    assert rclient.keys("*") == []


def test_redis_killed_mid_run(own_redis: RedisServer) -> None:
    with SessionMiddleware(
        _counter, provider="redis", provider_options={"url": own_redis.url}, gc_interval=None
    ) as mw:
        client = webtest.TestApp(mw)
        assert client.get("/").text == "n=1"
        assert client.get("/").text == "n=2"
        own_redis.kill()
        # The app sees an error, not an empty session it would then store.
        with pytest.raises(ProviderError) as info:
            client.get("/")
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        provider = mw.manager.provider
        assert isinstance(provider, RedisProvider)
        for call in (
            lambda: provider.load(SID, NOW),
            lambda: create(provider, SID, {"a": 1}, user="u"),
            lambda: provider.save(SID, {"a": 1}, [], NOW),
            lambda: provider.rename(SID, OTHER, NOW),
            lambda: provider.destroy(SID),
            lambda: provider.sessions_of("u", NOW),
            lambda: provider.count(),
        ):
            with pytest.raises(ProviderError) as info:
                call()
            assert isinstance(info.value.__cause__, redis.ConnectionError)
            assert SID not in str(info.value)
        # Back (empty, nothing was persisted): requests work again.
        own_redis.start(port=own_redis.port)
        assert client.get("/").text == "n=1"


def test_hung_redis_times_out(own_redis: RedisServer) -> None:
    provider = RedisProvider(url=own_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    assert provider.load(SID, NOW) is None
    own_redis.pause()
    try:
        with pytest.raises(ProviderError) as info:
            provider.load(SID, NOW)
        assert isinstance(info.value.__cause__, redis.TimeoutError)
    finally:
        own_redis.resume()
    assert provider.load(SID, NOW) is None  # recovers
    provider.close()
