"""The Redis provider over a Sentinel master client and a Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from wsgi_session.providers.redis import RedisProvider

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis


def test_sentinel_master_client(redis_sentinel: int, redis_url: str) -> None:
    sentinel = Sentinel([("127.0.0.1", redis_sentinel)], socket_timeout=2)
    master = sentinel.master_for("mymaster", socket_timeout=2)
    provider = RedisProvider(client=master)
    plain = RedisProvider(url=redis_url)
    now = time.time()
    sid, new = "S" * 43, "T" * 43
    provider.create(sid, {"via": "sentinel"}, now, idle=60, deadline=None)
    assert plain.load(sid, now).data == {"via": "sentinel"}
    assert provider.rename(sid, new, now)
    assert plain.load(sid, now) is None
    assert provider.save(new, {"n": 1}, [], now)
    assert plain.load(new, now).data == {"via": "sentinel", "n": 1}
    plain.close()
    master.close()


@pytest.fixture
def cluster(redis_cluster: RedisServer) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.port, socket_timeout=2)
    client.flushall()
    yield client
    client.close()


def test_cluster_round_trip(cluster: RedisCluster) -> None:
    provider = RedisProvider(client=cluster)
    now = time.time()
    sids = [f"{i:043d}" for i in range(20)]
    for i, sid in enumerate(sids):
        provider.create(sid, {"i": i}, now, idle=60, deadline=None)
    assert provider.count() == 20
    assert provider.save(sids[0], {"j": 1}, ["i"], now)
    assert provider.load(sids[0], now).data == {"j": 1}
    provider.destroy(sids[0])
    assert not provider.save(sids[0], {"j": 2}, [], now)  # no resurrection
    assert provider.load(sids[0], now) is None


def test_cluster_rename_across_slots(cluster: RedisCluster) -> None:
    provider = RedisProvider(client=cluster)
    now = time.time()
    old, new = "0" * 43, "Z" * 43
    assert cluster.keyslot("session:" + old) != cluster.keyslot("session:" + new)
    provider.create(old, {"a": [1]}, now, idle=60, deadline=now + 30)
    assert provider.rename(old, new, now)
    assert provider.load(old, now) is None
    assert provider.load(new, now).data == {"a": [1]}
    assert 20_000 < cluster.pttl("session:" + new) <= 30_000
    assert provider.load(new, now + 31) is None  # the deadline came along
    assert not provider.rename(old, "Y" * 43, now)
    assert cluster.exists("session:" + "Y" * 43) == 0
