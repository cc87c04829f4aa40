"""Server-side sessions for any WSGI application."""

from __future__ import annotations

from .errors import ProviderError, SessionError, UnknownProviderError
from .manager import Manager
from .middleware import SessionMiddleware
from .provider import Provider
from .registry import available, register
from .session import Session, get_session

__all__ = [
    "Manager",
    "Provider",
    "ProviderError",
    "Session",
    "SessionError",
    "SessionMiddleware",
    "UnknownProviderError",
    "available",
    "get_session",
    "register",
]
