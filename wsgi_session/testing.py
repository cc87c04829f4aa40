"""The conformance kit: checks that a provider keeps the contract of
:class:`wsgi_session.Provider`, from the provider's own pytest suite.

Subclass :class:`ProviderTests` in a test module (its name starts with
``Test``, so pytest collects it) and say how to make a fresh, empty store::

    from wsgi_session.testing import ProviderTests

    class TestMyStore(ProviderTests):
        def make_provider(self):
            return MyProvider(...)

More hooks, all optional: :meth:`~ProviderTests.break_store` (make the
store fail, to check that failures are ProviderError) and
:meth:`~ProviderTests.cross_process` (open the same store again, for the
checks with several processes). Class attributes tune the effort
(``concurrency``, ``race_rounds``, ``model_examples``, ``model_steps``) and
describe the store: whether it also expires sessions by itself
(``expires_by_itself``), how late its gc() may find a dead session
(``gc_lag``), and whether it lives in one process, so that the kit may
fork while a thread is inside it (``fork_while_busy``).

Every check goes through the contract's methods with explicit times (no
clock, no sleeping); a failure names the rule of the contract it broke.
With hypothesis installed, ``test_model`` also drives the provider and a
model of the contract with the same random calls. Only tests import this
module, so it may import pytest.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import secrets
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest

from .errors import ProviderError
from .provider import UNCHANGED, Provider, Record, expires
from .values import MAX_DEPTH, MAX_INT_BITS, checked_copy, copy_values

__all__ = ["ProviderTests", "assert_same", "every_kind", "new_sid", "run_model"]

#: The kit's "now" at the start of every test: a plausible wall-clock time.
T0 = 1_700_000_000.0
#: The idle timeout most sessions get.
IDLE = 100.0


def new_sid() -> str:
    """A storage key as the manager makes them: 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def every_kind() -> dict[str, Any]:
    """Session data holding every kind of value the contract allows."""
    big = (1 << MAX_INT_BITS) - 1
    data: dict[str, Any] = {
        "none": None,
        "true": True,
        "false": False,
        "zero": 0,
        "int": -42,
        "big int": big,
        "big negative int": -big,
        "float": 1.0,
        "negative zero": -0.0,
        "fraction": 0.1,
        "huge float": 1.7976931348623157e308,
        "tiny float": 5e-324,
        "empty str": "",
        "non-ASCII": "héllo wörld ✓ 日本 😀",
        "NUL inside": "a\x00b",
        "lone surrogates": "\ud800x\udfff",
        "JSON-like text": '{"a": 1}',
        "list": [1, 2.5, "x", None, True, [], {}],
        "nested": {"a": [{"b": [1.0, {"c": "\x00"}]}], "": 0, "ключ": ["\udc80"]},
        "deep": _nested(MAX_DEPTH - 1),
        "empty list": [],
        "empty dict": {},
        # Keys a store might take for syntax (paths, patterns, quotes).
        "a.b": 1,
        "a,b": 2,
        "{a}": 3,
        "$.a": 4,
        "'quote": 5,
        '"dquote': 6,
        "back\\slash": 7,
        "*": 8,
        "%_": 9,
        " space ": 10,
        "ключ": 11,
        "😀": 12,
    }
    for key, value in data.items():
        checked_copy(key, value)  # the kit only uses values the core accepts
    return data


def assert_same(got: Any, expected: Any, where: str = "data") -> None:
    """``got == expected`` with types compared too (``1 == 1.0 == True`` in Python)."""
    assert type(got) is type(expected), (
        f"{where}: got a {type(got).__name__} back where a {type(expected).__name__} "
        "was stored (contract: Values - every store gives back exactly the same values)"
    )
    if isinstance(expected, dict):
        missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
        assert not missing and not extra, (
            f"{where}: keys missing {sorted(missing)!r:.200}, "
            f"keys never stored {sorted(extra)!r:.200}"
        )
        for key in expected:
            assert_same(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{where}: {len(got)} items, {len(expected)} stored"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, float) and expected == 0.0:
        assert str(got) == str(expected), f"{where}: {got!r} where {expected!r} was stored"
    else:
        assert got == expected, f"{where}: {got!r:.80} where {expected!r:.80} was stored"


def pause(seconds: float) -> None:
    """Wait without sleeping (a sleep is far coarser than one call of a fast store)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@contextmanager
def fast_switching() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, so races happen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def in_threads(*calls: Callable[[], Any], timeout: float = 60.0) -> list[Any]:
    """Run ``calls`` in threads started together; their results, or the first error."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    ready = threading.Semaphore(0)
    go = False

    def run(i: int, call: Callable[[], Any]) -> None:
        try:
            ready.release()
            # Spin rather than wait on a barrier or event: a thread woken from
            # a wait starts tens of microseconds late, so the others would
            # always run first and the race would be lost before it began.
            while not go:
                pass
            results[i] = call()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for _ in threads:
        ready.acquire()
    go = True
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a call did not return in {timeout} s"
    if errors:
        raise errors[0]
    return results


class ProviderTests:
    """The provider contract as tests: subclass it and implement :meth:`make_provider`.

    Override the class attributes to suit the store (a slow network store
    may want fewer ``race_rounds``), and :meth:`break_store` to check errors.
    """

    #: How many threads the concurrency checks run at once.
    concurrency: ClassVar[int] = 8
    #: How many times each race (destroy against save, against rename) is run.
    race_rounds: ClassVar[int] = 200
    #: True for a store that also expires sessions by itself (Redis key
    #: TTLs): gc() need not find them, so its count is not checked.
    expires_by_itself: ClassVar[bool] = False
    #: How late gc() may find a dead session, in seconds (a store that files
    #: sessions in time buckets may sweep a bucket up to this late); with
    #: the default 0, gc(now) removes every session dead at now.
    gc_lag: ClassVar[float] = 0.0
    #: How many random call sequences the model test tries (with hypothesis),
    #: and how many calls each makes at most.
    model_examples: ClassVar[int] = 50
    model_steps: ClassVar[int] = 50
    #: True for a store inside one process (a dict and a lock): then the kit
    #: also forks while a thread is inside the provider. A shared store's
    #: client library (sqlite3, a driver) may hold C locks of its own at a
    #: fork, which no provider can repair.
    fork_while_busy: ClassVar[bool] = False

    # Checks that need a hook the subclass does not give are not collected
    # (rather than skipped: a suite should not carry skips it cannot lift).
    _NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "break_store": ("test_store_failure_is_provider_error",),
        "cross_process": (
            "test_processes_write_their_own_keys",
            "test_destroy_racing_save_in_another_process",
        ),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook, tests in ProviderTests._NEEDS.items():
            if getattr(cls, hook) is getattr(ProviderTests, hook):
                for name in tests:
                    setattr(cls, name, None)
        if not cls.fork_while_busy:
            cls.test_fork_while_a_thread_holds_the_store = None  # type: ignore[assignment]

    def make_provider(self) -> Provider:
        """A new provider over a fresh, empty store (the kit closes it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_provider()")

    def cross_process(self, provider: Provider) -> Callable[[], Provider]:
        """A picklable callable that opens another provider over the same
        store as ``provider`` (say ``functools.partial(MyProvider, path)``),
        for the checks with several processes. Without it they are not run."""
        raise NotImplementedError

    def break_store(self, provider: Provider) -> None:
        """Make ``provider``'s store fail (stop the server, lock or corrupt the
        file) so that its calls must raise ProviderError. Without it the error
        checks are not run."""
        raise NotImplementedError

    # -- fixtures and helpers ------------------------------------------------

    @pytest.fixture
    def provider(self) -> Iterator[Provider]:
        provider = self.make_provider()
        assert isinstance(provider, Provider), "make_provider() must return a Provider"
        try:
            yield provider
        finally:
            provider.close()

    @staticmethod
    def create(
        provider: Provider,
        data: dict[str, Any] | None = None,
        now: float = T0,
        *,
        idle: float = IDLE,
        deadline: float | None = None,
        persistent: bool = False,
        user: str | None = None,
    ) -> str:
        """A new session; its storage key."""
        sid = new_sid()
        provider.create(
            sid,
            {} if data is None else data,
            now,
            idle=idle,
            deadline=deadline,
            persistent=persistent,
            user=user,
        )
        return sid

    @staticmethod
    def live(provider: Provider, sid: str, now: float) -> Record:
        """The record of a session that must be live at ``now`` (an access)."""
        record = provider.load(sid, now)
        assert record is not None, "a live session was not returned by load()"
        assert isinstance(record, Record), (
            f"load() returned a {type(record).__name__}, not a Record"
        )
        return record

    @staticmethod
    def listed(provider: Provider, user: str, now: float) -> dict[str, Record]:
        """sessions_of(user) as a dict, checking that no sid is listed twice."""
        pairs = provider.sessions_of(user, now)
        assert isinstance(pairs, list), "sessions_of() must return a list"
        listed = dict(pairs)
        assert len(listed) == len(pairs), "sessions_of() listed a session twice"
        return listed

    def assert_dead(self, provider: Provider, sid: str, now: float, why: str) -> None:
        """``sid`` is not live at ``now``, seen through load()."""
        assert provider.load(sid, now) is None, f"{why}: load() still returned the session"

    def assert_count(self, provider: Provider, expected: int) -> None:
        count = provider.count()
        assert count is None or count == expected, (
            f"count() returned {count!r} where the store holds {expected} sessions "
            "(contract: count() is exact or None)"
        )

    # -- values and copies ---------------------------------------------------

    def test_round_trip_every_value_kind(self, provider: Provider) -> None:
        data = every_kind()
        sid = self.create(provider, every_kind())
        assert_same(self.live(provider, sid, T0 + 1).data, data)

    def test_round_trip_through_save(self, provider: Provider) -> None:
        sid = self.create(provider, {"x": 1})
        assert provider.save(sid, every_kind(), (), T0 + 1) is True
        assert_same(self.live(provider, sid, T0 + 2).data, {"x": 1, **every_kind()})

    def test_values_replaced_by_save_keep_their_kind(self, provider: Provider) -> None:
        sid = self.create(provider, {"n": "1", "f": 1, "s": 2.0, "l": {"a": 1}})
        changed = {"n": 1, "f": 1.0, "s": "2.0", "l": [1.0]}
        assert provider.save(sid, changed, (), T0 + 1)
        assert_same(self.live(provider, sid, T0 + 2).data, changed)

    def test_large_session(self, provider: Provider) -> None:
        data: dict[str, Any] = {f"key {i}": i for i in range(2000)}
        data["text"] = "x" * 500_000
        data["list"] = list(range(10_000))
        sid = self.create(provider, data)
        assert provider.save(sid, {"key 7": "seven"}, ["key 8"], T0 + 1)
        data["key 7"] = "seven"
        del data["key 8"]
        assert_same(self.live(provider, sid, T0 + 2).data, data)

    def test_empty_data(self, provider: Provider) -> None:
        sid = self.create(provider, {})
        assert_same(self.live(provider, sid, T0 + 1).data, {})
        assert provider.save(sid, {"a": 1}, (), T0 + 2)
        assert provider.save(sid, {}, ("a",), T0 + 3)
        assert_same(self.live(provider, sid, T0 + 4).data, {})

    def test_load_returns_a_copy(self, provider: Provider) -> None:
        stored = {"list": [1, [2]], "dict": {"a": {"b": 1}}, "s": "x"}
        sid = self.create(provider, {"list": [1, [2]], "dict": {"a": {"b": 1}}, "s": "x"})
        first = self.live(provider, sid, T0 + 1).data
        second = self.live(provider, sid, T0 + 2).data
        first["list"].append(3)
        first["list"][1].append(3)
        first["dict"]["a"]["b"] = 2
        first["dict"]["new"] = 1
        first["s"] = "changed"
        first["added"] = 1
        assert_same(
            second,
            stored,
            "a later load's data after the caller mutated an earlier one's (contract: Copies)",
        )
        assert_same(
            self.live(provider, sid, T0 + 3).data,
            stored,
            "data after the caller mutated what load() returned (contract: Copies)",
        )

    # -- records -------------------------------------------------------------

    def test_record_fields(self, provider: Provider) -> None:
        sid = self.create(provider, {"a": 1}, T0, idle=1800.0, deadline=T0 + 7200, persistent=True)
        record = self.live(provider, sid, T0 + 10.25)
        assert record == Record({"a": 1}, T0, T0, 1800.0, T0 + 7200, True), (
            "load() must return the record as created, with accessed = the previous access"
        )
        assert self.live(provider, sid, T0 + 20.5).accessed == T0 + 10.25, (
            "load() is an access: the next load must report it as accessed"
        )

    def test_record_defaults(self, provider: Provider) -> None:
        sid = new_sid()
        provider.create(sid, {}, T0, idle=IDLE, deadline=None)
        record = self.live(provider, sid, T0 + 1)
        assert record == Record({}, T0, T0, IDLE, None, False)

    def test_save_is_an_access(self, provider: Provider) -> None:
        sid = self.create(provider)
        assert provider.save(sid, {}, (), T0 + 30.75)
        record = self.live(provider, sid, T0 + 40)
        assert record.accessed == T0 + 30.75, "save() is an access: it sets accessed"
        assert record.created == T0, "save() must keep created"

    # -- expiry --------------------------------------------------------------

    def test_idle_slides_on_load(self, provider: Provider) -> None:
        sid = self.create(provider)
        self.live(provider, sid, T0 + 99.75)
        self.live(provider, sid, T0 + 199.5)
        self.live(provider, sid, T0 + 299.25)
        self.assert_dead(provider, sid, T0 + 399.25, "idle timeout passed since the last load")

    def test_idle_slides_on_save(self, provider: Provider) -> None:
        sid = self.create(provider)
        assert provider.save(sid, {"a": 1}, (), T0 + 99.75)
        assert provider.save(sid, {"a": 2}, (), T0 + 199.5)
        assert self.live(provider, sid, T0 + 299.25).data == {"a": 2}

    def test_exactly_at_expiry_is_dead(self, provider: Provider) -> None:
        sid = self.create(provider)
        self.assert_dead(provider, sid, T0 + IDLE, "now == accessed + idle means dead")

    def test_just_before_expiry_is_live(self, provider: Provider) -> None:
        sid = self.create(provider)
        self.live(provider, sid, T0 + IDLE - 0.25)

    def test_sessions_have_their_own_idle(self, provider: Provider) -> None:
        short = self.create(provider, {"s": 1}, idle=10.0)
        long = self.create(provider, {"l": 1}, idle=1000.0)
        later = self.create(provider, {"m": 1}, T0 + 5, idle=50.0)
        self.assert_dead(provider, short, T0 + 10, "a 10 s idle session after 10 s")
        self.live(provider, later, T0 + 54.75)
        self.live(provider, long, T0 + 999.75)
        self.assert_dead(provider, later, T0 + 54.75 + 50, "a 50 s idle session after 50 s")

    def test_deadline_caps_idle(self, provider: Provider) -> None:
        sid = self.create(provider, idle=100.0, deadline=T0 + 150)
        self.live(provider, sid, T0 + 90)
        self.live(provider, sid, T0 + 149.75)
        self.assert_dead(provider, sid, T0 + 150, "the deadline passed (idle would allow more)")

    def test_deadline_before_idle_at_creation(self, provider: Provider) -> None:
        sid = self.create(provider, idle=1000.0, deadline=T0 + 5)
        self.live(provider, sid, T0 + 4.75)
        self.assert_dead(provider, sid, T0 + 5, "the deadline passed")

    def test_save_keeps_deadline(self, provider: Provider) -> None:
        sid = self.create(provider, idle=100.0, deadline=T0 + 150)
        assert provider.save(sid, {"a": 1}, (), T0 + 90, lifetime=(10_000.0, True))
        record = self.live(provider, sid, T0 + 120)
        assert (record.idle, record.persistent, record.deadline) == (10_000.0, True, T0 + 150)
        self.assert_dead(provider, sid, T0 + 150, "a new lifetime must not move the deadline")

    def test_lifetime_longer(self, provider: Provider) -> None:
        sid = self.create(provider, idle=100.0)
        assert provider.save(sid, {}, (), T0 + 10, lifetime=(1000.0, True))
        record = self.live(provider, sid, T0 + 1009.75)
        assert (record.idle, record.persistent) == (1000.0, True)
        self.assert_dead(provider, sid, T0 + 1009.75 + 1000, "the new idle timeout passed")

    def test_lifetime_shorter(self, provider: Provider) -> None:
        sid = self.create(provider, idle=1000.0, persistent=True)
        assert provider.save(sid, {}, (), T0 + 10, lifetime=(10.0, False))
        self.assert_dead(provider, sid, T0 + 20, "the shorter idle timeout passed")

    def test_lifetime_kept_when_not_given(self, provider: Provider) -> None:
        sid = self.create(provider, idle=1000.0, persistent=True)
        assert provider.save(sid, {"a": 1}, (), T0 + 10)
        record = self.live(provider, sid, T0 + 20)
        assert (record.idle, record.persistent) == (1000.0, True)

    @pytest.mark.parametrize("at", [0.0, 0.25, 50.0], ids=["at-expiry", "after", "long-after"])
    def test_dead_session_is_not_saved(self, provider: Provider, at: float) -> None:
        sid = self.create(provider, {"a": 1}, user="dora")
        now = T0 + IDLE + at
        assert provider.save(sid, {"a": 2}, (), now) is False, (
            "save() on a dead session must return False (contract: Expiry)"
        )
        assert provider.save(sid, {}, (), now, lifetime=(10_000.0, True)) is False
        self.assert_dead(provider, sid, now + 1, "a save() on a dead session wrote it")
        assert sid not in self.listed(provider, "dora", now + 1)

    def test_dead_session_is_not_renamed(self, provider: Provider) -> None:
        sid = self.create(provider, {"a": 1}, user="dora")
        new = new_sid()
        assert provider.rename(sid, new, T0 + IDLE) is False, (
            "rename() of a dead session must return False"
        )
        self.assert_dead(provider, new, T0 + IDLE, "rename() of a dead session made the new id")
        assert self.listed(provider, "dora", T0 + IDLE) == {}

    def test_dead_session_is_not_listed(self, provider: Provider) -> None:
        sid = self.create(provider, user="dora")
        other = self.create(provider, user="dora", idle=1000.0)
        assert set(self.listed(provider, "dora", T0 + IDLE)) == {other}, (
            "sessions_of() must not list a dead session"
        )
        assert sid not in self.listed(provider, "dora", T0 + IDLE + 1)

    # -- save ----------------------------------------------------------------

    def test_save_changes_and_removes_keys(self, provider: Provider) -> None:
        sid = self.create(provider, {"a": 1, "b": 2, "c": [3]})
        assert provider.save(sid, {"a": 10, "d": 4}, ["b", "not there"], T0 + 1) is True
        assert_same(self.live(provider, sid, T0 + 2).data, {"a": 10, "c": [3], "d": 4})

    def test_save_nothing_is_an_access(self, provider: Provider) -> None:
        sid = self.create(provider, {"a": 1})
        assert provider.save(sid, {}, (), T0 + 90) is True
        record = self.live(provider, sid, T0 + 180)
        assert_same(record.data, {"a": 1})
        assert record.accessed == T0 + 90

    def test_save_unknown_session(self, provider: Provider) -> None:
        sid = new_sid()
        assert provider.save(sid, {"a": 1}, (), T0, lifetime=(100.0, True), user="eve") is False, (
            "save() of an unknown id must return False (contract: No resurrection)"
        )
        self.assert_dead(provider, sid, T0 + 1, "save() of an unknown id created it")
        assert self.listed(provider, "eve", T0 + 1) == {}
        self.assert_count(provider, 0)

    def test_save_after_destroy(self, provider: Provider) -> None:
        sid = self.create(provider, {"a": 1}, user="eve")
        provider.destroy(sid)
        assert provider.save(sid, {"a": 2}, (), T0 + 1) is False, (
            "save() after destroy() must return False (contract: No resurrection)"
        )
        self.assert_dead(provider, sid, T0 + 2, "save() after destroy() brought it back")
        assert self.listed(provider, "eve", T0 + 2) == {}

    # -- users ---------------------------------------------------------------

    def test_sessions_of(self, provider: Provider) -> None:
        one = self.create(provider, {"a": 1}, user="alice", idle=1000.0, persistent=True)
        two = self.create(provider, {}, T0 + 5, user="alice", deadline=T0 + 500)
        self.create(provider, {}, user="bob")
        self.create(provider, {})
        self.create(provider, {}, user="alice*")  # a pattern store must not match it
        self.create(provider, {}, user="Alice")
        self.live(provider, one, T0 + 20)
        listed = self.listed(provider, "alice", T0 + 30)
        assert set(listed) == {one, two}, "sessions_of() must list exactly the user's sessions"
        expected = {
            one: Record({"a": 1}, T0, T0 + 20, 1000.0, None, True),
            two: Record({}, T0 + 5, T0 + 5, IDLE, T0 + 500, False),
        }
        for sid, record in listed.items():
            want = expected[sid]
            assert record.data in ({}, want.data), "sessions_of(): data is {} or the session's"
            assert record._replace(data=want.data) == want, "sessions_of(): wrong record fields"
        assert self.listed(provider, "nobody", T0 + 30) == {}

    def test_sessions_of_is_not_an_access(self, provider: Provider) -> None:
        sid = self.create(provider, user="alice")
        assert set(self.listed(provider, "alice", T0 + 50)) == {sid}
        assert self.live(provider, sid, T0 + 60).accessed == T0, (
            "sessions_of() must not count as an access"
        )
        self.assert_dead(provider, sid, T0 + 60 + IDLE, "expired")

    def test_non_ascii_user(self, provider: Provider) -> None:
        sid = self.create(provider, user="ünï cødé:*?[]")
        assert set(self.listed(provider, "ünï cødé:*?[]", T0 + 1)) == {sid}
        assert self.listed(provider, "ünï cødé", T0 + 1) == {}

    def test_user_changed_by_save(self, provider: Provider) -> None:
        sid = self.create(provider, user="alice")
        anonymous = self.create(provider)
        assert provider.save(sid, {}, (), T0 + 1, user="bob")
        assert provider.save(anonymous, {}, (), T0 + 1, user="bob")
        assert self.listed(provider, "alice", T0 + 2) == {}, "the old user still lists it"
        assert set(self.listed(provider, "bob", T0 + 2)) == {sid, anonymous}
        assert provider.save(sid, {"a": 1}, (), T0 + 3)  # UNCHANGED
        assert provider.save(anonymous, {}, (), T0 + 3, user=UNCHANGED)
        assert set(self.listed(provider, "bob", T0 + 4)) == {sid, anonymous}, (
            "save() without user= must keep the user"
        )
        assert provider.save(sid, {}, (), T0 + 5, user=None)
        assert set(self.listed(provider, "bob", T0 + 6)) == {anonymous}, "user=None unlists it"
        assert provider.save(sid, {}, (), T0 + 7, user="alice")
        assert set(self.listed(provider, "alice", T0 + 8)) == {sid}

    def test_sessions_of_after_destroy(self, provider: Provider) -> None:
        sid = self.create(provider, user="alice")
        other = self.create(provider, user="alice")
        provider.destroy(sid)
        assert set(self.listed(provider, "alice", T0 + 1)) == {other}

    def test_sessions_of_after_rename(self, provider: Provider) -> None:
        old = self.create(provider, {"a": 1}, user="alice")
        new = new_sid()
        assert provider.rename(old, new, T0 + 1)
        assert set(self.listed(provider, "alice", T0 + 2)) == {new}, (
            "sessions_of() must list a renamed session under its new id only"
        )
        assert provider.save(new, {}, (), T0 + 3, user="bob")
        assert self.listed(provider, "alice", T0 + 4) == {}
        assert set(self.listed(provider, "bob", T0 + 4)) == {new}

    def test_sessions_of_after_expiry_and_gc(self, provider: Provider) -> None:
        short = self.create(provider, user="alice", idle=10.0)
        long = self.create(provider, user="alice", idle=1000.0)
        assert set(self.listed(provider, "alice", T0 + 10)) == {long}
        provider.gc(T0 + 10)
        assert set(self.listed(provider, "alice", T0 + 11)) == {long}
        self.assert_dead(provider, short, T0 + 11, "expired")

    # -- rename --------------------------------------------------------------

    def test_rename_moves_everything(self, provider: Provider) -> None:
        old = self.create(provider, every_kind(), idle=1000.0, deadline=T0 + 5000, persistent=True)
        self.live(provider, old, T0 + 10)
        new = new_sid()
        assert provider.rename(old, new, T0 + 20) is True
        record = self.live(provider, new, T0 + 30)
        assert_same(record.data, every_kind())
        assert record._replace(data={}) == Record({}, T0, T0 + 10, 1000.0, T0 + 5000, True), (
            "rename() must keep created, accessed (rename is not an access), idle, "
            "deadline and persistent"
        )

    def test_rename_is_not_an_access(self, provider: Provider) -> None:
        old = self.create(provider)
        new = new_sid()
        assert provider.rename(old, new, T0 + 50)
        self.assert_dead(provider, new, T0 + IDLE, "rename() must keep accessed")

    def test_old_id_is_dead_after_rename(self, provider: Provider) -> None:
        old = self.create(provider, {"a": 1})
        new = new_sid()
        assert provider.rename(old, new, T0 + 1)
        assert provider.save(old, {"b": 2}, (), T0 + 2) is False, (
            "save() of a renamed-away id must return False"
        )
        assert provider.rename(old, new_sid(), T0 + 2) is False
        self.assert_dead(provider, old, T0 + 3, "the old id is live after rename()")
        assert_same(self.live(provider, new, T0 + 4).data, {"a": 1})
        self.assert_count(provider, 1)

    def test_rename_unknown(self, provider: Provider) -> None:
        new = new_sid()
        assert provider.rename(new_sid(), new, T0) is False
        self.assert_dead(provider, new, T0, "rename() of an unknown id made the new id")
        self.assert_count(provider, 0)

    def test_rename_after_destroy(self, provider: Provider) -> None:
        old = self.create(provider, {"a": 1}, user="alice")
        provider.destroy(old)
        new = new_sid()
        assert provider.rename(old, new, T0 + 1) is False
        self.assert_dead(provider, new, T0 + 1, "rename() after destroy() made the new id")
        self.assert_dead(provider, old, T0 + 1, "rename() after destroy() brought it back")
        assert self.listed(provider, "alice", T0 + 1) == {}

    def test_rename_keeps_deadline(self, provider: Provider) -> None:
        old = self.create(provider, idle=100.0, deadline=T0 + 120)
        self.live(provider, old, T0 + 80)
        new = new_sid()
        assert provider.rename(old, new, T0 + 90)
        self.live(provider, new, T0 + 119.75)
        self.assert_dead(provider, new, T0 + 120, "rename() must keep the deadline")

    # -- destroy -------------------------------------------------------------

    def test_destroy(self, provider: Provider) -> None:
        sid = self.create(provider, {"a": 1})
        other = self.create(provider, {"b": 1})
        provider.destroy(sid)
        self.assert_dead(provider, sid, T0 + 1, "destroyed")
        assert_same(self.live(provider, other, T0 + 1).data, {"b": 1})
        self.assert_count(provider, 1)
        provider.destroy(sid)  # twice
        provider.destroy(new_sid())  # unknown
        self.assert_count(provider, 1)

    def test_load_unknown(self, provider: Provider) -> None:
        sid = new_sid()
        assert provider.load(sid, T0) is None
        assert provider.save(sid, {}, (), T0) is False, "load() of an unknown id created it"
        self.assert_count(provider, 0)

    # -- count and gc --------------------------------------------------------

    def test_count(self, provider: Provider) -> None:
        self.assert_count(provider, 0)
        sids = [self.create(provider, {"i": i}) for i in range(5)]
        self.assert_count(provider, 5)
        provider.destroy(sids[0])
        assert provider.rename(sids[1], new_sid(), T0 + 1)
        provider.save(new_sid(), {"a": 1}, (), T0 + 1)
        self.assert_count(provider, 4)

    def collect(self, provider: Provider, now: float) -> int:
        """gc() until it finds nothing more (a store may work in batches)."""
        total = 0
        for _ in range(10_000):
            removed = provider.gc(now)
            assert type(removed) is int and removed >= 0, "gc() must return a count"
            if not removed:
                return total
            total += removed
        raise AssertionError("gc() kept finding dead sessions")

    def check_gc(self, provider: Provider, now: float, dead: int, live: dict[str, Record]) -> None:
        """Collect at ``now``: ``dead`` sessions go, the ``live`` ones stay as they are."""
        removed = self.collect(provider, now)
        if self.gc_lag:
            now += self.gc_lag
            removed += self.collect(provider, now)
        if self.expires_by_itself or type(provider).gc is Provider.gc:
            assert removed <= dead
        else:
            assert removed == dead, f"gc() removed {removed} sessions where {dead} were dead"
            self.assert_count(provider, len(live))
        for sid, record in live.items():
            assert self.live(provider, sid, now) == record, "gc() changed a live session"

    def test_gc(self, provider: Provider) -> None:
        # Times between whole seconds: a store that files sessions by time
        # must still remove every session dead at ``now``.
        dead = [self.create(provider, {"i": i}, T0 + 0.5, idle=10.0) for i in range(5)]
        keep = {self.create(provider, {"i": i}, idle=1000.0): i for i in range(3)}
        records = {sid: Record({"i": i}, T0, T0, 1000.0, None, False) for sid, i in keep.items()}
        gone = self.create(provider, {}, idle=10.0)
        provider.destroy(gone)  # not counted: destroyed before it died
        renamed = self.create(provider, {}, T0 + 0.5, idle=10.0)
        assert provider.rename(renamed, new_sid(), T0 + 1)  # counted once
        self.check_gc(provider, T0 + 10.5, len(dead) + 1, records)
        for sid in dead:
            self.assert_dead(provider, sid, T0 + 10.5, "collected")
        assert self.collect(provider, T0 + 11) == 0

    def test_gc_mixed_lifetimes(self, provider: Provider) -> None:
        # A long-lived session first must not hide the short-lived ones
        # behind it, whatever order the store sweeps in.
        live: dict[str, Record] = {}
        sid = self.create(provider, {"first": 1}, idle=10_000.0)
        live[sid] = Record({"first": 1}, T0, T0, 10_000.0, None, False)
        dead = 0
        for i in range(30):
            created = T0 + i
            if i % 3 == 0:  # short idle: dead at T0 + 100
                self.create(provider, {"i": i}, created, idle=10.0)
                dead += 1
            elif i % 3 == 1:  # long idle, but past its deadline
                self.create(provider, {"i": i}, created, idle=10_000.0, deadline=T0 + 50)
                dead += 1
            else:  # long idle, deadline later: live
                sid = self.create(provider, {"i": i}, created, idle=10_000.0, deadline=T0 + 500)
                live[sid] = Record({"i": i}, created, created, 10_000.0, T0 + 500, False)
        # Recently used, yet dead by its deadline; and an old one kept alive.
        used = self.create(provider, {"used": 1}, T0, idle=10_000.0, deadline=T0 + 90)
        self.live(provider, used, T0 + 80)
        dead += 1
        kept = self.create(provider, {"kept": 1}, T0, idle=20.0)
        assert provider.save(kept, {}, (), T0 + 15, lifetime=(1000.0, False))
        live[kept] = Record({"kept": 1}, T0, T0 + 15, 1000.0, None, False)
        shortened = self.create(provider, {"shortened": 1}, T0, idle=10_000.0)
        assert provider.save(shortened, {}, (), T0 + 1, lifetime=(10.0, False))
        dead += 1
        self.check_gc(provider, T0 + 100, dead, live)

    # -- errors and close ----------------------------------------------------

    @pytest.mark.parametrize(
        "call",
        ["create", "load", "save", "rename", "destroy", "sessions_of"],
    )
    def test_store_failure_is_provider_error(self, provider: Provider, call: str) -> None:
        sid = self.create(provider, {"a": 1}, user="alice")
        self.break_store(provider)
        calls: dict[str, Callable[[], object]] = {
            "create": lambda: provider.create(new_sid(), {"a": 1}, T0, idle=IDLE, deadline=None),
            "load": lambda: provider.load(sid, T0 + 1),
            "save": lambda: provider.save(sid, {"a": 2}, (), T0 + 1),
            "rename": lambda: provider.rename(sid, new_sid(), T0 + 1),
            "destroy": lambda: provider.destroy(sid),
            "sessions_of": lambda: provider.sessions_of("alice", T0 + 1),
        }
        with pytest.raises(ProviderError) as info:
            calls[call]()
        assert info.value.__cause__ is not None, "ProviderError must chain the store's error"
        assert sid not in str(info.value), "the storage key must stay out of error messages"

    def test_close_twice(self, provider: Provider) -> None:
        self.create(provider)
        provider.close()
        provider.close()

    def test_close_unused(self) -> None:
        provider = self.make_provider()
        provider.close()
        provider.close()

    # -- processes -------------------------------------------------------------

    def test_processes_write_their_own_keys(self, provider: Provider) -> None:
        factory = self.cross_process(provider)
        sid = self.create(provider, {"base": 0})
        processes, writes = 2, 30
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes)
        children = [
            context.Process(target=_write_keys, args=(factory, sid, f"p{i}-", writes, barrier))
            for i in range(processes)
        ]
        _run_processes(children)
        expected = {"base": 0} | {f"p{i}-{j}": j for i in range(processes) for j in range(writes)}
        assert_same(
            self.live(provider, sid, T0 + 2).data,
            expected,
            "data after processes each wrote their own keys (contract: Atomicity)",
        )

    def test_destroy_racing_save_in_another_process(self, provider: Provider) -> None:
        factory = self.cross_process(provider)
        sids = [self.create(provider, {"base": 0}) for _ in range(20)]
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        child = context.Process(target=_save_until_gone, args=(factory, sids, ready))
        child.start()
        try:
            assert ready.wait(60), "the other process did not start"
            for sid in sids:
                # Destroy while the other process is saving this session.
                end = time.monotonic() + 30
                while "child" not in self.live(provider, sid, T0 + 1).data:
                    assert time.monotonic() < end, "the other process's saves are not seen"
                pause(random.uniform(0, 0.002))
                provider.destroy(sid)
                assert provider.load(sid, T0 + 1) is None, "load() right after destroy()"
        finally:
            _run_processes([child], started=True)
        for sid in sids:
            self.assert_dead(provider, sid, T0 + 1, "destroyed while another process saved it")

    def test_fork(self, provider: Provider) -> None:
        """A forked child can use the provider its parent used (the contract: a
        provider notices a fork by itself), while the parent goes on using it."""
        if not hasattr(os, "fork"):
            pytest.skip("no os.fork here")
        sid = self.create(provider, {"parent": 0})
        self.live(provider, sid, T0 + 1)  # whatever connection it needs is open now
        self.fork_and_check(provider, sid)

    def test_fork_while_a_thread_holds_the_store(self, provider: Provider) -> None:
        """As test_fork, with a thread inside the provider at the fork: the
        child inherits its locks held (a store in one process only: inside a
        C library, such as sqlite3 or a driver, a held lock is beyond repair)."""
        if not hasattr(os, "fork"):
            pytest.skip("no os.fork here")
        sid = self.create(provider, {"parent": 0})
        stop = threading.Event()

        def busy() -> None:
            while not stop.is_set():
                provider.load(sid, T0 + 1)

        thread = threading.Thread(target=busy, daemon=True)
        thread.start()
        try:
            pause(0.01)
            self.fork_and_check(provider, sid)
        finally:
            stop.set()
            thread.join()

    def fork_and_check(self, provider: Provider, sid: str) -> None:
        with warnings.catch_warnings():  # 3.12 warns of fork with threads: on purpose here
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _child(lambda: _use_after_fork(provider, sid))
        try:
            for n in range(1, 51):
                assert provider.save(sid, {"parent": n}, (), T0 + 1), "save() after a fork"
        finally:
            status = _wait(pid, 20)
        assert status == 0, "the forked child could not use the provider (its traceback is above)"
        data = self.live(provider, sid, T0 + 2).data
        assert data["parent"] == 50
        if not provider.process_local:
            assert data.get("child") == 50, "the parent does not see what the forked child saved"

    # -- a model ---------------------------------------------------------------

    def test_model(self) -> None:
        """Random sequences of calls agree with a model of the contract (needs hypothesis)."""
        pytest.importorskip("hypothesis")
        run_model(
            self.make_provider,
            examples=self.model_examples,
            steps=self.model_steps,
            exact_gc=not self.expires_by_itself and not self.gc_lag,
        )

    # -- threads -------------------------------------------------------------

    def test_per_key_concurrent_writes(self, provider: Provider) -> None:
        sid = self.create(provider, {"base": 0})
        writes = 50

        def writer(i: int) -> None:
            for j in range(writes):
                assert provider.save(sid, {f"t{i}": j, f"t{i}-{j}": j}, (), T0 + 1)

        with fast_switching():
            in_threads(*(lambda i=i: writer(i) for i in range(self.concurrency)))
        expected: dict[str, Any] = {"base": 0}
        for i in range(self.concurrency):
            expected[f"t{i}"] = writes - 1
            expected.update({f"t{i}-{j}": j for j in range(writes)})
        assert_same(
            self.live(provider, sid, T0 + 2).data,
            expected,
            "data after threads each wrote their own keys (contract: save keeps "
            "every key it was not given as it is in the store now)",
        )

    def test_destroy_racing_save(self, provider: Provider) -> None:
        op = self.op_time(provider)
        with fast_switching():
            for _ in range(self.race_rounds):
                self.destroy_racing_save_once(provider, op)

    def destroy_racing_save_once(self, provider: Provider, op: float) -> None:
        sid = self.create(provider, {"base": 0}, user="racer")
        now = T0 + 1

        def saver(i: int) -> list[bool]:
            results: list[bool] = []
            for j in range(200):  # until a few saves have failed
                results.append(provider.save(sid, {f"k{i}": j}, (), now))
                if results.count(False) == 3:
                    break
            return results

        def destroyer() -> Record | None:
            pause(random.uniform(0, 4 * op))
            provider.destroy(sid)
            return provider.load(sid, now)

        after, *saves = in_threads(destroyer, *(lambda i=i: saver(i) for i in range(2)))
        assert after is None, "load() right after destroy() returned the session"
        for results in saves:
            assert results == sorted(results, reverse=True), (
                "save() returned True after it had returned False: destroy() raced "
                "save() and the session came back (contract: No resurrection)"
            )
        assert provider.load(sid, now) is None, (
            "destroy() raced save() and the session came back (contract: No resurrection)"
        )
        assert provider.save(sid, {}, (), now) is False
        assert sid not in self.listed(provider, "racer", now)

    def test_destroy_racing_rename(self, provider: Provider) -> None:
        op = self.op_time(provider)
        with fast_switching():
            for _ in range(self.race_rounds):
                self.destroy_racing_rename_once(provider, op)

    def destroy_racing_rename_once(self, provider: Provider, op: float) -> None:
        old = self.create(provider, {"a": 1}, user="racer")
        new = new_sid()
        now = T0 + 1
        renamed_yet = threading.Event()

        def renamer() -> bool:
            pause(random.uniform(0, 2 * op))
            try:
                return provider.rename(old, new, now)
            finally:
                renamed_yet.set()

        def destroyer() -> bool:
            # Destroy again and again while the rename runs, so that one
            # destroy lands inside it. If the new id is not live after a
            # destroy of the old one has returned, the rename comes after
            # that destroy, and must fail.
            pause(random.uniform(0, 2 * op))
            missed = False
            while True:
                finished = renamed_yet.is_set()
                provider.destroy(old)
                missed = missed or provider.load(new, now) is None
                if finished:
                    return missed

        renamed, missed = in_threads(renamer, destroyer)
        assert provider.load(old, now) is None, "destroy() raced rename() and the old id lives"
        after = provider.load(new, now)
        if renamed:
            assert after is not None, "rename() returned True but the new id is not live"
            assert_same(after.data, {"a": 1})
        else:
            assert after is None, (
                "rename() returned False but the new id is live: a destroy() that "
                "raced the copy must win (contract: Atomicity)"
            )
        if missed:
            assert after is None, (
                "the new id became live after destroy() of the old one had returned: "
                "a destroyed session came back (contract: No resurrection)"
            )
        provider.destroy(new)
        assert self.listed(provider, "racer", now) == {}

    def test_save_racing_rename(self, provider: Provider) -> None:
        op = self.op_time(provider)
        with fast_switching():
            for _ in range(self.race_rounds):
                self.save_racing_rename_once(provider, op)

    def save_racing_rename_once(self, provider: Provider, op: float) -> None:
        old = self.create(provider, {"a": 1})
        new = new_sid()
        now = T0 + 1

        def saver() -> list[bool]:
            # Save a few times (a store may retry a rename that a save
            # disturbed: never without end), or until a save fails.
            results: list[bool] = []
            while len(results) < 10 and (not results or results[-1]):
                results.append(provider.save(old, {f"b{len(results)}": 1}, (), now))
            return results

        def renamer() -> bool:
            pause(random.uniform(0, 2 * op))
            return provider.rename(old, new, now)

        saves, renamed = in_threads(saver, renamer)
        assert renamed, "rename() of a live session failed"
        data = self.live(provider, new, now).data
        for i, saved in enumerate(saves):
            if saved:
                assert f"b{i}" in data, (
                    "save() returned True but its write is lost: it raced rename() "
                    "(contract: Atomicity - rename is all or nothing)"
                )
            else:
                assert f"b{i}" not in data, "save() returned False but wrote"
        self.assert_dead(provider, old, now, "the old id is live after rename()")
        provider.destroy(new)

    @staticmethod
    def op_time(provider: Provider) -> float:
        """Roughly how long one call takes: the races spread their starts over it."""
        sid = new_sid()
        times = []
        for _ in range(5):
            start = time.perf_counter()
            provider.load(sid, T0)
            times.append(time.perf_counter() - start)
        return sorted(times)[2]

    def test_threads_create_and_load(self, provider: Provider) -> None:
        per_thread = 20

        def worker(i: int) -> list[str]:
            sids = [
                self.create(provider, {"i": i, "j": j}, user=f"u{i}") for j in range(per_thread)
            ]
            for j, sid in enumerate(sids):
                assert self.live(provider, sid, T0 + 1).data == {"i": i, "j": j}
            return sids

        with fast_switching():
            made = in_threads(*(lambda i=i: worker(i) for i in range(self.concurrency)))
        for i, sids in enumerate(made):
            assert set(self.listed(provider, f"u{i}", T0 + 2)) == set(sids)
        self.assert_count(provider, per_thread * self.concurrency)

    def test_gc_racing_writes(self, provider: Provider) -> None:
        live = [self.create(provider, {"n": 0}, idle=1000.0) for _ in range(self.concurrency)]
        dead = [self.create(provider, {}, idle=10.0) for _ in range(50)]
        now = T0 + 20
        removed: list[int] = []

        def writer(sid: str) -> None:
            for n in range(1, 21):
                assert provider.save(sid, {"n": n}, (), now), "gc() removed a live session"

        def collector() -> None:
            for _ in range(20):
                removed.append(provider.gc(now))

        with fast_switching():
            in_threads(collector, *(lambda sid=sid: writer(sid) for sid in live))
        removed.append(self.collect(provider, now + self.gc_lag))
        for sid in live:
            assert self.live(provider, sid, now).data == {"n": 20}
        for sid in dead:
            self.assert_dead(provider, sid, now, "expired")
        if not (self.expires_by_itself or type(provider).gc is Provider.gc):
            assert sum(removed) == len(dead), "gc() miscounted under concurrent writes"


def _write_keys(
    factory: Callable[[], Provider],
    sid: str,
    prefix: str,
    writes: int,
    barrier: Any,
) -> None:
    provider = factory()
    barrier.wait(60)
    for j in range(writes):
        assert provider.save(sid, {f"{prefix}{j}": j}, (), T0 + 1), "save() of a live session"
    provider.close()


def _save_until_gone(factory: Callable[[], Provider], sids: list[str], ready: Any) -> None:
    provider = factory()
    ready.set()
    for sid in sids:
        results: list[bool] = []
        end = time.monotonic() + 60
        while time.monotonic() < end and (not results or results[-1]):
            results.append(provider.save(sid, {"child": len(results)}, (), T0 + 1))
            # A request's pace, not a tight loop: a store whose writers take
            # turns on one lock (SQLite) would otherwise starve the other
            # process's destroy behind this one's back-to-back saves.
            time.sleep(0.0005)
        assert results[-1] is False, "the other process destroyed the session, save() goes on"
        for _ in range(3):
            assert provider.save(sid, {"late": 1}, (), T0 + 1) is False, (
                "save() returned True after it had returned False: the session came back"
            )
    provider.close()


def _run_processes(processes: list[Any], *, started: bool = False, timeout: float = 120) -> None:
    if not started:
        for process in processes:
            process.start()
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise AssertionError(f"a process using the provider did not finish in {timeout} s")
    assert all(p.exitcode == 0 for p in processes), "a process failed (its traceback is above)"


def _use_after_fork(provider: Provider, sid: str) -> None:
    # A store in one process may have dropped its copy in the child (it may
    # have been half-written at the fork); a shared one must still hold sid.
    for n in range(1, 51):
        saved = provider.save(sid, {"child": n}, (), T0 + 1)
        assert saved or provider.process_local, "save() in the forked child"
    other = new_sid()
    provider.create(other, {"x": 1}, T0, idle=IDLE, deadline=None)
    assert provider.load(other, T0 + 1) is not None, "load() in the forked child"
    assert provider.save(other, {"y": 2}, (), T0 + 1), "save() in the forked child"
    provider.destroy(other)
    assert provider.load(other, T0 + 1) is None, "destroy() in the forked child"


def _child(work: Callable[[], None]) -> None:
    """Run ``work`` in a forked child and leave at once (pytest must not go on there)."""
    status = 1
    try:
        work()
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _wait(pid: int, timeout: float) -> int:
    """The exit status of child ``pid``; kill it if it hangs (a lock held at the fork)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child hung for {timeout} s (a lock held at the fork?)")


def run_model(
    make_provider: Callable[[], Provider], *, examples: int, steps: int, exact_gc: bool
) -> None:
    """Drive a provider and a model of the contract with the same random calls
    (hypothesis's stateful testing) and compare every answer."""
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        rule,
        run_state_machine_as_test,
    )

    text = st.text(st.characters(exclude_categories=()), max_size=8)  # with lone surrogates
    values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.sampled_from([(1 << MAX_INT_BITS) - 1, -(1 << 64)])
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=6,
    )
    keys = st.sampled_from(["a", "b", "ключ", "x.y", "😀"])
    data = st.dictionaries(keys, values, max_size=3)
    users = st.sampled_from([None, "alice", "bob", "b*"])
    # No idle shorter than 10 s: a store that expires keys itself does so on
    # its own clock, which runs on while hypothesis thinks.
    idles = st.sampled_from([10.0, 100.0, 1000.0])
    steps_of_time = st.sampled_from([0.25, 1.0, 5.0, 9.75, 10.0, 50.0, 99.75, 100.0])

    runs = itertools.count()

    # Which id a call takes: an index into the ids made so far (a Bundle
    # would do, but hypothesis then picks the rules that take one rarely).
    picks = st.integers(min_value=0, max_value=63)

    class Model(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.provider = make_provider()
            # Each run's times far from the last run's: should make_provider()
            # hand back the same store, what an earlier run left is dead (and
            # collected here), so it cannot be mistaken for this run's.
            self.now = T0 + next(runs) * 1e7
            while self.provider.gc(self.now):
                pass
            # sid -> [data, created, accessed, idle, deadline, persistent, user]
            self.sessions: dict[str, list[Any]] = {}
            # Dead sessions a call has met since they died: the store may have
            # removed them there and then, so gc() need not count them.
            self.met: set[str] = set()
            self.ids: list[str] = [new_sid()]  # every id made, and one never used

        def pick(self, i: int) -> str:
            # Half the picks among live sessions (most ids made soon belong
            # to dead, destroyed or renamed ones).
            held = [sid for sid, s in self.sessions.items() if self.now < expires(s[2], s[3], s[4])]
            if i % 2 and held:
                return held[i // 2 % len(held)]
            return self.ids[i // 2 % len(self.ids)]

        def teardown(self) -> None:
            self.provider.close()

        def alive(self, sid: str) -> list[Any] | None:
            s = self.sessions.get(sid)
            if s is None:
                return None
            if self.now >= expires(s[2], s[3], s[4]):
                self.met.add(sid)
                return None
            return s

        def record(self, s: list[Any]) -> Record:
            return Record(s[0], s[1], s[2], s[3], s[4], s[5])

        @rule(
            data=data,
            idle=idles,
            ttl=st.none() | idles,
            persistent=st.booleans(),
            user=users,
        )
        def create(
            self,
            data: dict[str, Any],
            idle: float,
            ttl: float | None,
            persistent: bool,
            user: str | None,
        ) -> None:
            sid = new_sid()
            self.ids.append(sid)
            deadline = None if ttl is None else self.now + ttl
            self.provider.create(
                sid, data, self.now, idle=idle, deadline=deadline, persistent=persistent, user=user
            )
            self.sessions[sid] = [
                copy_values(data),
                self.now,
                self.now,
                idle,
                deadline,
                persistent,
                user,
            ]

        @rule(seconds=steps_of_time)
        def tick(self, seconds: float) -> None:
            self.now += seconds

        @rule(i=picks)
        def load(self, i: int) -> None:
            sid = self.pick(i)
            got = self.provider.load(sid, self.now)
            s = self.alive(sid)
            if s is None:
                assert got is None, "load() returned a session that is not live"
                return
            assert got is not None, "load() did not return a live session"
            assert_same(got.data, s[0])
            assert got._replace(data={}) == self.record(s)._replace(data={})
            s[2] = self.now

        @rule(
            i=picks,
            changed=data,
            removed=st.lists(keys, max_size=2),
            lifetime=st.none() | st.tuples(idles, st.booleans()),
            user=st.just(UNCHANGED) | users,
        )
        def save(
            self,
            i: int,
            changed: dict[str, Any],
            removed: list[str],
            lifetime: tuple[float, bool] | None,
            user: Any,
        ) -> None:
            sid = self.pick(i)
            removed = [key for key in removed if key not in changed]
            saved = self.provider.save(
                sid, changed, removed, self.now, lifetime=lifetime, user=user
            )
            s = self.alive(sid)
            assert saved is (s is not None), f"save() returned {saved} for a session " + (
                "that is not live" if s is None else "that is live"
            )
            if s is not None:
                s[0].update(copy_values(changed))
                for key in removed:
                    s[0].pop(key, None)
                s[2] = self.now
                if lifetime is not None:
                    s[3], s[5] = lifetime
                if user is not UNCHANGED:
                    s[6] = user

        @rule(i=picks)
        def rename(self, i: int) -> None:
            old, new = self.pick(i), new_sid()
            self.ids.append(new)
            renamed = self.provider.rename(old, new, self.now)
            s = self.alive(old)
            assert renamed is (s is not None), f"rename() returned {renamed}"
            if s is not None:
                self.sessions[new] = self.sessions.pop(old)

        @rule(i=picks)
        def destroy(self, i: int) -> None:
            sid = self.pick(i)
            self.provider.destroy(sid)
            self.sessions.pop(sid, None)

        @rule(user=users.filter(lambda u: u is not None))
        def sessions_of(self, user: str) -> None:
            listed = dict(self.provider.sessions_of(user, self.now))
            expected = {
                sid: self.record(s)
                for sid, s in self.sessions.items()
                if s[6] == user and self.alive(sid) is not None
            }
            assert set(listed) == set(expected), "sessions_of() listed other sessions"
            for sid, record in listed.items():
                assert record._replace(data={}) == expected[sid]._replace(data={})

        @rule()
        def gc(self) -> None:
            removed = 0
            while found := self.provider.gc(self.now):
                removed += found
            unmet = {sid for sid in self.sessions if sid not in self.met}
            dead = [sid for sid in list(self.sessions) if self.alive(sid) is None]
            for sid in dead:
                del self.sessions[sid]
            self.met.clear()
            if exact_gc and type(self.provider).gc is not Provider.gc:
                least = len(unmet.intersection(dead))
                assert least <= removed <= len(dead), (
                    f"gc() removed {removed} sessions: {len(dead)} were dead, "
                    f"{least} of them not met by any call since they died"
                )
                count = self.provider.count()
                assert count is None or count == len(self.sessions), "count() is wrong"

    run_state_machine_as_test(  # type: ignore[no-untyped-call, unused-ignore]
        Model,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            print_blob=False,
            # A failing store's report comes at once; the check that failed
            # names the call, and the steps before it are printed.
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
