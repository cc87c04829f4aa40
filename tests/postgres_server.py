"""A private PostgreSQL server for the PostgreSQL tests, on a free loopback port.

Loaded by the PostgreSQL test modules with ``pytest_plugins = ["postgres_server"]``.
Never the machine's shared server on 5432: each server here is a fresh
``initdb`` cluster in its own temporary directory (its unix socket there
too), listening on 127.0.0.1 at a free port, stopped at the end. Root may
not run PostgreSQL, so as root the server runs as the ``postgres`` system
user (which Debian's ``postgresql`` package creates). Without ``initdb`` and
``pg_ctl`` the tests skip, unless WSGI_SESSION_REQUIRE_POSTGRES=1 (CI)
makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require

#: The shared server's port, never handed to a private one.
SHARED_PORT = 5432


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != SHARED_PORT:
            return port


def find_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the
    newest of Debian's /usr/lib/postgresql/<version>/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        # Debian links them into PATH; the real directory also has `postgres`.
        return Path(os.path.realpath(initdb)).parent
    found = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    for pg_ctl in sorted(found, key=version, reverse=True):
        directory = Path(pg_ctl).parent
        if (directory / "initdb").exists():
            return directory
    return None


class PostgresServer:
    """One private cluster: ``start``, ``stop`` (fast or immediate), ``dsn``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # Not under pytest's temporary root: that is private to root (0700),
        # and the server may run as another user who must reach its files.
        self.directory = Path(tempfile.mkdtemp(prefix="wsgi-session-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = 0
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [*self.prefix, str(self.bindir / program), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        """Start on the same port as before, or on a free one the first time."""
        for attempt in range(5):  # the free port may be taken before the server binds it
            port = self.port or free_port()
            try:
                self._run(
                    "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                    "-o", f"-p {port} -c listen_addresses=127.0.0.1"
                    f" -k {self.directory} -c fsync=off -c shared_buffers=16MB"
                    " -c max_connections=60"
                    # Writes that do not wait for the disk (loads, durable_saves=False)
                    # stay in memory for this long: a crash test then loses them.
                    " -c wal_writer_delay=10s",
                )  # fmt: skip
            except RuntimeError:
                if self.port or attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
                continue
            self.port = port
            return

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: as a crash would (no
        goodbye to clients, crash recovery at the next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "30")

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def need_postgres() -> Path:
    bindir = find_bin()
    require(
        "postgres",
        "WSGI_SESSION_REQUIRE_POSTGRES",
        bindir is not None,
        "PostgreSQL's initdb and pg_ctl were not found (apt-get install postgresql)",
    )
    require(
        "postgres",
        "WSGI_SESSION_REQUIRE_POSTGRES",
        os.geteuid() != 0 or _has_user("postgres"),
        "PostgreSQL refuses to run as root, and there is no postgres user to run it as",
    )
    assert bindir is not None
    return bindir


@pytest.fixture
def postgres_bin() -> Path:
    """The directory of initdb and pg_ctl (skip, or fail in CI, without them)."""
    return need_postgres()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL for the whole run."""
    server = PostgresServer(need_postgres())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL for this test alone, which it may stop and start."""
    server = PostgresServer(need_postgres())
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def unused_port() -> int:
    """A loopback port where nothing listens (not the shared server's)."""
    return free_port()
