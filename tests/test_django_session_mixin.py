"""Django's own session-engine tests (``SessionTestsMixin``) against ours.

The mixin comes from Django's source distribution at test time, for the
installed Django version: ``pip download`` fetches the sdist (or
``WSGI_SESSION_DJANGO_SDIST`` names a local copy), and only the
``SessionTestsMixin`` class and the imports it uses are taken from
``tests/sessions_tests/tests.py``. No Django code is kept in this repo
(the download is cached in the system's temp directory between runs).
Without network access the module skips, unless
``WSGI_SESSION_REQUIRE_DJANGO_TESTS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path
from typing import Any

import django
import pytest
from conftest import require
from examples_common import load_example

MEMBER = "tests/sessions_tests/tests.py"

# Mixin tests that cannot apply to this engine, with the reason: none today.
SKIPPED: dict[str, str] = {}


def _sdist() -> Path:
    local = os.environ.get("WSGI_SESSION_DJANGO_SDIST")
    if local:
        return Path(local)
    directory = Path(tempfile.gettempdir()) / f"wsgi_session-django-{django.__version__}"
    found = sorted(directory.glob("*.tar.gz"))
    if found:
        return found[0]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--quiet", "--dest", str(directory),
        f"django=={django.__version__}",
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=180)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        require(
            "Django's sdist",
            "WSGI_SESSION_REQUIRE_DJANGO_TESTS",
            False,
            f"could not download Django {django.__version__}'s sdist (no network?)",
        )
    found = sorted(directory.glob("*.tar.gz"))  # pip writes it whole or not at all
    assert found, "pip download left no sdist"
    return found[0]


def _mixin_source(sdist: Path) -> str:
    """The imports and the ``SessionTestsMixin`` class of Django's tests.py."""
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(MEMBER))
        extracted = tar.extractfile(member)
        assert extracted is not None
        text = extracted.read().decode("utf-8")
    tree = ast.parse(text)
    keep: list[ast.stmt] = []
    for node in tree.body:
        is_import = isinstance(node, ast.Import) or (
            isinstance(node, ast.ImportFrom) and node.level == 0  # not ``from .models``
        )
        if is_import or (isinstance(node, ast.ClassDef) and node.name == "SessionTestsMixin"):
            keep.append(node)
    assert any(isinstance(n, ast.ClassDef) for n in keep), "no SessionTestsMixin in tests.py"
    return ast.unparse(ast.Module(body=keep, type_ignores=[]))


@pytest.fixture(scope="module")
def mixin() -> type:
    load_example("django_app")  # configures Django (apps, a database, our engine)
    source = _mixin_source(_sdist())
    namespace: dict[str, Any] = {"__name__": "django_sessions_tests"}
    exec(compile(source, "<django tests/sessions_tests/tests.py>", "exec"), namespace)
    cls: type = namespace["SessionTestsMixin"]
    return cls


def test_django_session_tests_mixin(mixin: type) -> None:
    from django.test import SimpleTestCase

    from wsgi_session.django import SessionStore

    class WsgiSessionTests(mixin, SimpleTestCase):  # type: ignore[valid-type,misc]
        backend = SessionStore

    for name, reason in SKIPPED.items():
        setattr(WsgiSessionTests, name, unittest.skip(reason)(getattr(WsgiSessionTests, name)))
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(WsgiSessionTests)
    assert suite.countTestCases() > 50  # the whole mixin, sync and async
    result = unittest.TestResult()
    suite.run(result)
    failed = result.failures + result.errors
    problems = [f"{test.id().rpartition('.')[2]}:\n{trace}" for test, trace in failed]
    assert not problems, "\n\n".join(problems)
    assert len(result.skipped) == len(SKIPPED)
