"""The release artefacts: `python -m build` gives an sdist and a wheel that
install into a fresh virtual environment and work there."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import wsgi_session

ROOT = Path(__file__).resolve().parent.parent

SMOKE = """
import wsgi_session
from wsgi_session import SessionMiddleware, get_session
from wsgiref.util import setup_testing_defaults

def app(environ, start_response):
    get_session(environ)["n"] = 1
    start_response("200 OK", [])
    return [b""]

mw = SessionMiddleware(app, gc_interval=None)
environ = {}
setup_testing_defaults(environ)
headers = []
mw(environ, lambda status, h, exc_info=None: headers.extend(h))
assert any(name == "Set-Cookie" for name, _ in headers), headers
assert sorted(wsgi_session.available())[:1] == ["memory"], wsgi_session.available()
print(wsgi_session.__version__)
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Plain `python -m build`: the sdist first, then the wheel built from the
    # sdist, so a file missing from the sdist fails here.
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_the_sdist_and_the_wheel_carry_the_package(dist: Path) -> None:
    version = wsgi_session.__version__
    (wheel,) = dist.glob(f"wsgi_session-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"wsgi_session-{version}.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "wsgi_session/py.typed" in names and "wsgi_session/providers/memory.py" in names
    assert not any(name.startswith("tests/") for name in names)
    with tarfile.open(sdist) as tar:
        assert f"wsgi_session-{version}/README.md" in tar.getnames()


def test_the_wheel_installs_into_a_fresh_venv_and_runs(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = subprocess.run(
        [str(python), "-c", SMOKE], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == wsgi_session.__version__
