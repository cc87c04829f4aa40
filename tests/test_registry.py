"""The provider registry: names, duplicates, factories, entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from wsgi_session import Provider, UnknownProviderError, available, register
from wsgi_session import registry as registry_module
from wsgi_session.providers.memory import MemoryProvider


def test_builtin_names() -> None:
    assert {"memory", "redis", "postgres"} <= set(available())
    assert isinstance(registry_module.create("memory"), MemoryProvider)


def test_registering_a_taken_name_raises() -> None:
    with pytest.raises(ValueError, match="'memory'"):
        register("memory", MemoryProvider)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownProviderError) as info:
        registry_module.create("mongo")
    message = str(info.value)
    assert "'mongo'" in message and "memory" in message and "redis" in message
    assert isinstance(info.value, ValueError)


def test_factory_gets_options_as_kwargs_and_each_call_a_new_instance() -> None:
    seen: list[dict[str, Any]] = []

    def factory(**options: Any) -> Provider:
        seen.append(options)
        return MemoryProvider(max_sessions=options["size"])

    register("sized-test", factory)
    one = registry_module.create("sized-test", {"size": 7})
    two = registry_module.create("sized-test", {"size": 9})
    assert one is not two and isinstance(one, MemoryProvider) and one.max_sessions == 7
    assert seen == [{"size": 7}, {"size": 9}]


def test_a_factory_must_return_a_provider() -> None:
    register("not-a-provider-test", lambda: object())
    with pytest.raises(TypeError, match="not a Provider"):
        registry_module.create("not-a-provider-test")


@pytest.mark.parametrize(("name", "factory"), [("", MemoryProvider), (3, MemoryProvider), ("x", 3)])
def test_register_checks_its_arguments(name: Any, factory: Any) -> None:
    with pytest.raises(TypeError):
        register(name, factory)


def test_entry_points_register_third_party_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(
        name="from-entry-point-test",
        value="wsgi_session.providers.memory:MemoryProvider",
        group=registry_module.ENTRY_POINT_GROUP,
    )

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [ep] if group == registry_module.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    assert "from-entry-point-test" in available()
    assert isinstance(registry_module.create("from-entry-point-test"), MemoryProvider)
