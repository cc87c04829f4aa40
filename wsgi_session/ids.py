"""Session ids: 256 bits from ``secrets``, URL-safe base64 without padding."""

from __future__ import annotations

import re
from secrets import token_urlsafe

ID_BYTES = 32
ID_LENGTH = 43  # len(token_urlsafe(32))

_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_match = _ID.fullmatch


def new_id() -> str:
    """A fresh, unguessable session id."""
    return token_urlsafe(ID_BYTES)


def is_valid_id(value: str) -> bool:
    """Whether ``value`` has the shape of one of our ids (no store lookup)."""
    return len(value) == ID_LENGTH and _match(value) is not None
