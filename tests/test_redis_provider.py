"""The Redis provider, against a real private redis-server (see redis_server.py)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
import webtest

from wsgi_session import ProviderError, SessionMiddleware, get_session
from wsgi_session.providers.redis import RedisProvider

if TYPE_CHECKING:
    from redis_server import AppFactory, RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis

SID = "A" * 43
OTHER = "B" * 43


def key(sid: str, prefix: str = "session:") -> bytes:
    return (prefix + sid).encode()


def sid_of(client: webtest.TestApp) -> str:
    return client.cookies["session_id"]


@pytest.fixture
def provider(redis_url: str) -> Iterator[RedisProvider]:
    p = RedisProvider(url=redis_url)
    yield p
    p.close()


# -- construction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"prefix": ""}, TypeError, "prefix"),
        ({"prefix": b"s:"}, TypeError, "prefix"),
        ({"url": 6379}, TypeError, "url"),
        ({"url": "http://127.0.0.1:6379"}, ValueError, "url"),
        ({"url": "http://user:hunter2@127.0.0.1"}, ValueError, "^url is not a Redis URL[^2]*$"),
        ({"socket_timeout": 0}, ValueError, "socket_timeout"),
        ({"socket_timeout": float("nan")}, ValueError, "socket_timeout"),
        ({"socket_timeout": "5"}, TypeError, "socket_timeout"),
        ({"socket_connect_timeout": -1}, ValueError, "socket_connect_timeout"),
        ({"socket_connect_timeout": float("inf")}, ValueError, "socket_connect_timeout"),
        ({"client": "redis://127.0.0.1"}, TypeError, "client"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__,
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


# -- storage ------------------------------------------------------------------


def test_one_json_hash_per_session(provider: RedisProvider, rclient: redis.Redis) -> None:
    now = time.time()
    data = {"n": 1, "f": 1.5, "s": "é\u2603", "l": [1, None, True], "d": {"a": {"b": []}}}
    provider.create(SID, data, now, 60, None)
    stored = rclient.hgetall(key(SID))
    assert rclient.type(key(SID)) == b"hash"
    for k, v in data.items():
        assert json.loads(stored[k.encode()]) == v
    assert stored[b""] == b""  # the metadata field: no deadline
    assert provider.load(SID, now, 60) == data


def test_odd_keys_and_values_round_trip(provider: RedisProvider) -> None:
    now = time.time()
    data = {
        "\ud800": "lone surrogate key",  # legal in a str, not in UTF-8
        "v": "\udfff",
        "big": 2**80,
        "neg": -0.0,
        "nested": [[[{"x": "y"}]]],
        "nul": "a\x00b",
    }
    provider.create(SID, data, now, 60, None)
    assert provider.load(SID, now, 60) == data


def test_metadata_cannot_collide_with_user_keys(provider: RedisProvider) -> None:
    now = time.time()
    provider.create(SID, {"deadline": 1, "__meta__": 2}, now, 60, now + 100)
    assert provider.save(SID, {"x": 1}, ["deadline", "__meta__"], now, 60)
    assert provider.load(SID, now, 60) == {"x": 1}
    # Past the deadline the session is dead although the user removed every key.
    assert provider.load(SID, now + 101, 60) is None


def test_a_hash_without_the_metadata_field_is_not_a_session(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    rclient.hset(key(SID), "x", "1")  # someone else's hash under our prefix
    now = time.time()
    assert provider.load(SID, now, 60) is None
    assert not provider.save(SID, {"x": 2}, [], now, 60)
    assert not provider.rename(SID, OTHER, now, 60)
    assert rclient.hgetall(key(SID)) == {b"x": b"1"}


def test_emptied_session_stays_live(provider: RedisProvider) -> None:
    now = time.time()
    provider.create(SID, {"a": 1}, now, 60, None)
    assert provider.save(SID, {}, ["a"], now, 60)
    assert provider.load(SID, now, 60) == {}


def test_prefixes_keep_apps_apart(redis_url: str, rclient: redis.Redis) -> None:
    one = RedisProvider(url=redis_url, prefix="app1:")
    two = RedisProvider(url=redis_url, prefix="app2:")
    now = time.time()
    one.create(SID, {"app": 1}, now, 60, None)
    assert rclient.exists(key(SID, "app1:"))
    assert two.load(SID, now, 60) is None
    assert not two.save(SID, {"app": 2}, [], now, 60)
    assert len(one) == 1 and len(two) == 0
    one.close()
    two.close()


def test_decode_responses_client(redis_server: RedisServer, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    provider = RedisProvider(client=client)
    now = time.time()
    provider.create(SID, {"k": ["v"]}, now, 60, now + 10)
    assert provider.load(SID, now, 60) == {"k": ["v"]}
    assert provider.rename(SID, OTHER, now, 60)
    assert provider.load(OTHER, now, 60) == {"k": ["v"]}
    client.close()


def test_len_counts_with_scan_under_a_glob_prefix(redis_url: str, rclient: redis.Redis) -> None:
    provider = RedisProvider(url=redis_url, prefix="a*[b]?:")
    now = time.time()
    for i in range(25):
        provider.create(f"{i:043d}", {"i": i}, now, 60, None)
    rclient.set("a-other:x", 1)  # matched by the unescaped glob, not ours
    rclient.set("session:y", 1)
    assert len(provider) == 25
    provider.close()


def test_gc_leaves_redis_alone(provider: RedisProvider, rclient: redis.Redis) -> None:
    provider.create(SID, {"a": 1}, time.time(), 60, None)
    before = rclient.info("stats")["total_commands_processed"]
    assert provider.gc(time.time() + 10_000) == 0
    after = rclient.info("stats")["total_commands_processed"]
    assert after == before + 1  # only our own INFO
    assert rclient.exists(key(SID))


def test_close_closes_only_its_own_client(redis_url: str) -> None:
    mine = RedisProvider(url=redis_url)
    mine.load(SID, time.time(), 60)
    mine.close()
    client = redis.Redis.from_url(redis_url)
    theirs = RedisProvider(client=client)
    theirs.close()
    assert client.ping()  # still the caller's to use
    client.close()


# -- expiry -------------------------------------------------------------------


def test_ttl_is_set_and_slides(provider: RedisProvider, rclient: redis.Redis) -> None:
    now = time.time()
    provider.create(SID, {"a": 1}, now, 60, None)
    assert 50_000 < rclient.pttl(key(SID)) <= 60_000
    rclient.pexpire(key(SID), 5000)
    assert provider.load(SID, now, 60) == {"a": 1}  # a read slides it
    assert 50_000 < rclient.pttl(key(SID)) <= 60_000
    rclient.pexpire(key(SID), 5000)
    assert provider.save(SID, {"b": 2}, [], now, 60)  # so does a write
    assert 50_000 < rclient.pttl(key(SID)) <= 60_000


def test_ttl_through_the_middleware(redis_app: AppFactory, rclient: redis.Redis) -> None:
    mw, client = redis_app(max_lifetime=120)
    client.get("/")
    k = key(sid_of(client))
    assert 110_000 < rclient.pttl(k) <= 120_000
    rclient.pexpire(k, 1000)
    assert client.get("/peek").text.startswith("n=1")  # a read-only request
    assert 110_000 < rclient.pttl(k) <= 120_000


def test_ttl_never_passes_the_absolute_deadline(
    redis_app: AppFactory, rclient: redis.Redis, clock: Any
) -> None:
    mw, client = redis_app(max_lifetime=60, absolute_lifetime=100)
    client.get("/")
    k = key(sid_of(client))
    clock.advance(70)
    rclient.pexpire(k, 60_000)  # as if Redis's clock agreed
    client.get("/")
    assert 20_000 < rclient.pttl(k) <= 30_000  # 100 - 70 left, not 60
    clock.advance(31)
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
        k = key(sid_of(client))
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
    assert new != old and not rclient.exists(key(old))
    stale = webtest.TestApp(mw2)
    stale.set_cookie("session_id", old)
    assert stale.get("/peek").text == "n=0 user=None"
    client2.set_cookie("session_id", new)
    assert client2.get("/").text == "n=4 user=alice"
    # Log out on one: gone for both.
    client2.get("/logout")
    assert not rclient.exists(key(new))
    assert client1.get("/peek").text == "n=0 user=None"


def test_rename_moves_data_ttl_and_deadline(provider: RedisProvider, rclient: redis.Redis) -> None:
    now = time.time()
    provider.create(SID, {"a": 1}, now, 60, now + 30)
    assert provider.rename(SID, OTHER, now, 60)
    assert not rclient.exists(key(SID))
    assert provider.load(SID, now, 60) is None
    assert provider.load(OTHER, now, 60) == {"a": 1}
    assert 20_000 < rclient.pttl(key(OTHER)) <= 30_000
    assert provider.load(OTHER, now + 31, 60) is None  # the deadline came along


def test_rename_of_a_dead_session_creates_nothing(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    now = time.time()
    assert not provider.rename(SID, OTHER, now, 60)
    provider.create(SID, {"a": 1}, now, 60, now + 10)
    assert not provider.rename(SID, OTHER, now + 11, 60)
    assert rclient.keys("*") == []


def test_destroy(provider: RedisProvider, rclient: redis.Redis) -> None:
    now = time.time()
    provider.create(SID, {"a": 1}, now, 60, None)
    provider.destroy(SID)
    assert not rclient.exists(key(SID))
    provider.destroy(SID)  # unknown ids are ignored
    assert provider.load(SID, now, 60) is None


def test_no_resurrection(provider: RedisProvider, rclient: redis.Redis) -> None:
    now = time.time()
    assert not provider.save(SID, {"a": 1}, [], now, 60)  # never created
    provider.create(SID, {"a": 1}, now, 60, None)
    provider.destroy(SID)
    assert not provider.save(SID, {"a": 2}, ["b"], now, 60)  # destroyed
    provider.create(OTHER, {"a": 1}, now, 60, now + 5)
    assert not provider.save(OTHER, {"a": 2}, [], now + 6, 60)  # past its deadline
    assert rclient.keys("*") == []


def test_no_resurrection_through_the_middleware(
    redis_app: AppFactory, rclient: redis.Redis
) -> None:
    # While a request runs, another one (here: a second middleware) logs out.
    other_mw, _ = redis_app()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        session = get_session(environ)
        n = session.get("n", 0)
        if environ["PATH_INFO"] == "/race":
            other_mw.manager.destroy(session.sid)
        session["n"] = n + 1
        start_response("200 OK", [])
        return [b"ok"]

    mw, client = redis_app(app=app)
    client.get("/")
    k = key(sid_of(client))
    client.get("/race")
    assert not rclient.exists(k)
    assert rclient.keys("*") == []


def test_regenerate_and_destroy_cookies(redis_app: AppFactory, rclient: redis.Redis) -> None:
    mw, client = redis_app()
    client.get("/")
    first = sid_of(client)
    client.get("/login")
    second = sid_of(client)
    assert first != second
    assert rclient.keys("*") == [key(second)]
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
    stored = rclient.hgetall(key(sid_of(client)))
    assert {k.decode() for k in stored} == {"", "seed", *names}


# -- values JSON cannot hold ------------------------------------------------------


def test_unserializable_value_is_refused_and_the_store_unchanged(
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
    assert rclient.hget(key(sid_of(client)), "when") == b'"original"'


def test_provider_refuses_unserializable_values_before_writing(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    # The session checks values at assignment; the provider checks again.
    now = time.time()
    with pytest.raises(TypeError, match="'bad'"):
        provider.create(SID, {"good": 1, "bad": object()}, now, 60, None)
    assert not rclient.exists(key(SID))
    provider.create(SID, {"good": 1}, now, 60, None)
    with pytest.raises(TypeError, match="'bad'"):
        provider.save(SID, {"good": 2, "bad": b"bytes"}, [], now, 60)
    assert provider.load(SID, now, 60) == {"good": 1}


def test_corrupt_stored_value_is_a_provider_error(
    provider: RedisProvider, rclient: redis.Redis
) -> None:
    rclient.hset(key(SID), mapping={"": "", "x": "not json"})
    with pytest.raises(ProviderError, match="not JSON"):
        provider.load(SID, time.time(), 60)


# -- failures ---------------------------------------------------------------------


def test_scripts_are_reloaded_after_a_flush(provider: RedisProvider, rclient: redis.Redis) -> None:
    now = time.time()
    provider.create(SID, {"a": 1}, now, 60, None)
    rclient.script_flush()
    assert provider.load(SID, now, 60) == {"a": 1}
    rclient.script_flush()
    assert provider.save(SID, {"a": 2}, [], now, 60)
    assert provider.load(SID, now, 60) == {"a": 2}


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
        now = time.time()
        for call in (
            lambda: provider.load(SID, now, 60),
            lambda: provider.create(SID, {"a": 1}, now, 60, None),
            lambda: provider.save(SID, {"a": 1}, [], now, 60),
            lambda: provider.rename(SID, OTHER, now, 60),
            lambda: provider.destroy(SID),
            lambda: len(provider),
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
    assert provider.load(SID, time.time(), 60) is None
    own_redis.pause()
    try:
        with pytest.raises(ProviderError) as info:
            provider.load(SID, time.time(), 60)
        assert isinstance(info.value.__cause__, redis.TimeoutError)
    finally:
        own_redis.resume()
    assert provider.load(SID, time.time(), 60) is None  # recovers
    provider.close()
