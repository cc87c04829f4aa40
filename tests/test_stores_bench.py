"""bench/stores.py runs end to end on tiny inputs (memory and sqlite). No timing is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "stores.py"


def test_stores_bench_quick_run_compares_sqlite_with_memory() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--no-redis", "--no-postgres", "-p", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wall = done.stdout.split("wall-clock)")[1].split("\n\n")[0]
    assert wall.count("x\n") + wall.endswith("x") == 3, done.stdout  # rw, read, new
    assert "2 processes at once" in done.stdout
    assert "requests/s" in done.stdout.split("processes at once")[1]
