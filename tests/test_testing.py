"""The conformance kit (wsgi_session.testing): a correct provider passes it,
and each provider in tests/broken_providers.py, wrong in one way, fails it."""

from __future__ import annotations

import broken_providers
import pytest
from dict_provider import DictProvider

from wsgi_session.provider import Provider
from wsgi_session.providers.memory import MemoryProvider
from wsgi_session.testing import ProviderTests, run_model

pytest_plugins = ["pytester"]


class TestDictProvider(ProviderTests):
    fork_while_busy = True

    def make_provider(self) -> Provider:
        return DictProvider()


class TestMemoryProviderInSmallBatches(ProviderTests):
    """Sweeps of three sessions per hold of the lock: gc() must still find
    every dead session (the default sizes run in test_memory_provider.py)."""

    gc_lag = 1.0  # its expiry buckets come due at the next whole second
    fork_while_busy = True

    def make_provider(self) -> Provider:
        return MemoryProvider(gc_batch=3)


# Which of the kit's checks catch each broken provider, and what the report says.
BROKEN = [
    ("AliveAtExpiry", ["test_exactly_at_expiry_is_dead"], "now == accessed + idle means dead"),
    ("SaveIgnoresExpiry", ["test_dead_session_is_not_saved[after]"], "contract: Expiry"),
    ("SharedData", ["test_load_returns_a_copy"], "mutated"),
    ("AccessedIsNow", ["test_record_fields"], "accessed = the previous access"),
    ("RenameIsAccess", ["test_rename_is_not_an_access"], "rename() must keep accessed"),
    ("IgnoresLifetime", ["test_lifetime_longer", "test_lifetime_shorter"], "idle timeout"),
    (
        "ReadModifyWrite",
        ["test_per_key_concurrent_writes", "test_destroy_racing_save"],
        "contract: No resurrection",
    ),
    (
        "CopyThenDelete",
        ["test_destroy_racing_rename", "test_save_racing_rename"],
        "contract: Atomicity",
    ),
    ("ListsDead", ["test_dead_session_is_not_listed"], "must not list a dead session"),
    ("RenameKeepsIndex", ["test_sessions_of_after_rename"], "under its new id only"),
    ("SweepStopsAtLive", ["test_gc_mixed_lifetimes"], "sessions where"),
    ("NumbersAsDoubles", ["test_round_trip_every_value_kind"], "contract: Values"),
    ("Utf8Text", ["test_round_trip_every_value_kind"], "UnicodeEncodeError"),
    ("CountsUsers", ["test_count"], "count() is exact or None"),
    ("RawErrors", ["test_store_failure_is_provider_error"], "ConnectionRefusedError"),
]
# Providers that must pass these checks (the checks above, made to pass).
WORKING = [("Unreachable", ["test_store_failure_is_provider_error"])]


def test_kit_catches_each_broken_provider(pytester: pytest.Pytester) -> None:
    """In one pytest run, each broken provider fails the checks listed for
    it, and the report says which rule it broke."""
    classes = "".join(
        f"""
class Test{name}(ProviderTests):
    race_rounds = 400  # more than the default: this must never be flaky

    def make_provider(self):
        return broken_providers.{name}()

    def break_store(self, provider):
        provider.down = True
"""
        for name in [b[0] for b in BROKEN] + [w[0] for w in WORKING]
    )
    pytester.makepyfile(
        test_kit=f"""
import broken_providers
from wsgi_session.testing import ProviderTests, run_model
{classes}"""
    )
    failing = [
        f"test_kit.py::Test{name}::{check}" for name, checks, _ in BROKEN for check in checks
    ]
    passing = [f"test_kit.py::Test{name}::{check}" for name, checks in WORKING for check in checks]
    reprec = pytester.inline_run("-p", "no:cacheprovider", *failing, *passing)
    passed, skipped, failed = reprec.listoutcomes()
    assert {r.nodeid.split("[")[0] for r in failed} == {f.split("[")[0] for f in failing}
    assert {r.nodeid.split("[")[0] for r in passed} == set(passing)
    assert not skipped
    reports: dict[str, str] = {}
    for report in failed:
        name = report.nodeid.split("::")[1]
        reports[name] = reports.get(name, "") + report.longreprtext
    for name, _, message in BROKEN:
        assert message in reports[f"Test{name}"], f"{name}: the report does not say {message!r}"


def test_model_catches_a_broken_provider() -> None:
    """The model test, on a provider that turns ints into floats."""
    pytest.importorskip("hypothesis")
    with pytest.raises(AssertionError):
        run_model(broken_providers.NumbersAsDoubles, examples=500, steps=50, exact_gc=True)
