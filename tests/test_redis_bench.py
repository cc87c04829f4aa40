"""The Redis benchmark script runs end to end on tiny inputs, against its
own private redis-server. No timing is checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import require

BENCH = Path(__file__).resolve().parent.parent / "bench" / "redis_bench.py"


def test_redis_bench_quick_run_compares_both_libraries() -> None:
    require(
        "redis-server",
        "WSGI_SESSION_REQUIRE_REDIS",
        shutil.which("redis-server") is not None,
        "redis-server is not on PATH (apt-get install redis-server)",
    )
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Round trips and server commands per request" in done.stdout
    table = done.stdout.split("Median time per request")[1]
    assert table.count("x\n") >= 3, done.stdout  # a ratio for each of rw, new, read
