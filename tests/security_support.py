"""Helpers for the security tests.

``call`` runs a WSGI app directly, as a server would, with no client-side
validation, so tests can send headers no well-behaved client would produce.
``CountingProvider`` and ``FlakyProvider`` are real providers (MemoryProvider
subclasses) that count store lookups or fail on demand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import webtest

from wsgi_session import ProviderError
from wsgi_session.ids import is_valid_id
from wsgi_session.providers.memory import MemoryProvider


@dataclass
class Response:
    status: str
    headers: list[tuple[str, str]]
    body: bytes
    starts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def cookies(self) -> list[str]:
        """The Set-Cookie header values."""
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def cookie_value(self, name: str = "session_id") -> str | None:
        """The value the last Set-Cookie for ``name`` gives (``""`` deletes)."""
        value = None
        for header in self.cookies():
            pair = header.split(";", 1)[0]
            key, _, v = pair.partition("=")
            if key == name:
                value = v
        return value


def environ_for(
    path: str = "/", cookie: str | None = None, query: str = "", **extra: Any
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": None,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    environ.update(extra)
    return environ


def call(app: Callable[..., Any], environ: dict[str, Any]) -> Response:
    """Run one request through ``app`` the way a WSGI server does."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started.append((status, list(headers)))
        return chunks.append

    chunks: list[bytes] = []
    result = app(environ, start_response)
    try:
        for chunk in result:
            chunks.append(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    assert started, "the app never called start_response"
    status, headers = started[-1]
    return Response(status, headers, b"".join(chunks), starts=len(started))


class CountingProvider(MemoryProvider):
    """A MemoryProvider that counts ``load`` calls and remembers malformed ids."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.loads = 0
        self.malformed: list[str] = []

    def load(self, sid: str, *args: Any, **kwargs: Any) -> Any:
        self.loads += 1
        # A store key is an id, or (hash_ids) the id's SHA-256, 32 hex digits.
        if not (is_valid_id(sid) or re.fullmatch("[0-9a-f]{32}", sid)):
            self.malformed.append(sid)
        return super().load(sid, *args, **kwargs)


class FlakyProvider(MemoryProvider):
    """A MemoryProvider whose every operation raises ProviderError while ``down``.

    ``message`` is the error text; ``{sid}`` in it is replaced by the key the
    operation was given (a careless store that puts keys in its errors).
    """

    def __init__(self, message: str = "store unreachable", **options: Any) -> None:
        super().__init__(**options)
        self.down = False
        self.message = message

    def _check(self, sid: str) -> None:
        if self.down:
            try:
                raise ConnectionError("connection refused")
            except ConnectionError as exc:
                raise ProviderError(self.message.format(sid=sid)) from exc

    def create(self, sid: str, *args: Any, **kwargs: Any) -> None:
        self._check(sid)
        super().create(sid, *args, **kwargs)

    def load(self, sid: str, *args: Any, **kwargs: Any) -> Any:
        self._check(sid)
        return super().load(sid, *args, **kwargs)

    def save(self, sid: str, *args: Any, **kwargs: Any) -> bool:
        self._check(sid)
        return super().save(sid, *args, **kwargs)

    def rename(self, old: str, *args: Any, **kwargs: Any) -> bool:
        self._check(old)
        return super().rename(old, *args, **kwargs)

    def destroy(self, sid: str) -> None:
        self._check(sid)
        super().destroy(sid)


def issued_id(res: webtest.TestResponse, name: str = "session_id") -> str | None:
    """The session id a response's Set-Cookie gives, or None."""
    value = None
    for header in res.headers.getall("Set-Cookie"):
        key, _, rest = header.split(";", 1)[0].partition("=")
        if key == name:
            value = rest
    return value


def visit(client: webtest.TestApp, sid: str | None, path: str = "/") -> webtest.TestResponse:
    """A request that presents ``sid`` (or no cookie) whatever the client kept."""
    headers = {} if sid is None else {"Cookie": f"session_id={sid}"}
    client.reset()
    return client.get(path, headers=headers)
