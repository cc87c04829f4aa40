"""The Redis provider's held connections, against a real private redis-server.

Each test here has a server of its own (``own_redis``), so CLIENT LIST shows
only the provider's connections besides the one looking.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
import redis
import webtest

from wsgi_session import ProviderError, SessionMiddleware, get_session
from wsgi_session.providers.redis import RedisProvider

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis

SID = "A" * 43
OTHER = "B" * 43


@pytest.fixture
def watcher(own_redis: RedisServer) -> Iterator[redis.Redis]:
    with own_redis.client() as c:
        yield c


def others(watcher: redis.Redis) -> int:
    """Connections to the server other than the watcher's own."""
    me = str(watcher.client_id())
    return sum(1 for c in watcher.client_list() if str(c["id"]) != me)


def run_threads(target: Callable[[], None], n: int) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []


def _counter(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    session = get_session(environ)
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"n={session['n']}".encode()]


# -- reuse ---------------------------------------------------------------------------


def test_sequential_requests_share_one_connection(
    own_redis: RedisServer, watcher: redis.Redis
) -> None:
    with SessionMiddleware(
        _counter, provider="redis", provider_options={"url": own_redis.url}, gc_interval=None
    ) as mw:
        client = webtest.TestApp(mw)
        assert client.get("/").text == "n=1"
        opened = watcher.info("stats")["total_connections_received"]
        for i in range(2, 102):
            assert client.get("/").text == f"n={i}"
        assert others(watcher) == 1
        assert watcher.info("stats")["total_connections_received"] == opened


def test_threads_hold_no_more_connections_than_ran_at_once(
    own_redis: RedisServer, watcher: redis.Redis
) -> None:
    provider = RedisProvider(url=own_redis.url)
    provider.create(SID, {"n": 0}, time.time(), idle=60, deadline=None)
    barrier = threading.Barrier(8)

    def burst() -> None:
        barrier.wait(5)  # all eight at once: eight connections
        for _ in range(50):
            assert provider.load(SID, time.time()).data == {"n": 0}

    run_threads(burst, 8)
    assert 1 <= others(watcher) <= 8
    held = others(watcher)
    for _ in range(100):  # sequential requests afterwards take no new ones
        provider.load(SID, time.time())
    assert others(watcher) == held
    provider.close()


def test_short_lived_threads_leave_no_connections_behind(
    own_redis: RedisServer, watcher: redis.Redis
) -> None:
    # A server that starts a thread per request: 200 threads, 10 at a time.
    provider = RedisProvider(url=own_redis.url)
    now = time.time()
    provider.create(SID, {"n": 0}, now, idle=60, deadline=None)
    for _ in range(20):
        run_threads(lambda: provider.load(SID, now), 10)
    assert 1 <= others(watcher) <= 10
    provider.close()


def test_close_leaves_no_connection_open(own_redis: RedisServer, watcher: redis.Redis) -> None:
    provider = RedisProvider(url=own_redis.url)
    now = time.time()
    provider.create(SID, {"n": 0}, now, idle=60, deadline=None)
    run_threads(lambda: provider.load(SID, now), 6)
    assert others(watcher) >= 1
    provider.close()
    assert others(watcher) == 0


def test_close_hands_a_callers_client_its_connections_back(
    own_redis: RedisServer, watcher: redis.Redis
) -> None:
    client = own_redis.client()
    provider = RedisProvider(client=client)
    now = time.time()
    provider.create(SID, {"n": 0}, now, idle=60, deadline=None)
    run_threads(lambda: provider.load(SID, now), 4)
    provider.close()
    assert others(watcher) == 0
    assert client.ping()  # the client is still the caller's, and works
    client.close()


def test_a_dropped_provider_hands_its_connections_back(
    own_redis: RedisServer, watcher: redis.Redis
) -> None:
    client = own_redis.client()
    provider = RedisProvider(client=client)
    provider.load(SID, time.time())
    assert others(watcher) == 1
    del provider
    gc.collect()
    assert others(watcher) == 0
    assert client.ping()
    client.close()


# -- failures ---------------------------------------------------------------------------


def test_redis_restarted_on_the_same_port(own_redis: RedisServer) -> None:
    provider = RedisProvider(url=own_redis.url)
    now = time.time()
    provider.create(SID, {"n": 1}, now, idle=60, deadline=None)
    # Several idle connections, each of which the restart leaves dead.
    run_threads(lambda: provider.load(SID, now), 4)
    own_redis.stop()
    own_redis.start(port=own_redis.port)
    # Each request retries once, on a fresh connection, and succeeds.
    for _ in range(10):
        assert provider.load(SID, now) is None  # the data went with the old server
    provider.create(OTHER, {"n": 2}, now, idle=60, deadline=None)
    assert provider.save(OTHER, {"n": 3}, [], now)
    assert provider.load(OTHER, now).data == {"n": 3}
    provider.close()


def test_redis_restarted_through_the_middleware(own_redis: RedisServer) -> None:
    with SessionMiddleware(
        _counter, provider="redis", provider_options={"url": own_redis.url}, gc_interval=None
    ) as mw:
        client = webtest.TestApp(mw)
        assert client.get("/").text == "n=1"
        own_redis.stop()
        own_redis.start(port=own_redis.port)
        assert client.get("/").text == "n=1"  # no error: a new session on the new server
        assert client.get("/").text == "n=2"


def test_a_timed_out_connection_never_answers_with_a_stale_reply(own_redis: RedisServer) -> None:
    provider = RedisProvider(url=own_redis.url, socket_timeout=0.3, socket_connect_timeout=0.3)
    now = time.time()
    provider.create(SID, {"who": "A"}, now, idle=60, deadline=None)
    provider.create(OTHER, {"who": "B"}, now, idle=60, deadline=None)
    own_redis.pause()
    try:
        start = time.monotonic()
        with pytest.raises(ProviderError) as info:
            provider.load(SID, now)  # sent, never answered in time
        assert isinstance(info.value.__cause__, redis.TimeoutError)
        assert time.monotonic() - start < 3  # the socket timeout, not forever
    finally:
        own_redis.resume()
    # The server now answers the load of A; on a reused connection that
    # answer would be taken for the next command's.
    assert provider.load(OTHER, now).data == {"who": "B"}
    assert provider.save(SID, {"who": "A2"}, [], now) is True
    assert provider.load(SID, now).data == {"who": "A2"}
    provider.close()


def test_an_error_reply_leaves_the_provider_working(
    own_redis: RedisServer, watcher: redis.Redis
) -> None:
    provider = RedisProvider(url=own_redis.url)
    watcher.set(f"session:{SID}", "a string, not a hash")  # WRONGTYPE for the script
    with pytest.raises(ProviderError) as info:
        provider.load(SID, time.time())
    assert isinstance(info.value.__cause__, redis.ResponseError)
    provider.create(OTHER, {"n": 1}, time.time(), idle=60, deadline=None)
    assert provider.load(OTHER, time.time()).data == {"n": 1}
    provider.close()


def test_redis_down_from_the_start_then_up(own_redis: RedisServer) -> None:
    port = own_redis.port
    own_redis.kill()
    provider = RedisProvider(url=own_redis.url, socket_connect_timeout=0.5)
    with pytest.raises(ProviderError) as info:
        provider.load(SID, time.time())
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    own_redis.start(port=port)
    assert provider.load(SID, time.time()) is None
    provider.close()


# -- clients ------------------------------------------------------------------------------


def test_decode_responses_client_everywhere(own_redis: RedisServer) -> None:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    provider = RedisProvider(client=client)
    now = time.time()
    data = {"k": ["v", "é", "\ud800"], "é": 1.0}
    provider.create(SID, data, now, idle=60, deadline=now + 10, user="é")
    record = provider.load(SID, now)
    assert record is not None and record.data == data
    assert provider.save(SID, {"k": 2}, ["é"], now)
    assert provider.load(SID, now).data == {"k": 2}
    client.script_flush()  # NOSCRIPT, answered through a decoding connection
    assert provider.rename(SID, OTHER, now)
    assert provider.load(OTHER, now).data == {"k": 2}
    assert [sid for sid, _ in provider.sessions_of("é", now)] == [OTHER]
    provider.destroy(OTHER)
    assert provider.load(OTHER, now) is None
    assert provider.count() == 0
    provider.close()
    assert client.ping() is True  # still usable, still decoding
    client.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_shares_its_parents_connection(own_redis: RedisServer) -> None:
    # No at-fork hook runs for the provider (as under uWSGI without
    # --py-call-osafterfork): it must see the fork by itself. Parent and child
    # then send at the same time; on a shared socket replies would cross
    # (a wrong session's data, or a reply stolen and a timeout).
    provider = RedisProvider(url=own_redis.url, socket_timeout=2)
    now = time.time()
    provider.create(SID, {"who": "parent"}, now, idle=60, deadline=None)
    provider.create(OTHER, {"who": "child"}, now, idle=60, deadline=None)
    assert others_count(own_redis) == 1  # the parent holds one connection
    rounds = 300

    def hammer(sid: str, who: str) -> None:
        for i in range(rounds):
            record = provider.load(sid, now)
            assert record is not None and record.data["who"] == who
            assert provider.save(sid, {"who": who, "i": i}, [], now)

    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = b"0"
        try:
            hammer(OTHER, "child")
            ok = b"1"
        finally:
            os.write(write, ok)
            os._exit(0)
    os.close(write)
    try:
        hammer(SID, "parent")
        ready, _, _ = select.select([read], [], [], 60)
        assert ready, "the child did not finish"
        assert os.read(read, 1) == b"1", "the child got a reply that was not its own"
    finally:
        os.close(read)
        if not os.waitpid(pid, os.WNOHANG)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert provider.load(OTHER, now).data == {"who": "child", "i": rounds - 1}
    provider.close()


def others_count(server: RedisServer) -> int:
    with server.client() as c:
        return others(c)
