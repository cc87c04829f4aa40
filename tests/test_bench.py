"""The benchmark runs end to end on tiny inputs and reports every row of
issue 13's table of targets. No timing is checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "run.py"
sys.path.insert(0, str(BENCH.parent))

import frameworks  # noqa: E402  (bench/frameworks.py: the framework races)

Run = tuple[str, dict[str, Any]]


def have_redis_server() -> bool:
    return shutil.which("redis-server") is not None


def have_uwsgi() -> bool:
    """As bench/run.py looks for it: a uwsgi built for this Python, or Debian's."""
    local = Path(sysconfig.get_path("scripts")) / "uwsgi"
    commands = [[str(local)]] if local.exists() else []
    if shutil.which("uwsgi"):
        commands.append(["uwsgi", "--plugin", "python3"])
    return any(
        subprocess.run([*c, "--version"], capture_output=True).returncode == 0 for c in commands
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``run.py --quick`` with every section, once for the module."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, json.loads(out.read_text())


def rows(run: Run) -> dict[str, list[Any]]:
    return {row[0]: row for row in run[1]["targets"]}


def test_every_section_reports(quick_run: Run) -> None:
    stdout, _ = quick_run
    for section in range(1, 10):
        assert f"\n{section}. " in stdout, stdout
    assert "\nIssue 13 targets" in stdout


def test_every_middleware_target_has_a_row_with_goal_and_verdict(quick_run: Run) -> None:
    expected = [
        f"1 existing session, read + write, {header} header, {config}"
        for header in ("browser", "one")
        for config in ("minimal", "all features")
    ]
    expected += [
        f"2 new visitor, {header} header, {config}"
        for header in ("browser", "one")
        for config in ("minimal", "all features")
    ]
    expected += [f"3 untouched request, {config}" for config in ("minimal", "all features")]
    expected += [f"4 memory per session, {config}" for config in ("minimal", "all features")]
    expected += ["5 sweep, longest lock hold (mixed lifetimes)", "6 gunicorn gthread + wrk"]
    found = rows(quick_run)
    stdout = quick_run[0].split("Issue 13 targets")[1]
    for name in expected:
        assert name in found, sorted(found)
        _, measured, goal, met = found[name]
        assert measured and goal and met in (True, False)
        assert name in stdout


def test_the_uwsgi_row_is_reported_where_uwsgi_runs(quick_run: Run) -> None:
    require(
        "uwsgi",
        "WSGI_SESSION_REQUIRE_UWSGI",
        have_uwsgi(),
        "uwsgi is not installed (apt-get install uwsgi uwsgi-plugin-python3)",
    )
    assert "6 uWSGI threads + wrk" in rows(quick_run)


def test_the_http_rows_give_the_microseconds_a_request_adds(quick_run: Run) -> None:
    found = rows(quick_run)
    http_rows = {"6/gunicorn": "6 gunicorn gthread + wrk", "6/uwsgi": "6 uWSGI threads + wrk"}
    for key, row in http_rows.items():
        if row not in found:
            continue  # uWSGI missing: the test above says whether that is allowed
        result = quick_run[1]["results"][key]
        median, added = result["median"], result["added_us"]
        for impl in median:
            assert added[impl] == pytest.approx(1e6 / median[impl] - 1e6 / median["bare"])
        assert f"{added['wsgi_session']:+.1f} µs a request" in found[row][1]


def test_beaker_races_under_uwsgi_when_its_python_has_a_venv_with_beaker(quick_run: Run) -> None:
    import run  # bench/run.py

    if run._uwsgi() is None or run._uwsgi_venv() is None:
        pytest.skip("no venv of uWSGI's own Python with Beaker in it (.ci/run makes one)")
    assert "beaker" in quick_run[1]["results"]["6/uwsgi"]["median"]


def test_both_configurations_and_headers_are_measured_side_by_side(quick_run: Run) -> None:
    results = quick_run[1]["results"]
    for key in ("1", "1/one", "2", "2/one", "3"):
        medians = results[key]["median"]
        for impl in ("wsgi_session", "wsgi_session+all", "beaker", "bare"):
            assert medians[impl] > 0, (key, impl)


def test_the_sweep_removes_exactly_the_dead_sessions_of_mixed_lifetimes(quick_run: Run) -> None:
    sweep = quick_run[1]["results"]["5"][0]
    assert 0 < sweep["dead"] < sweep["held"]  # some live ones: the lifetimes are mixed
    assert sweep["removed"] == sweep["dead"]
    assert sweep["left"] == sweep["held"] - sweep["dead"]


def test_every_framework_race_without_redis_has_a_row(quick_run: Run) -> None:
    found = rows(quick_run)
    results = quick_run[1]["results"]["7"]
    for framework, ours, peer, store in frameworks.RACES:
        if store == "Redis":
            continue
        name = f"7 {framework}: {ours} vs {peer} ({store})"
        assert name in found, sorted(found)
        assert found[name][3] in (True, False)
        assert results[framework][ours]["rw"] > 0 and results[framework][peer]["new"] > 0
    for framework, ours, peer in frameworks.CLIENT_SIDE:
        assert f"7 {framework}: {ours} vs {peer} (client side)" in found


def test_redis_rows_against_round_trips_and_flask_session(quick_run: Run) -> None:
    require(
        "redis-server",
        "WSGI_SESSION_REQUIRE_REDIS",
        have_redis_server(),
        "redis-server is not on PATH (apt-get install redis-server)",
    )
    found = rows(quick_run)
    for name in (
        "8 Redis read + write",
        "8 Redis read only",
        "8 Redis vs Flask-Session's Redis interface",
        "7 flask: wsgi_session/redis vs flask-session/redis (Redis)",
        "7 pyramid: wsgi_session/redis vs pyramid_session_redis (Redis)",
    ):
        assert name in found, sorted(found)
        assert found[name][3] in (True, False)
    assert quick_run[1]["results"]["8"]["median"]["ping"] > 0


def test_the_stores_section_compares_sqlite_with_memory(quick_run: Run) -> None:
    stores = quick_run[1]["results"]["9"]
    assert "sqlite/memory" in stores
    assert "processes at once" in stores


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


def test_accounts_bench_lists_every_store() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "accounts.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for store in ("memory", "sqlite", "redis", "postgres"):
        assert f"| {store} |" in done.stdout, done.stdout
