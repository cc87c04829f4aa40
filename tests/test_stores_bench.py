"""bench/stores.py runs end to end on tiny inputs (memory and sqlite; then with
PostgreSQL). No timing is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["postgres_server"]

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "stores.py"


def run(*options: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-redis", "-p", "2", *options],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )


def test_stores_bench_quick_run_compares_sqlite_with_memory() -> None:
    done = run("--no-postgres")
    assert done.returncode == 0, done.stdout + done.stderr
    wall = done.stdout.split("wall-clock)")[1].split("\n\n")[0]
    assert wall.count("x\n") + wall.endswith("x") == 3, done.stdout  # rw, read, new
    assert "2 processes at once" in done.stdout
    assert "requests/s" in done.stdout.split("processes at once")[1]


@pytest.mark.postgres
def test_stores_bench_quick_run_with_postgres(postgres_bin: Path) -> None:
    done = run("--postgres-no-wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "durable_saves=False" in done.stdout
    wall = done.stdout.split("wall-clock)")[1].split("\n\n")[0]
    assert "postgres/memory" in wall and wall.count("x\n") + wall.endswith("x") == 3, done.stdout
    assert "postgres" in done.stdout.split("processes at once")[1]
