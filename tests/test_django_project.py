"""A fresh ``django-admin startproject`` site with one setting changed.

Each test makes the site in a temp dir, appends ``SESSION_ENGINE`` (and,
for Redis, ``WSGI_SESSION``) to its settings, and runs Django's own
``manage.py check`` and tests/django_site_check.py in subprocesses, so the
site's settings never meet this process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

pytest_plugins = ["redis_server"]


def _site(tmp_path: Path, extra: str = "") -> tuple[Path, dict[str, str]]:
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    with (tmp_path / "mysite" / "settings.py").open("a") as settings:
        settings.write('\nSESSION_ENGINE = "wsgi_session.django"\n' + extra)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    return tmp_path, env


def _run(site: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=site, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_startproject_with_our_engine_passes_manage_py_check(tmp_path: Path) -> None:
    site, env = _site(tmp_path)
    out = _run(site, env, "manage.py", "check", "--fail-level", "WARNING")
    assert "System check identified no issues" in out


def _admin_flow(site: Path, env: dict[str, str]) -> None:
    seen = json.loads(_run(site, env, str(TESTS / "django_site_check.py")).splitlines()[-1])
    assert seen["login_status"] == 302
    assert seen["after"] != seen["before"]  # login gave the session a new key
    assert seen["before_alive"] is False  # ... and the old key died at once
    assert seen["cart"] == ["book"]  # the data moved with it
    assert seen["admin_status"] == 200 and seen["admin_page"] is True
    assert seen["logout_status"] == 200
    assert seen["after_alive"] is False  # logout destroyed the session
    assert seen["replay_status"] == 302  # the logged-out id is no login


def test_startproject_admin_login_logout_memory(tmp_path: Path) -> None:
    _admin_flow(*_site(tmp_path))


@pytest.mark.redis
def test_startproject_admin_login_logout_redis(tmp_path: Path, redis_url: str) -> None:
    config = {"provider": "redis", "provider_options": {"url": redis_url}}
    extra = f"WSGI_SESSION = {config!r}\n"
    _admin_flow(*_site(tmp_path, extra))
