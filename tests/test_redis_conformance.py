"""The conformance kit (wsgi_session.testing) against the Redis provider:
a plain server, and a one-node Redis Cluster (keys in different slots)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

import pytest
from redis.cluster import RedisCluster

from wsgi_session.provider import Provider
from wsgi_session.providers.redis import RedisProvider
from wsgi_session.testing import ProviderTests

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]
pytestmark = pytest.mark.redis


class TestRedisConformance(ProviderTests):
    """A plain Redis server (the scripts keep the user index with the session)."""

    race_rounds: ClassVar[int] = 50  # each round is a few network round trips
    expires_by_itself: ClassVar[bool] = True
    server: RedisServer

    @pytest.fixture(autouse=True)
    def _server(self, breakable_redis: RedisServer) -> None:
        server = breakable_redis
        if server.process is None or server.process.poll() is not None:
            server.start(port=server.port)  # killed by the last break_store()
        with server.client() as c:
            c.flushall()
        self.server = server

    def make_provider(self) -> Provider:
        return RedisProvider(url=self.server.url, socket_timeout=2, socket_connect_timeout=1)

    def break_store(self, provider: Provider) -> None:
        self.server.kill()


class TestRedisClusterConformance(ProviderTests):
    """A one-node cluster: sessions and user indexes in different slots, so
    the index is kept beside the scripts and a rename is copy-then-delete."""

    race_rounds: ClassVar[int] = 50
    expires_by_itself: ClassVar[bool] = True
    server: RedisServer

    @pytest.fixture(autouse=True)
    def _cluster(self, redis_cluster: RedisServer) -> Iterator[None]:
        server = redis_cluster
        if server.process is None or server.process.poll() is not None:
            # Killed by the last break_store(): back with its slots (nodes.conf).
            server.start(port=server.port)
            server.wait_for_cluster()
        with server.client() as c:
            c.flushall()
        self.server = server
        self.clients: list[RedisCluster] = []
        yield
        for client in self.clients:
            client.close()

    def make_provider(self) -> Provider:
        client = RedisCluster(host="127.0.0.1", port=self.server.port, socket_timeout=2)
        self.clients.append(client)
        return RedisProvider(client=client)

    def break_store(self, provider: Provider) -> None:
        self.server.kill()
