"""Session ids: 258 bits from ``secrets``, 43 characters of URL-safe base64."""

from __future__ import annotations

import os
import re
from base64 import urlsafe_b64encode
from secrets import token_bytes

ID_LENGTH = 43

_ID = re.compile(r"[A-Za-z0-9_-]{43}")
_match = _ID.fullmatch

# One call to the OS's random source costs as much as a whole request, so ids
# are made 64 at a time: 33 random bytes encode to exactly 44 base64
# characters, of which an id takes the first 43. ``list.pop`` is atomic, so
# two threads never get the same id. A forked child must never hand out ids
# its parent may also hand out, so the pool belongs to one process: it is
# checked against os.getpid() on every id (about 0.2 us), because at-fork
# hooks do not run under every server (uWSGI skips them by default).
_BATCH = 64
_pool: list[str] = []
_pool_pid = [0]


def _refill() -> None:
    text = urlsafe_b64encode(token_bytes(33 * _BATCH)).decode("ascii")
    _pool.extend([text[i : i + ID_LENGTH] for i in range(0, 44 * _BATCH, 44)])


def new_id(pid: int | None = None) -> str:
    """A fresh, unguessable session id.

    ``pid`` is ``os.getpid()`` if the caller has just asked (the manager
    does, for its own fork check: one system call per new session, not two).
    """
    if pid is None:
        pid = os.getpid()
    if _pool_pid[0] != pid:
        _pool.clear()
        _pool_pid[0] = pid
    while True:
        try:
            return _pool.pop()
        except IndexError:
            _refill()


def is_valid_id(value: str) -> bool:
    """Whether ``value`` has the shape of one of our ids (no store lookup)."""
    return len(value) == ID_LENGTH and _match(value) is not None
