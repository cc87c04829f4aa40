"""A test-only app for gunicorn: demo_app, plus /stats reporting the worker's store.

Loaded with ``--preload``, it serves a warm-up request in the master before
the workers fork, as an app that warms itself up would: the GC thread starts
in the master and does not survive the fork, so the worker must start its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

from demo_app import app as demo

LOADED_IN = os.getpid()


def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/stats":
        return demo(environ, start_response)
    manager = demo.manager
    stats = {
        "sessions": len(manager.provider),
        "gc_running": manager.gc_running,
        "pid": os.getpid(),
        "loaded_in": LOADED_IN,
    }
    body = json.dumps(stats).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _warm_up() -> None:
    environ: dict[str, Any] = {"PATH_INFO": "/warm-up"}  # a 404 that never touches the session
    setup_testing_defaults(environ)
    result = demo(environ, lambda status, headers, exc_info=None: None)
    getattr(result, "close", lambda: None)()
    assert demo.manager.gc_running


_warm_up()
