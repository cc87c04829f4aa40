"""The PostgreSQL provider, against a real private PostgreSQL server."""

from __future__ import annotations

import functools
import gc
import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from wsgi_session import ProviderError, registry
from wsgi_session.provider import Provider
from wsgi_session.providers.postgres import PostgresProvider
from wsgi_session.testing import ProviderTests

if TYPE_CHECKING:
    from postgres_server import PostgresServer

pytest_plugins = ["postgres_server"]
pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
SID = "s" * 43
OTHER = "o" * 43
T0 = 1_000_000.0
_tables = itertools.count()

Factory = Callable[..., PostgresProvider]


@pytest.fixture
def admin(postgres_server: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """A plain connection to the private server, to look behind the provider."""
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def table(postgres_server: PostgresServer) -> Iterator[str]:
    """A table name of this test's own, dropped afterwards."""
    name = f"sessions_{os.getpid()}_{next(_tables)}"
    yield name
    # A connection of its own: the test may have restarted the server.
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def make(postgres_server: PostgresServer, table: str) -> Iterator[Factory]:
    """``make(**options)``: a provider on the private server and this test's table."""
    made: list[PostgresProvider] = []

    def factory(**options: Any) -> PostgresProvider:
        if "pool" not in options:
            options.setdefault("dsn", postgres_server.dsn)
        options.setdefault("table", table)
        provider = PostgresProvider(**options)
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        provider.close()


@pytest.fixture
def store(make: Factory) -> PostgresProvider:
    return make()


def new(
    store: PostgresProvider, sid: str = SID, data: dict[str, Any] | None = None, **kw: Any
) -> None:
    kw.setdefault("idle", 60.0)
    kw.setdefault("deadline", None)
    store.create(sid, data or {}, T0, **kw)


def backends(admin: psycopg.Connection[Any], tag: str) -> int:
    """Client connections to the server named ``tag`` (their application_name:
    a count of all would see backends of earlier tests still leaving)."""
    admin.execute("SELECT pg_stat_clear_snapshot()")
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND application_name = %s",
        (tag,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def tagged(dsn: str, tag: str) -> str:
    """``dsn`` whose connections carry ``tag`` as their application_name."""
    return f"{dsn} application_name={tag}"


def wait_for_backends(admin: psycopg.Connection[Any], n: int, tag: str) -> None:
    """Until ``n`` clients named ``tag`` are connected: a backend leaves a
    moment after its client says goodbye."""
    end = time.monotonic() + 5
    while backends(admin, tag) != n and time.monotonic() < end:
        time.sleep(0.01)
    assert backends(admin, tag) == n


def wait_for_lock_waiters(admin: psycopg.Connection[Any], n: int) -> None:
    """Until ``n`` backends are waiting for a row lock (or fail after 10 s)."""
    end = time.monotonic() + 10
    while True:
        # Inside a transaction the statistics views are a snapshot: refresh it.
        admin.execute("SELECT pg_stat_clear_snapshot()")
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
        assert row is not None
        if row[0] >= n:
            return
        assert time.monotonic() < end, f"{row[0]} of {n} writers reached the lock"
        time.sleep(0.01)


# -- the conformance kit -------------------------------------------------------


class TestPostgresConformance(ProviderTests):
    """The contract, on a table of each test's own; a broken store is a
    stopped server (started again afterwards)."""

    @pytest.fixture(autouse=True)
    def _server(self, postgres_server: PostgresServer, table: str) -> Iterator[None]:
        self.server = postgres_server
        self.table = table
        yield
        if not (postgres_server.data / "postmaster.pid").exists():
            postgres_server.start()

    def make_provider(self) -> Provider:
        return PostgresProvider(self.server.dsn, table=self.table)

    def cross_process(self, provider: Provider) -> Callable[[], Provider]:
        assert isinstance(provider, PostgresProvider)
        return functools.partial(
            PostgresProvider,
            self.server.dsn,
            table=self.table,
            durable_saves=provider.durable_saves,
        )

    def break_store(self, provider: Provider) -> None:
        self.server.stop()


class TestPostgresConformanceWithSavesThatDoNotWait(TestPostgresConformance):
    """The same with ``durable_saves=False``: only durability differs."""

    race_rounds = 50
    model_examples = 20

    def make_provider(self) -> Provider:
        return PostgresProvider(self.server.dsn, table=self.table, durable_saves=False)


# -- options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({}, ValueError, "dsn"),
        ({"dsn": 3}, TypeError, "dsn"),
        ({"dsn": ""}, ValueError, "dsn"),
        ({"dsn": "host=x password=hunter2 nonsense"}, ValueError, "dsn"),
        ({"dsn": "host=x", "pool": object()}, ValueError, "dsn"),
        ({"pool": object()}, TypeError, "pool"),
        ({"dsn": "host=x", "table": "Sessions"}, ValueError, "table"),
        ({"dsn": "host=x", "table": "s; DROP TABLE users"}, ValueError, "table"),
        ({"dsn": "host=x", "table": "a.b.c"}, ValueError, "table"),
        ({"dsn": "host=x", "table": "x" * 49}, ValueError, "table"),
        ({"dsn": "host=x", "table": ""}, ValueError, "table"),
        ({"dsn": "host=x", "table": 3}, TypeError, "table"),
        ({"dsn": "host=x", "create_schema": 1}, TypeError, "create_schema"),
        ({"dsn": "host=x", "durable_saves": None}, TypeError, "durable_saves"),
        ({"dsn": "host=x", "gc_batch": 0}, ValueError, "gc_batch"),
        ({"dsn": "host=x", "gc_batch": 1.5}, TypeError, "gc_batch"),
    ],
    ids=["none", "dsn-int", "dsn-empty", "dsn-bad", "both", "pool-not-a-pool", "table-upper",
         "table-injection", "table-dots", "table-long", "table-empty", "table-int",
         "create-schema-int", "durable-none", "batch-0", "batch-float"],
)  # fmt: skip
def test_bad_options_fail_at_construction_naming_the_option(
    options: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named) as info:
        registry.create("postgres", options)
    assert "hunter2" not in str(info.value)


def test_registered_as_postgres_and_connects_on_first_use(
    postgres_server: PostgresServer, admin: psycopg.Connection[Any], table: str
) -> None:
    dsn = tagged(postgres_server.dsn, table)
    provider = registry.create("postgres", {"dsn": dsn, "table": f"public.{table}", "gc_batch": 5})
    assert isinstance(provider, PostgresProvider)
    assert backends(admin, table) == 0
    assert admin.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)
    assert provider.load(SID, T0) is None
    assert backends(admin, table) == 1
    indexes = {
        row[0]
        for row in admin.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))
    }
    assert any("(expires)" in i for i in indexes) and any("(username)" in i for i in indexes)
    provider.close()
    wait_for_backends(admin, 0, table)


def test_an_unreachable_server_is_a_provider_error_at_first_use(unused_port: int) -> None:
    port = unused_port
    provider = PostgresProvider(f"host=127.0.0.1 port={port} user=postgres connect_timeout=2")
    with pytest.raises(ProviderError, match="PostgreSQL") as info:
        provider.load(SID, T0)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert SID not in str(info.value)


# -- the schema -----------------------------------------------------------------


def test_schema_sql_is_the_schema_a_dba_runs_beforehand(
    make: Factory, admin: psycopg.Connection[Any], table: str
) -> None:
    sql = PostgresProvider.schema_sql(table=table)
    assert "CREATE TABLE IF NOT EXISTS" in sql
    store = make(create_schema=False)
    with pytest.raises(ProviderError, match="does not exist"):
        store.load(SID, T0)
    admin.execute(sql)
    admin.execute(sql)  # idempotent
    new(store, data={"n": 1})
    record = store.load(SID, T0 + 1)
    assert record is not None and record.data == {"n": 1}


def test_schema_sql_refuses_a_bad_table_name() -> None:
    with pytest.raises(ValueError, match="table"):
        PostgresProvider.schema_sql(table='x"; DROP TABLE y; --')


def test_threads_and_processes_starting_at_once_create_the_schema_once(
    postgres_server: PostgresServer, make: Factory, table: str
) -> None:
    # Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's
    # catalogs; the advisory lock makes them take turns.
    providers = [make() for _ in range(6)]
    barrier = threading.Barrier(len(providers))
    errors: list[BaseException] = []

    def first_use(i: int, provider: PostgresProvider) -> None:
        barrier.wait()
        try:
            new(provider, sid=f"{i:043d}", data={"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=p) for p in enumerate(providers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert providers[0].count() == len(providers)


# -- the contract ---------------------------------------------------------------

ODD_VALUES = {
    "float": 1.0,
    "huge": 1e300,
    "big": 2**1000,
    "neg": -0.5,
    "none": None,
    "bool": True,
    "nul": "a\x00b",
    "surrogate": "\ud800 lone",
    "text": 'é\u2028 "quoted" \\ back \\u0000',
    "nested": {"a": [1, 2.5, {"b": None}], "": "empty key inside", "z": "\x00"},
    "list": [],
    'key "with" quotes': 1,
    "line\nbreak\t": 4,
    "日本": 5,
    "{}": 6,
}


def test_values_come_back_exactly(store: PostgresProvider) -> None:
    new(store, data=ODD_VALUES)
    record = store.load(SID, T0 + 1)
    assert record is not None
    assert record.data == ODD_VALUES
    assert type(record.data["float"]) is float and type(record.data["huge"]) is float
    assert store.save(SID, {"float": 2.0, "new": [0.0]}, ["none", "{}"], T0 + 2)
    record = store.load(SID, T0 + 3)
    assert record is not None
    expected = {**ODD_VALUES, "float": 2.0, "new": [0.0]}
    del expected["none"], expected["{}"]
    assert record.data == expected
    assert type(record.data["new"][0]) is float


def test_load_reports_the_previous_access_and_moves_it(store: PostgresProvider) -> None:
    new(store, idle=10.0, persistent=True)
    first = store.load(SID, T0 + 4)
    assert first is not None
    assert (first.created, first.accessed, first.idle, first.deadline, first.persistent) == (
        T0, T0, 10.0, None, True,
    )  # fmt: skip
    second = store.load(SID, T0 + 9)
    assert second is not None and second.accessed == T0 + 4
    assert store.load(SID, T0 + 18.9) is not None  # 9 + 10 > 18.9: the loads kept it alive
    assert store.load(SID, T0 + 28.9) is None


def test_loads_return_copies(store: PostgresProvider) -> None:
    new(store, data={"list": [1]})
    record = store.load(SID, T0)
    assert record is not None
    record.data["list"].append(2)
    again = store.load(SID, T0)
    assert again is not None and again.data == {"list": [1]}


def test_idle_expiry_is_enforced_on_every_call(store: PostgresProvider) -> None:
    new(store, data={"n": 1}, idle=10.0, user="alice")
    dead = T0 + 10  # now >= accessed + idle: dead
    assert store.load(SID, dead) is None
    assert store.save(SID, {"n": 2}, (), dead) is False
    assert store.rename(SID, OTHER, dead) is False
    assert store.sessions_of("alice", dead) == []
    assert store.load(OTHER, dead) is None


def test_the_deadline_wins_over_activity(store: PostgresProvider) -> None:
    new(store, idle=10.0, deadline=T0 + 15)
    assert store.load(SID, T0 + 8) is not None
    assert store.save(SID, {"n": 1}, (), T0 + 14.5)
    assert store.load(SID, T0 + 15) is None


def test_save_replaces_the_lifetime_and_the_user(store: PostgresProvider) -> None:
    new(store, idle=10.0, user="alice")
    assert store.save(SID, {}, (), T0 + 5, lifetime=(1000.0, True), user="bob")
    assert store.sessions_of("alice", T0 + 6) == []
    [(sid, record)] = store.sessions_of("bob", T0 + 6)
    assert sid == SID and (record.idle, record.persistent, record.accessed) == (
        1000.0,
        True,
        T0 + 5,
    )
    assert store.load(SID, T0 + 900) is not None  # the new idle timeout
    assert store.save(SID, {"n": 1}, (), T0 + 901, user=None)
    assert store.sessions_of("bob", T0 + 902) == []
    record = store.load(SID, T0 + 903)
    assert record is not None and record.persistent and record.data == {"n": 1}


def test_sessions_of_lists_live_sessions_without_access(store: PostgresProvider) -> None:
    new(store, SID, {"a": 1}, user="alice", idle=10.0)
    new(store, OTHER, user="alice", idle=100.0)
    new(store, "x" * 43, user="bob")
    listed = dict(store.sessions_of("alice", T0 + 5))
    assert set(listed) == {SID, OTHER} and listed[SID].data == {"a": 1}
    assert listed[SID].accessed == T0  # not an access
    assert [sid for sid, _ in store.sessions_of("alice", T0 + 10)] == [OTHER]
    store.destroy(OTHER)
    assert store.sessions_of("alice", T0 + 11) == []
    assert store.sessions_of("carol", T0) == []


def test_rename_moves_everything_and_keeps_the_access(store: PostgresProvider) -> None:
    new(store, data={"n": 1}, idle=10.0, deadline=T0 + 100, persistent=True, user="alice")
    assert store.rename(SID, OTHER, T0 + 5)
    assert store.load(SID, T0 + 6) is None
    assert store.save(SID, {"n": 2}, (), T0 + 6) is False
    record = store.load(OTHER, T0 + 6)
    assert record is not None
    assert record == (({"n": 1}), T0, T0, 10.0, T0 + 100, True)
    assert [sid for sid, _ in store.sessions_of("alice", T0 + 7)] == [OTHER]
    assert store.rename(SID, "y" * 43, T0 + 7) is False
    assert store.load("y" * 43, T0 + 7) is None


def test_destroyed_sessions_never_come_back(store: PostgresProvider) -> None:
    new(store, data={"n": 1})
    store.destroy(SID)
    store.destroy(SID)  # unknown ids are ignored
    assert store.save(SID, {"n": 2}, (), T0 + 1) is False
    assert store.rename(SID, OTHER, T0 + 1) is False
    assert store.load(SID, T0 + 1) is None and store.load(OTHER, T0 + 1) is None
    assert store.count() == 0


def test_an_empty_session_lives_for_its_lifetime(store: PostgresProvider) -> None:
    new(store, idle=10.0)
    record = store.load(SID, T0 + 9)
    assert record is not None and record.data == {}


def test_gc_removes_dead_sessions_in_batches_and_keeps_live_ones(make: Factory) -> None:
    store = make(gc_batch=3)
    for i in range(7):  # idle expiry
        new(store, f"i{i:042d}", idle=10.0)
    for i in range(4):  # deadlines, in use until the end
        new(store, f"d{i:042d}", idle=1000.0, deadline=T0 + 20)
    new(store, "live" + "x" * 39, idle=1000.0)
    assert store.gc(T0 + 5) == 0
    assert store.gc(T0 + 10) == 7
    assert store.count() == 5
    assert store.gc(T0 + 20) == 4
    assert store.count() == 1 and store.load("live" + "x" * 39, T0 + 21) is not None


def test_gc_leaves_a_row_a_request_holds_for_the_next_sweep(
    store: PostgresProvider, admin: psycopg.Connection[Any], table: str
) -> None:
    new(store, SID, idle=10.0)
    new(store, OTHER, idle=10.0)
    with admin.transaction():
        admin.execute(f"SELECT 1 FROM {table} WHERE sid = %s FOR UPDATE", (SID,))
        assert store.gc(T0 + 10) == 1  # does not wait for the held row
    assert store.gc(T0 + 10) == 1
    assert store.count() == 0


# -- concurrent writers ----------------------------------------------------------


def _save_in_thread(store: PostgresProvider, key: str, results: list[bool]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(store.save(SID, {key: key}, (), T0)))
    thread.start()
    return thread


def test_threads_writing_different_keys_at_the_same_moment_keep_both(
    store: PostgresProvider, admin: psycopg.Connection[Any], table: str
) -> None:
    new(store, data={"old": 0})
    results: list[bool] = []
    # The test holds the row: both saves are sent and wait for it, then run
    # one after the other. A read-modify-write save would lose one key.
    with admin.transaction():
        admin.execute(f"SELECT 1 FROM {table} WHERE sid = %s FOR UPDATE", (SID,))
        threads = [_save_in_thread(store, key, results) for key in ("a", "b")]
        wait_for_lock_waiters(admin, 2)
    for t in threads:
        t.join()
    assert results == [True, True]
    record = store.load(SID, T0)
    assert record is not None and record.data == {"old": 0, "a": "a", "b": "b"}


def test_many_threads_writing_their_own_keys_lose_nothing(store: PostgresProvider) -> None:
    new(store)
    rounds = 25

    def writer(key: str) -> None:
        for n in range(rounds):
            assert store.save(SID, {key: n}, (), T0)

    threads = [threading.Thread(target=writer, args=(f"k{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    record = store.load(SID, T0)
    assert record is not None and record.data == {f"k{i}": rounds - 1 for i in range(6)}


WRITER = """
import sys
from wsgi_session.providers.postgres import PostgresProvider
dsn, table, sid, key = sys.argv[1:]
store = PostgresProvider(dsn, table=table)
print(store.save(sid, {key: "from " + key}, (), 1_000_000.0), flush=True)
store.close()
"""


def test_processes_writing_different_keys_at_the_same_moment_keep_both(
    postgres_server: PostgresServer, store: PostgresProvider,
    admin: psycopg.Connection[Any], table: str,
) -> None:  # fmt: skip
    new(store, data={"old": 0})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with admin.transaction():
        admin.execute(f"SELECT 1 FROM {table} WHERE sid = %s FOR UPDATE", (SID,))
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, postgres_server.dsn, table, SID, key],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            for key in ("a", "b")
        ]
        try:
            wait_for_lock_waiters(admin, 2)
        except AssertionError:
            for w in writers:
                w.kill()
            raise AssertionError([w.communicate() for w in writers]) from None
    outputs = [w.communicate(timeout=30) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == ["True", "True"]
    record = store.load(SID, T0)
    assert record is not None and record.data == {"old": 0, "a": "from a", "b": "from b"}


def test_a_destroy_racing_saves_wins(
    store: PostgresProvider, admin: psycopg.Connection[Any], table: str
) -> None:
    new(store, data={"n": 0})
    results: list[bool] = []
    with admin.transaction():
        admin.execute(f"SELECT 1 FROM {table} WHERE sid = %s FOR UPDATE", (SID,))
        destroyer = threading.Thread(target=store.destroy, args=(SID,))
        destroyer.start()
        wait_for_lock_waiters(admin, 1)
        saver = _save_in_thread(store, "late", results)
        wait_for_lock_waiters(admin, 2)
    destroyer.join()
    saver.join()
    assert results == [False]
    assert store.load(SID, T0) is None and store.count() == 0


def test_a_rename_racing_saves_leaves_exactly_one(
    store: PostgresProvider, admin: psycopg.Connection[Any], table: str
) -> None:
    new(store, data={"n": 0})
    results: list[bool] = []
    renamed: list[bool] = []
    with admin.transaction():
        admin.execute(f"SELECT 1 FROM {table} WHERE sid = %s FOR UPDATE", (SID,))
        renamer = threading.Thread(target=lambda: renamed.append(store.rename(SID, OTHER, T0)))
        renamer.start()
        wait_for_lock_waiters(admin, 1)
        saver = _save_in_thread(store, "late", results)
        wait_for_lock_waiters(admin, 2)
    renamer.join()
    saver.join()
    assert renamed == [True] and results == [False]  # the save found the old id gone
    assert store.load(SID, T0) is None
    record = store.load(OTHER, T0)
    assert record is not None and record.data == {"n": 0}


# -- processes and fork -----------------------------------------------------------


def _hammer(store: PostgresProvider, sid: str, n: int) -> None:
    for i in range(n):
        assert store.save(sid, {"i": i}, (), T0)
        record = store.load(sid, T0)
        assert record is not None and record.data["i"] == i and record.data["who"] == sid


def _child(store: PostgresProvider, barrier: Any) -> None:
    barrier.wait()
    _hammer(store, OTHER, 200)
    store.close()  # closes the child's own connection, not the parent's


def test_a_forked_child_never_uses_its_parents_connections(
    store: PostgresProvider, admin: psycopg.Connection[Any]
) -> None:
    new(store, SID, {"who": SID})
    new(store, OTHER, {"who": OTHER})
    assert store.load(SID, T0) is not None  # the parent now holds a connection
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    child = context.Process(target=_child, args=(store, barrier))
    child.start()
    try:
        barrier.wait(timeout=30)
        # Both at once: on a shared socket their replies would interleave.
        _hammer(store, SID, 200)
    finally:
        child.join(60)
    assert child.exitcode == 0
    record = store.load(OTHER, T0)
    assert record is not None and record.data == {"who": OTHER, "i": 199}


def test_a_pool_made_before_a_fork_is_refused_in_the_child(
    postgres_server: PostgresServer, make: Factory
) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(postgres_server.dsn, min_size=1, max_size=2, open=True) as pool:
        store = make(pool=pool)
        new(store)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave at once
            try:
                store.load(SID, T0)
                os.write(write, b"used the parent's pool")
            except ProviderError as exc:
                os.write(write, str(exc).encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as f:
            said = f.read().decode()
        assert "pool" in said and "fork" in said
        assert store.load(SID, T0) is not None


# -- a given pool -------------------------------------------------------------------


def test_a_given_pool_is_used_and_left_as_it_was(
    postgres_server: PostgresServer, make: Factory
) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(postgres_server.dsn, min_size=1, max_size=1, open=True) as pool:
        store = make(pool=pool)
        new(store, data={"n": 1})
        assert store.save(SID, {"n": 2}, (), T0 + 1)
        record = store.load(SID, T0 + 2)
        assert record is not None and record.data == {"n": 2}
        with pool.connection() as conn:
            assert conn.autocommit is False  # switched back after each use
        store.close()
        assert not pool.closed  # the application's
        assert store.load(SID, T0 + 3) is not None


def test_an_exhausted_pool_is_a_provider_error(
    postgres_server: PostgresServer, make: Factory
) -> None:
    from psycopg_pool import ConnectionPool, PoolTimeout

    with ConnectionPool(postgres_server.dsn, min_size=1, max_size=1, timeout=0.2) as pool:
        store = make(pool=pool)
        new(store)
        with pool.connection(), pytest.raises(ProviderError, match="load failed") as info:
            store.load(SID, T0)  # the pool's one connection is taken
        assert isinstance(info.value.__cause__, PoolTimeout)
        assert store.load(SID, T0) is not None


# -- failures -------------------------------------------------------------------------


def test_a_restarted_server_is_an_error_while_down_then_recovers(
    postgres_server: PostgresServer, table: str
) -> None:
    # The run's server, restarted on its port (a server of its own would
    # cost an initdb); the finally clause leaves it running for the others.
    server = postgres_server
    store = PostgresProvider(server.dsn, table=table)
    try:
        new(store, data={"n": 1})
        server.stop()
        for call in (
            lambda: store.load(SID, T0 + 1),
            lambda: store.save(SID, {"n": 2}, (), T0 + 1),
            lambda: store.destroy(SID),
        ):
            with pytest.raises(ProviderError) as info:
                call()
            assert isinstance(info.value.__cause__, psycopg.OperationalError)
            assert SID not in str(info.value)
        server.start()  # same port: the application is not restarted
        record = store.load(SID, T0 + 2)
        assert record is not None and record.data == {"n": 1}
        # Restarted between two calls, and even crashed: the held connection
        # is found closed and replaced, without an error.
        for mode in ("fast", "immediate"):
            server.stop(mode)
            server.start()
            assert store.save(SID, {"mode": mode}, (), T0 + 3)
        record = store.load(SID, T0 + 4)
        assert record is not None and record.data == {"n": 1, "mode": "immediate"}
    finally:
        store.close()
        if not (server.data / "postmaster.pid").exists():
            server.start()


@pytest.mark.parametrize("durable_saves", [True, False])
def test_a_logout_survives_a_server_crash(
    postgres_server: PostgresServer, table: str, durable_saves: bool
) -> None:
    server = postgres_server
    store = PostgresProvider(server.dsn, table=table, durable_saves=durable_saves)
    try:
        new(store, SID, {"n": 1})
        new(store, OTHER, {"n": 1})
        assert store.save(SID, {"n": 2}, (), T0 + 1)
        assert store.load(SID, T0 + 2) is not None  # an access, which does not wait
        store.destroy(SID)
        assert store.rename(OTHER, "r" * 43, T0 + 3)
        server.stop("immediate")  # a crash: what was not written to the WAL is lost
        server.start()
        assert store.load(SID, T0 + 4) is None, "a destroyed session came back after a crash"
        assert store.load(OTHER, T0 + 4) is None, "a renamed-away id came back after a crash"
        record = store.load("r" * 43, T0 + 4)
        assert record is not None and record.data == {"n": 1}
    finally:
        store.close()
        if not (server.data / "postmaster.pid").exists():
            server.start()


def test_a_durable_save_survives_a_server_crash(
    postgres_server: PostgresServer, store: PostgresProvider
) -> None:
    new(store, data={"n": 1})
    assert store.save(SID, {"n": 2, "user": "alice"}, (), T0 + 1)
    try:
        postgres_server.stop("immediate")
    finally:
        postgres_server.start()
    record = store.load(SID, T0 + 2)
    assert record is not None and record.data == {"n": 2, "user": "alice"}


def test_server_errors_are_provider_errors_without_ids(
    store: PostgresProvider, admin: psycopg.Connection[Any], table: str
) -> None:
    new(store)
    with pytest.raises(ProviderError, match="create failed") as info:
        new(store)  # a duplicate id: the server's detail would quote it
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)
    assert SID not in str(info.value)
    # The connection survives an error reply.
    assert store.load(SID, T0) is not None


def test_a_corrupt_stored_value_is_a_provider_error(
    store: PostgresProvider, admin: psycopg.Connection[Any], table: str
) -> None:
    new(store, data={"n": 1})
    admin.execute(f"""UPDATE {table} SET data = '{{"n": "{{not json"}}'""")
    with pytest.raises(ProviderError, match="not valid") as info:
        store.load(SID, T0)
    assert isinstance(info.value.__cause__, ValueError)
    admin.execute(f"""UPDATE {table} SET data = '[1]'""")
    with pytest.raises(ProviderError, match="not valid"):
        store.load(SID, T0)


def test_close_closes_the_connections_and_the_next_call_reconnects(
    make: Factory, postgres_server: PostgresServer, admin: psycopg.Connection[Any], table: str
) -> None:
    store = make(dsn=tagged(postgres_server.dsn, table))
    new(store)
    assert backends(admin, table) == 1
    store.close()
    wait_for_backends(admin, 0, table)
    assert store.load(SID, T0) is not None
    assert backends(admin, table) == 1


def test_a_dropped_provider_closes_its_connections(
    postgres_server: PostgresServer, admin: psycopg.Connection[Any], table: str
) -> None:
    store = PostgresProvider(tagged(postgres_server.dsn, table), table=table)
    new(store)
    assert backends(admin, table) == 1
    del store
    gc.collect()
    wait_for_backends(admin, 0, table)


# -- through the middleware ---------------------------------------------------------


def test_two_workers_share_sessions_through_the_middleware(
    postgres_server: PostgresServer, table: str, make_app: Callable[..., Any]
) -> None:
    options = {"dsn": postgres_server.dsn, "table": table}
    _, one = make_app(provider="postgres", provider_options=options)
    _, two = make_app(provider="postgres", provider_options=options)
    assert one.get("/").text == "n=1 user=None"
    two.cookiejar = one.cookiejar  # the same browser, served by another worker
    assert two.get("/").text == "n=2 user=None"
    assert one.get("/login").text == "n=2 user=alice"
    assert two.get("/").text == "n=3 user=alice"
    two.get("/logout")
    assert one.get("/peek").text == "n=0 user=None"
