"""A private redis-server for the Redis tests, on a free loopback port.

Loaded by the Redis test modules with ``pytest_plugins = ["redis_server"]``.
Never the shared server on 6379: each server here has its own port, no
persistence (``--save "" --appendonly no``) and a temporary directory.
Without ``redis-server`` on PATH the tests skip, unless
WSGI_SESSION_REQUIRE_REDIS=1 (CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import webtest
from conftest import require

from wsgi_session import SessionMiddleware


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process: start, stop, kill, pause (SIGSTOP), resume."""

    def __init__(self, directory: Path, *extra: str, config: Path | None = None) -> None:
        self.directory = directory
        self.extra = extra
        self.config = config
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, connect_timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=5,
            socket_connect_timeout=connect_timeout,
        )

    def start(self, port: int | None = None) -> None:
        for _ in range(5):  # the free port may be taken before the server binds it
            self.port = port or free_port()
            log = self.directory / "redis.log"
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    *([str(self.config)] if self.config else []),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    "--logfile",
                    str(log),
                    *self.extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"redis-server did not start; see {log}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        assert self.process is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.process.poll() is not None:
                return False
            c = self.client(connect_timeout=0.5)
            try:
                if c.ping():
                    return True
            except redis.ConnectionError:
                time.sleep(0.02)
            finally:
                # Closed now, not at garbage collection (older redis-py's
                # close() leaves the pool connected): tests count connections.
                c.connection_pool.disconnect()
        return False

    def wait_for_cluster(self, timeout: float = 10.0) -> None:
        """Wait until a cluster node reports ``cluster_state:ok``."""
        end = time.monotonic() + timeout
        with self.client() as c:
            while b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > end:
                    raise RuntimeError("the cluster did not come up")
                time.sleep(0.05)

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # in case a test paused it
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no goodbye to connected clients."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the server accepts nothing and answers nothing (a hung Redis)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


def need_redis_server() -> None:
    require(
        "redis-server",
        "WSGI_SESSION_REQUIRE_REDIS",
        shutil.which("redis-server") is not None,
        "redis-server is not on PATH (apt-get install redis-server)",
    )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole run."""
    need_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared private server's URL, emptied for this test."""
    with redis_server.client() as c:
        c.flushall()
    return redis_server.url


@pytest.fixture
def rclient(redis_server: RedisServer, redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the (emptied) private server, to look behind the provider."""
    with redis_server.client() as c:
        yield c


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, which it may kill or pause."""
    need_redis_server()
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def breakable_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server for one module, which its tests may kill (restart it
    with ``start(port=server.port)``)."""
    need_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("breakable"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A one-node Redis Cluster holding every slot."""
    need_redis_server()
    server = RedisServer(
        tmp_path_factory.mktemp("cluster"),
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
    )  # fmt: skip
    server.start()
    with server.client() as c:
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    try:
        server.wait_for_cluster()
    except RuntimeError:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def redis_sentinel(redis_server: RedisServer, redis_url: str, tmp_path: Path) -> Iterator[int]:
    """A Sentinel watching the private server as ``mymaster``; yields its port."""
    config = tmp_path / "sentinel.conf"
    config.write_text(f"sentinel monitor mymaster 127.0.0.1 {redis_server.port} 1\n")
    sentinel = RedisServer(tmp_path, "--sentinel", config=config)
    sentinel.start()
    yield sentinel.port
    sentinel.stop()


AppFactory = Callable[..., "tuple[SessionMiddleware, webtest.TestApp]"]


@pytest.fixture
def redis_app(make_app: AppFactory, redis_url: str) -> AppFactory:
    """``mw, client = redis_app(**options)``: make_app on the private server."""

    def factory(**options: Any) -> tuple[SessionMiddleware, webtest.TestApp]:
        return make_app(provider="redis", provider_options={"url": redis_url}, **options)

    return factory
