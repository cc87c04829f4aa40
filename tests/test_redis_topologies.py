"""The Redis provider over a Sentinel master client and a Redis Cluster."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from wsgi_session.provider import Record
from wsgi_session.providers.redis import RedisProvider

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis

NOW = 1_000_000.0


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
    sids = [f"{i:043d}" for i in range(20)]
    for i, sid in enumerate(sids):
        provider.create(sid, {"i": i}, NOW, idle=60, deadline=None, user=f"u{i % 2}")
    assert provider.count() == 20
    assert provider.save(sids[0], {"j": 1.0}, ["i"], NOW)
    record = provider.load(sids[0], NOW + 1)
    assert record is not None and record.data == {"j": 1.0} and record.accessed == NOW
    provider.destroy(sids[0])
    assert not provider.save(sids[0], {"j": 2}, [], NOW)  # no resurrection
    assert provider.load(sids[0], NOW) is None
    assert provider.load(sids[1], NOW + 61) is None  # idle, on the manager's clock


def listed(provider: RedisProvider, user: str, now: float = NOW) -> set[str]:
    return {sid for sid, _ in provider.sessions_of(user, now)}


def test_cluster_user_index(cluster: RedisCluster) -> None:
    provider = RedisProvider(client=cluster)
    a, b, c = "a" * 43, "b" * 43, "c" * 43
    for sid in (a, b, c):
        provider.create(sid, {}, NOW, idle=60, deadline=None, user="alice")
    index = b"session:user:alice"
    assert cluster.keyslot(index) != cluster.keyslot(b"session:" + a.encode())
    assert listed(provider, "alice") == {a, b, c}
    assert provider.save(a, {}, [], NOW, user="bob")
    assert listed(provider, "alice") == {b, c} and listed(provider, "bob") == {a}
    assert provider.save(a, {}, [], NOW, lifetime=(100.0, True))  # the user stays
    assert listed(provider, "bob") == {a}
    provider.destroy(b)
    cluster.delete(b"session:" + c.encode())  # as Redis's expiry would
    assert listed(provider, "alice") == set()
    assert cluster.exists(index) == 0  # stale entries removed at the read or the destroy
    assert not provider.save(b, {}, [], NOW, user="carol")  # not live: never listed
    assert listed(provider, "carol") == set()


def test_cluster_rename_across_slots(cluster: RedisCluster) -> None:
    provider = RedisProvider(client=cluster)
    old, new = "0" * 43, "Z" * 43
    assert cluster.keyslot("session:" + old) != cluster.keyslot("session:" + new)
    provider.create(old, {"a": [1]}, NOW, idle=60, deadline=NOW + 30, persistent=True, user="u")
    assert provider.rename(old, new, NOW + 5)
    assert provider.load(old, NOW + 5) is None
    assert provider.load(new, NOW + 6) == Record({"a": [1]}, NOW, NOW, 60.0, NOW + 30, True)
    assert 20_000 < cluster.pttl("session:" + new) <= 30_000
    assert listed(provider, "u") == {new}
    assert cluster.smembers("session:user:u") == {b"session:" + new.encode()}
    assert provider.load(new, NOW + 31) is None  # the deadline came along
    assert not provider.rename(old, "Y" * 43, NOW)
    assert cluster.exists("session:" + "Y" * 43) == 0


class Racing(RedisProvider):
    """Runs ``race`` between the copy and the delete of a cross-slot rename."""

    race: Callable[[], None] = staticmethod(lambda: None)

    def _copied(self) -> None:
        race, self.race = self.race, lambda: None  # once
        race()


def test_cluster_rename_loses_to_a_destroy_during_the_copy(cluster: RedisCluster) -> None:
    provider = Racing(client=cluster)
    other = RedisProvider(client=cluster)  # another process
    old, new = "0" * 43, "Z" * 43
    provider.create(old, {"secret": 1}, NOW, idle=60, deadline=None, user="u")
    provider.race = lambda: other.destroy(old)  # log out, mid-rename
    assert not provider.rename(old, new, NOW)
    assert provider.load(old, NOW) is None
    assert provider.load(new, NOW) is None  # the copy did not survive
    assert listed(provider, "u") == set()
    assert cluster.keys("*") == []


def test_cluster_rename_keeps_a_save_made_during_the_copy(cluster: RedisCluster) -> None:
    provider = Racing(client=cluster)
    other = RedisProvider(client=cluster)
    old, new = "0" * 43, "Z" * 43
    provider.create(old, {"a": 1}, NOW, idle=60, deadline=None)
    provider.race = lambda: other.save(old, {"b": 2}, ["a"], NOW + 1, lifetime=(90.0, True))
    assert provider.rename(old, new, NOW + 2)
    record = provider.load(new, NOW + 3)
    assert record is not None
    assert record.data == {"b": 2} and (record.idle, record.persistent) == (90.0, True)
    assert provider.load(old, NOW + 3) is None


def test_cluster_rename_needs_no_second_copy_for_a_mere_access(cluster: RedisCluster) -> None:
    provider = Racing(client=cluster)
    other = RedisProvider(client=cluster)
    old, new = "0" * 43, "Z" * 43
    provider.create(old, {"a": 1}, NOW, idle=60, deadline=None)
    copies = []
    provider.race = lambda: copies.append(other.load(old, NOW + 1))
    provider.RENAME_ATTEMPTS = 1  # a second copy would raise
    assert provider.rename(old, new, NOW + 2)
    assert copies and copies[0] is not None
    record = provider.load(new, NOW + 3)
    assert record is not None and record.data == {"a": 1}


def test_cluster_with_a_hash_tag_runs_as_one_node(cluster: RedisCluster) -> None:
    # Every key in one slot: the index is kept in the session's scripts and
    # a rename is one atomic script.
    provider = RedisProvider(client=cluster, prefix="{s}:")
    old, new = "0" * 43, "Z" * 43
    provider.create(old, {"a": 1}, NOW, idle=60, deadline=None, user="u")
    assert provider.rename(old, new, NOW)
    assert listed(provider, "u") == {new}
    assert provider.save(new, {}, [], NOW, user="v")
    assert listed(provider, "u") == set() and listed(provider, "v") == {new}
    assert cluster.exists("{s}:user:u") == 0
    provider.destroy(new)
    assert cluster.keys("*") == []


def test_cluster_client_decoding_responses(redis_cluster: RedisServer) -> None:
    client = RedisCluster(
        host="127.0.0.1", port=redis_cluster.port, socket_timeout=2, decode_responses=True
    )
    client.flushall()
    provider = RedisProvider(client=client)
    old, new = "0" * 43, "Z" * 43
    provider.create(old, {"k": "é"}, NOW, idle=60, deadline=None, user="é")
    record = provider.load(old, NOW)
    assert record is not None and record.data == {"k": "é"}
    assert provider.rename(old, new, NOW)
    assert listed(provider, "é") == {new}
    client.close()
