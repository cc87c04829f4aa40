"""A private PostgreSQL for the benchmarks: ``with postgres_server() as dsn``.

A fresh ``initdb`` cluster in a temporary directory, on a free loopback port
(never the shared 5432), its unix socket in that directory too, stopped and
removed at the end. Settings are the server's defaults (fsync and
synchronous_commit on), as in production. As root it runs as the
``postgres`` system user, since PostgreSQL refuses root. Needs Debian's
``postgresql`` (initdb and pg_ctl).
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
from contextlib import contextmanager
from pathlib import Path


def pg_bin() -> Path | None:
    """Where initdb and pg_ctl are: PATH, else the newest /usr/lib/postgresql/*/bin."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL's initdb and pg_ctl were not found (apt-get install postgresql)"
        )
    directory = tempfile.mkdtemp(prefix="wsgi-session-bench-pg-")
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(directory, "data")

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, stdin=subprocess.DEVNULL)

    try:
        run(str(bindir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
        port = 5432
        while port == 5432:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        run(str(bindir / "pg_ctl"), "start", "-D", data, "-w", "-l", os.path.join(directory, "log"),
            "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {directory}")  # fmt: skip
        try:
            yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        finally:
            run(str(bindir / "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
