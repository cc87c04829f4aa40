"""Helpers for the Flask, Django and Pyramid adapter tests."""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Mapping
from types import EllipsisType
from typing import Any

import webtest

from wsgi_session.provider import UNCHANGED, Record
from wsgi_session.providers.memory import MemoryProvider


class CountingMemory(MemoryProvider):
    """The real memory store, counting the calls that reach it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls = 0

    def create(self, sid: str, data: Mapping[str, Any], now: float, **kw: Any) -> None:
        self.calls += 1
        super().create(sid, data, now, **kw)

    def load(self, sid: str, now: float) -> Record | None:
        self.calls += 1
        return super().load(sid, now)

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        *,
        lifetime: tuple[float, bool] | None = None,
        user: str | None | EllipsisType = UNCHANGED,
    ) -> bool:
        self.calls += 1
        return super().save(sid, changed, removed, now, lifetime=lifetime, user=user)

    def rename(self, old: str, new: str, now: float) -> bool:
        self.calls += 1
        return super().rename(old, new, now)

    def destroy(self, sid: str) -> None:
        self.calls += 1
        super().destroy(sid)


_TOKEN = re.compile(r'name="(?:csrf_token|csrfmiddlewaretoken)" value="([^"]+)"')


def csrf_token(page: str) -> str:
    """The CSRF token of the first form on ``page``."""
    found = _TOKEN.search(page)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


class Rendezvous:
    """Holds each of ``parties`` requests inside its view until all have
    read their session: then every save races every other."""

    def __init__(self, parties: int = 2) -> None:
        self.barrier = threading.Barrier(parties, timeout=10)

    def wait(self) -> None:
        self.barrier.wait()


def concurrently(client: webtest.TestApp, paths: list[str]) -> None:
    """GET each path from its own thread with ``client``'s cookies."""
    cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    app = client.app
    errors: list[BaseException] = []

    def get(path: str) -> None:
        try:
            webtest.TestApp(app).get(path, headers={"Cookie": cookie})
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=get, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors

