"""The benchmark script runs end to end on tiny inputs. No timing is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())


def test_every_scenario_reports(quick_run: tuple[str, dict[str, object]]) -> None:
    stdout, _ = quick_run
    for scenario in range(1, 7):
        assert f"\n{scenario}. " in stdout, stdout


def test_results_are_recorded(quick_run: tuple[str, dict[str, object]]) -> None:
    _, raw = quick_run
    results = raw["results"]
    assert isinstance(results, dict)
    for scenario in ("1", "2", "3"):
        assert results[scenario]["median"]["wsgi_session"] > 0
        assert results[scenario]["median"]["beaker"] > 0  # measured side by side
    memory = results["4"]["wsgi_session"]
    assert memory["held"] > 0
    sweep = results["5"][0]
    assert sweep["removed"] >= 5_000  # every expired session was swept
    assert sweep["left"] == 0


def test_the_memory_store_benchmark_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH.parent / "sweep.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # 1: the sweep missed a session
    assert "lock held per batch" in done.stdout
