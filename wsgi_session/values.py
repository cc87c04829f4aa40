"""What a session can hold, and the one codec every text store uses.

Keys are non-empty ``str`` without NUL or lone surrogates. Values are
``None``, ``bool``, ``int`` (at most :data:`MAX_INT_BITS` bits), finite
``float``, ``str`` (any: the codec escapes what a store could not hold),
``list`` (a ``tuple`` becomes a list, as in JSON) and ``dict`` with ``str``
keys, nested at most :data:`MAX_DEPTH`
deep. They are checked when assigned, so every provider holds exactly the
same values and an application can move from one store to another by
changing one argument.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from json.encoder import encode_basestring
from json.scanner import make_scanner
from typing import Any

#: Ints beyond this many bits are refused (CPython will not turn an int of
#: more than 4,300 digits into text, so no text store could hold it).
MAX_INT_BITS = 14_000
MAX_DEPTH = 100

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_ascii_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_decode = json.JSONDecoder().decode
_scan = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # (typeshed types the context oddly)

# The text stores encode every value they write and decode every value they
# read. JSONEncoder.encode and JSONDecoder.decode are Python code around
# the C encoder and scanner: for a small int, 10,200 instructions to encode
# (int.__repr__: 2,000) and 9,900 to decode '{"n":1}' (the scanner: 4,000),
# counted with valgrind; a Redis read + write spent about 15,000 of its
# 150,000 there. Same text either way (test_values.py checks it).


def encode(value: Any) -> str:
    """A checked value as compact JSON text that any store can hold:
    UTF-8-encodable (lone surrogates are escaped) and free of NUL."""
    cls = value.__class__
    if cls is int:
        return int.__repr__(value)  # what JSON writes for an int
    if cls is float and math.isfinite(value):
        return float.__repr__(value)
    text = encode_basestring(value) if cls is str else _encoder.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escape everything
            text = _ascii_encoder.encode(value)
    return text


def decode(text: str | bytes) -> Any:
    """The value :func:`encode` encoded. ValueError if ``text`` is not JSON."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # no JSON value at the start
        end = -1
    if end != len(text):
        # Whitespace around the value (not ours, but valid JSON), or no
        # JSON: the full decoder decides, and names what is wrong.
        return _decode(text)
    return value


def encoded_size(data: Mapping[str, Any]) -> int:
    """The bytes ``data`` takes encoded: keys and values (what
    ``max_session_bytes`` bounds)."""
    return sum(len(key.encode("utf-8")) + len(encode(v).encode("utf-8")) for key, v in data.items())


def check_key(key: object) -> str:
    """``key`` if it can be a session key, else TypeError or ValueError."""
    if type(key) is not str or not key:
        raise TypeError(f"session keys must be non-empty str, not {key!r:.40}")
    if "\x00" in key or not _utf8(key):
        raise ValueError(f"session key {key!r:.40} holds a NUL or a lone surrogate")
    return key


def checked_copy(key: str, value: Any) -> Any:
    """Return ``value`` (scalars) or a deep copy of it (lists and dicts).

    Raises TypeError or ValueError, naming ``key``, for anything that is not
    allowed; the copy means later mutations by the caller cannot reach the
    store behind its back.
    """
    try:
        return _copy(value, 0)
    except _Refused as exc:
        raise exc.error(
            f"session value for key {key!r:.40} cannot be stored: {exc.args[0]} "
            "(allowed: None, bool, int, finite float, str, list, dict with str keys)"
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


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Refused(Exception):
    def __init__(self, reason: str, error: type[Exception] = TypeError) -> None:
        super().__init__(reason)
        self.error = error


def _copy(value: Any, depth: int) -> Any:
    cls = value.__class__
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if value.bit_length() > MAX_INT_BITS:
            raise _Refused(f"an int of more than {MAX_INT_BITS} bits", ValueError)
        return value
    if cls is float:
        if not math.isfinite(value):
            raise _Refused(f"{value!r} is not a finite float", ValueError)
        return value
    if depth >= MAX_DEPTH:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep", ValueError)
    if cls is list or cls is tuple:  # a tuple is stored as a list, as JSON has it
        return [_copy(v, depth + 1) for v in value]
    if cls is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                # Its type, not its repr: the key is the app's data (say, a
                # card number in a tuple), and messages end up in logs.
                raise _Refused(f"a dict key of type {type(k).__name__} is not a str")
            out[k] = _copy(v, depth + 1)
        return out
    raise _Refused(f"{cls.__name__} is not a JSON type")
