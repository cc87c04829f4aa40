"""The conformance kit (wsgi_session.testing), run against a correct provider."""

from __future__ import annotations

from dict_provider import DictProvider

from wsgi_session.provider import Provider
from wsgi_session.testing import ProviderTests


class TestDictProvider(ProviderTests):
    def make_provider(self) -> Provider:
        return DictProvider()

