"""Exceptions raised by wsgi_session. Every one derives from :class:`SessionError`."""

from __future__ import annotations


class SessionError(Exception):
    """Base class of every error this package raises on purpose."""


class ProviderError(SessionError):
    """A session store failed (unreachable, timed out, refused a write).

    The store's own exception is chained as ``__cause__``.
    """


class UnknownProviderError(SessionError, ValueError):
    """No provider is registered under the requested name."""
