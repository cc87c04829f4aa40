"""Scenario 6's app for gunicorn: ``BENCH_HTTP_IMPL`` picks the wrapping.

bare (no middleware), wsgi_session or beaker. The same tiny app reads and
writes one key of its session when there is one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

KEYS = ("wsgi_session.session", "beaker.session")


def tiny(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    for key in KEYS:
        session = environ.get(key)
        if session is not None:
            session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def _build() -> Any:
    impl = os.environ.get("BENCH_HTTP_IMPL", "bare")
    if impl == "bare":
        return tiny
    if impl == "wsgi_session":
        from wsgi_session import SessionMiddleware

        return SessionMiddleware(tiny, cookie_name="session_id")
    if impl == "beaker":
        from beaker.middleware import SessionMiddleware as BeakerMiddleware

        return BeakerMiddleware(
            tiny,
            {"session.type": "memory", "session.auto": True, "session.key": "session_id",
             "session.timeout": 3600},
        )  # fmt: skip
    raise SystemExit(f"BENCH_HTTP_IMPL must be bare, wsgi_session or beaker, not {impl!r}")


app = _build()
