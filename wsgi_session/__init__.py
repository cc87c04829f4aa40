"""Server-side sessions for any WSGI application."""

from __future__ import annotations

from .errors import ProviderError, SessionError, UnknownProviderError
from .manager import Manager, SessionInfo
from .middleware import SessionMiddleware
from .provider import Provider, Record
from .registry import available, register
from .session import Session, get_session

__version__ = "0.2.0"

__all__ = [
    "Manager",
    "Provider",
    "Record",
    "SessionInfo",
    "ProviderError",
    "Session",
    "SessionError",
    "SessionMiddleware",
    "UnknownProviderError",
    "available",
    "get_session",
    "register",
]
