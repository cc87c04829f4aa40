"""Providers by name: a plain dict, plus the ``wsgi_session.providers`` entry points."""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from .errors import UnknownProviderError
from .provider import Provider

ProviderFactory = Callable[..., Provider]

ENTRY_POINT_GROUP = "wsgi_session.providers"

_factories: dict[str, ProviderFactory] = {}
_lock = threading.Lock()


def register(name: str, factory: ProviderFactory) -> None:
    """Make ``factory`` available as ``provider=name``.

    ``factory`` is a Provider subclass or any callable that takes
    ``provider_options`` as keyword arguments and returns a
    :class:`~wsgi_session.Provider`. Each :class:`~wsgi_session.Manager`
    (so each middleware or framework adapter) calls it once.
    """
    if type(name) is not str or not name:
        raise TypeError(f"provider name must be a non-empty str, not {name!r}")
    if not callable(factory):
        raise TypeError(f"provider factory for {name!r} is not callable")
    with _lock:
        if name in _factories:
            raise ValueError(f"a provider is already registered as {name!r}")
        _factories[name] = factory


def available() -> list[str]:
    """The names of the registered providers (entry points included), sorted."""
    _load_entry_points()
    return sorted(_factories)


def create(name: str, options: dict[str, Any] | None = None) -> Provider:
    """Build the provider registered as ``name`` with ``options`` as kwargs."""
    factory = _factories.get(name)
    if factory is None:
        _load_entry_points()
        factory = _factories.get(name)
    if factory is None:
        raise UnknownProviderError(
            f"provider: no provider is registered as {name!r}; "
            f"known providers: {', '.join(sorted(_factories)) or '(none)'}"
        )
    provider = factory(**(options or {}))
    if not isinstance(provider, Provider):
        raise TypeError(
            f"provider: the factory registered as {name!r} returned "
            f"{type(provider).__name__}, not a Provider"
        )
    return provider


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _factories:
            with _lock:
                _factories.setdefault(ep.name, ep.load())


def _memory(**options: Any) -> Provider:
    from .providers.memory import MemoryProvider

    return MemoryProvider(**options)


def _redis(**options: Any) -> Provider:
    # Imported on use: redis-py is an optional extra.
    from .providers.redis import RedisProvider

    return RedisProvider(**options)


def _sqlite(**options: Any) -> Provider:
    from .providers.sqlite import SqliteProvider

    return SqliteProvider(**options)


def _postgres(**options: Any) -> Provider:
    # Imported on use: psycopg is an optional extra.
    from .providers.postgres import PostgresProvider

    return PostgresProvider(**options)


register("memory", _memory)
register("redis", _redis)
register("sqlite", _sqlite)
register("postgres", _postgres)
