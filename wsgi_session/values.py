"""What a session can hold: JSON-compatible values under non-empty string keys.

Every provider stores the same kinds of values, so an application can move
from the memory provider to Redis by changing one argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The immutable JSON types: stored as they are, never copied.
SCALAR_TYPES = (str, int, float, bool, type(None))
_SCALARS = SCALAR_TYPES
_CONTAINERS = (list, dict)


def check_key(key: object) -> str:
    if type(key) is not str or not key:
        raise TypeError(f"session keys must be non-empty str, not {key!r:.40}")
    return key


def checked_copy(key: str, value: Any) -> Any:
    """Return ``value`` (scalars) or a deep copy of it (lists and dicts).

    Raises TypeError, naming ``key``, for anything JSON cannot hold; the copy
    means later mutations by the caller cannot reach the store behind its back.
    """
    try:
        return _copy(value)
    except _NotJSON as exc:
        raise TypeError(
            f"session value for key {key!r} is not JSON-compatible: {exc.args[0]} "
            "(allowed: None, bool, int, float, str, list, dict with str keys)"
        ) from None


def copy_value(value: Any) -> Any:
    """Deep-copy an already checked value (scalars are returned as they are)."""
    cls = value.__class__
    if cls is list:
        return [copy_value(v) for v in value]
    if cls is dict:
        return {k: copy_value(v) for k, v in value.items()}
    return value


def copy_values(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict of ``mapping``'s (checked) items, lists and dicts deep-copied."""
    out = dict(mapping)
    for key, value in out.items():
        cls = value.__class__
        if cls is list or cls is dict:
            out[key] = copy_value(value)  # a value, not a key: iteration is safe
    return out


def has_container(data: Mapping[str, Any]) -> bool:
    """Whether any of ``data``'s values is a list or dict."""
    for value in data.values():
        cls = value.__class__
        if cls is list or cls is dict:
            return True
    return False


def is_container(value: Any) -> bool:
    return value.__class__ in _CONTAINERS


class _NotJSON(Exception):
    pass


def _copy(value: Any, depth: int = 0) -> Any:
    cls = value.__class__
    if cls in _SCALARS:
        return value
    if depth > 100:
        raise _NotJSON("nested more than 100 levels deep")
    if cls is list:
        return [_copy(v, depth + 1) for v in value]
    if cls is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotJSON(f"dict key {k!r:.40} is not a str")
            out[k] = _copy(v, depth + 1)
        return out
    raise _NotJSON(f"{cls.__name__} is not a JSON type")
