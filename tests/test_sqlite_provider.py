"""The SQLite provider: one file shared by processes and threads."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock

from wsgi_session import Manager, ProviderError, registry
from wsgi_session.provider import Provider
from wsgi_session.providers.sqlite import SCHEMA_VERSION, SqliteProvider
from wsgi_session.testing import ProviderTests
from wsgi_session.values import MAX_DEPTH, checked_copy

ROOT = Path(__file__).resolve().parent.parent
SID = "s" * 43
OTHER = "o" * 43
T0 = 1_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteProvider]:
    provider = SqliteProvider(path)
    yield provider
    provider.close()


def new(
    store: SqliteProvider, sid: str = SID, data: dict[str, Any] | None = None, **kw: Any
) -> None:
    kw.setdefault("idle", 60.0)
    kw.setdefault("deadline", None)
    store.create(sid, data or {}, T0, **kw)


class TestSqliteConformance(ProviderTests):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.path = tmp_path / "sessions.db"

    def make_provider(self) -> Provider:
        return SqliteProvider(self.path)

    def cross_process(self, provider: Provider) -> Callable[[], Provider]:
        return functools.partial(SqliteProvider, self.path)

    def break_store(self, provider: Provider) -> None:
        """Replace the file with garbage (the provider's connections closed first)."""
        provider.close()
        for name in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            name.unlink(missing_ok=True)
        self.path.write_bytes(b"not a database" * 1000)


# -- options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"path": ":memory:"}, ValueError, "path"),
        ({"path": "file::memory:?cache=shared"}, ValueError, "path"),
        ({"path": ""}, ValueError, "path"),
        ({"path": 3}, TypeError, "path"),
        ({"path": "/no/such/directory/s.db"}, ValueError, "path"),
        ({"path": "s.db", "busy_timeout": 0}, ValueError, "busy_timeout"),
        ({"path": "s.db", "busy_timeout": "5"}, TypeError, "busy_timeout"),
        ({"path": "s.db", "gc_batch": 0}, ValueError, "gc_batch"),
        ({"path": "s.db", "gc_batch": 1.5}, TypeError, "gc_batch"),
    ],
    ids=["memory", "memory-uri", "empty", "not-str", "no-dir", "timeout-0", "timeout-str",
         "batch-0", "batch-float"],
)  # fmt: skip
def test_bad_options_fail_at_construction_naming_the_option(
    options: dict[str, Any], error: type[Exception], named: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=named):
        registry.create("sqlite", options)
    assert list(tmp_path.iterdir()) == []  # nothing opened or created


def test_registered_as_sqlite_and_creates_nothing_until_used(path: Path) -> None:
    provider = registry.create("sqlite", {"path": str(path), "busy_timeout": 1, "gc_batch": 10})
    assert isinstance(provider, SqliteProvider)
    assert not path.exists()
    assert provider.load(SID, T0) is None
    assert path.exists()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    provider.close()


# -- the contract ---------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


ODD_VALUES = {
    "float": 1.0,
    "big": 2**1000,
    "neg": -0.5,
    "none": None,
    "bool": True,
    "text": 'é\u2028\ud800 "quoted" \\ back',
    "nested": {"a": [1, 2.5, {"b": None}], "": "empty key inside"},
    "list": [],
    'key "with" quotes': 1,
    "key.with.dots[0]": 2,
    "$.path": 3,
    "line\nbreak\t": 4,
    "日本": 5,
    "deepest": nested(MAX_DEPTH),
}


def test_values_come_back_exactly(store: SqliteProvider) -> None:
    for key, value in ODD_VALUES.items():
        checked_copy(key, value)  # all of them allowed
    new(store, data=ODD_VALUES)
    record = store.load(SID, T0 + 1)
    assert record is not None
    assert record.data == ODD_VALUES
    assert type(record.data["float"]) is float
    assert store.save(SID, {"float": 2.0, "new": [0.0]}, ["none", "$.path"], T0 + 2)
    record = store.load(SID, T0 + 3)
    assert record is not None
    expected = {**ODD_VALUES, "float": 2.0, "new": [0.0]}
    del expected["none"], expected["$.path"]
    assert record.data == expected
    assert type(record.data["new"][0]) is float


def test_load_reports_the_previous_access_and_moves_it(store: SqliteProvider) -> None:
    new(store, idle=10.0, persistent=True)
    first = store.load(SID, T0 + 4)
    assert first is not None
    assert (first.created, first.accessed, first.idle, first.deadline, first.persistent) == (
        T0, T0, 10.0, None, True,
    )  # fmt: skip
    second = store.load(SID, T0 + 9)
    assert second is not None and second.accessed == T0 + 4
    assert store.load(SID, T0 + 18.9) is not None  # 9 + 10 > 18.9: the loads kept it alive


def test_sessions_survive_a_new_provider_on_the_same_file(path: Path) -> None:
    first = SqliteProvider(path)
    new(first, data={"n": 1}, user="alice")
    first.close()
    second = SqliteProvider(str(path))
    record = second.load(SID, T0 + 1)
    assert record is not None and record.data == {"n": 1}
    assert [sid for sid, _ in second.sessions_of("alice", T0 + 1)] == [SID]
    second.close()


def test_empty_session_and_unknown_ids(store: SqliteProvider) -> None:
    assert store.load(SID, T0) is None
    assert not store.save(SID, {"a": 1}, (), T0)  # save never creates
    assert store.load(SID, T0) is None
    store.destroy(SID)  # ignored
    new(store)
    record = store.load(SID, T0 + 1)
    assert record is not None and record.data == {}


# -- expiry ---------------------------------------------------------------------


def test_idle_expiry_is_enforced_on_read_and_write_without_gc(store: SqliteProvider) -> None:
    new(store, data={"a": 1}, idle=10.0)
    assert store.load(SID, T0 + 10) is None  # dead at exactly accessed + idle
    assert not store.save(SID, {"a": 2}, (), T0 + 10)
    assert not store.rename(SID, OTHER, T0 + 10)
    assert store.count() == 1  # still a row: gc has not run
    assert store.load(OTHER, T0 + 5) is None  # the rename did not happen


def test_deadline_caps_the_sliding_timeout(store: SqliteProvider) -> None:
    new(store, idle=10.0, deadline=T0 + 15)
    assert store.load(SID, T0 + 8) is not None
    assert store.save(SID, {"a": 1}, (), T0 + 14, lifetime=(1000.0, True))
    assert store.load(SID, T0 + 14.9) is not None
    assert store.load(SID, T0 + 15) is None


def test_lifetime_and_user_change_with_save(store: SqliteProvider) -> None:
    new(store, idle=10.0, user="alice")
    assert store.save(SID, {}, (), T0 + 5, lifetime=(100.0, True), user="bob")
    assert store.sessions_of("alice", T0 + 6) == []
    ((sid, record),) = store.sessions_of("bob", T0 + 6)
    assert sid == SID
    assert (record.idle, record.persistent, record.accessed) == (100.0, True, T0 + 5)
    assert store.load(SID, T0 + 104) is not None  # the new idle counts from the save
    assert store.save(SID, {}, (), T0 + 105, user=None)
    assert store.sessions_of("bob", T0 + 106) == []


def test_gc_deletes_dead_rows_in_batches_and_keeps_live_ones(path: Path) -> None:
    store = SqliteProvider(path, gc_batch=3)
    for i in range(10):
        new(store, f"dead{i:039d}", idle=5.0)
    new(store, "deadline" + "d" * 35, idle=1000.0, deadline=T0 + 6)  # kept alive by use...
    store.load("deadline" + "d" * 35, T0 + 5)
    new(store, "live" + "l" * 39, idle=100.0)
    assert store.count() == 12
    assert store.gc(T0 + 4) == 0
    assert store.gc(T0 + 10) == 11  # ...but past its deadline
    assert store.count() == 1
    assert store.load("live" + "l" * 39, T0 + 10) is not None
    store.close()


def test_gc_holds_the_write_lock_one_batch_at_a_time(path: Path) -> None:
    """Each batch is its own transaction: a request's save gets in between."""
    store = SqliteProvider(path, gc_batch=2)
    for i in range(6):
        new(store, f"dead{i:039d}", idle=5.0)
    new(store, idle=100.0)
    statements: list[str] = []
    store._db().set_trace_callback(statements.append)  # white box: count the transactions
    assert store.gc(T0 + 10) == 6
    transactions = " ".join(s.split()[0] for s in statements).split("BEGIN")[1:]
    assert len(transactions) == 4  # 2 + 2 + 2 + none left
    assert all(t.split().count("DELETE") <= 2 and t.split()[-1] == "COMMIT" for t in transactions)
    store.close()


def test_gc_keeps_sessions_that_accesses_kept_alive(store: SqliteProvider) -> None:
    """gc finds rows by a lower bound of their expiry: those still live stay."""
    new(store, idle=10.0)
    for at in (8, 16, 24):
        assert store.load(SID, T0 + at) is not None
    assert store.gc(T0 + 20) == 0  # past the first expiry, not the real one
    assert store.gc(T0 + 30) == 0
    assert store.load(SID, T0 + 33.9) is not None
    assert store.gc(T0 + 43.9) == 1
    assert store.count() == 0


# -- no resurrection ------------------------------------------------------------------


def test_destroy_and_rename_never_bring_a_session_back(store: SqliteProvider) -> None:
    new(store, data={"a": 1}, user="alice")
    assert store.rename(SID, OTHER, T0 + 1)
    assert store.load(SID, T0 + 2) is None
    assert not store.save(SID, {"a": 2}, (), T0 + 2)
    assert not store.rename(SID, "x" * 43, T0 + 2)
    record = store.load(OTHER, T0 + 3)
    assert record is not None and record.data == {"a": 1} and record.accessed == T0
    assert [sid for sid, _ in store.sessions_of("alice", T0 + 3)] == [OTHER]
    store.destroy(OTHER)
    assert store.load(OTHER, T0 + 4) is None
    assert not store.save(OTHER, {"a": 3}, (), T0 + 4)
    assert store.sessions_of("alice", T0 + 4) == []
    assert store.count() == 0


def test_destroy_racing_saves_from_threads_wins(path: Path) -> None:
    store = SqliteProvider(path)
    new(store, data={"a": 0})
    stop = threading.Event()
    saved_after: list[bool] = []
    destroyed = threading.Event()

    def saver(key: str) -> None:
        while not stop.is_set():
            after = destroyed.is_set()  # started after the destroy returned
            ok = store.save(SID, {key: 1}, (), T0 + 1)
            if after:
                saved_after.append(ok)

    threads = [threading.Thread(target=saver, args=(f"k{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    store.destroy(SID)
    destroyed.set()
    deadline = time.monotonic() + 10
    while len(saved_after) < 100 and time.monotonic() < deadline:
        assert store.load(SID, T0 + 1) is None
    stop.set()
    for t in threads:
        t.join()
    assert saved_after and not any(saved_after)
    assert store.count() == 0
    store.close()


# -- per-key writes from many writers --------------------------------------------------

# Each script waits for the file named by its last argument, so that all start at once.
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from wsgi_session.providers.sqlite import SqliteProvider
    path, sid, key, rounds, go = sys.argv[1:]
    store = SqliteProvider(path)
    store.load(sid, 1_000_001.0)  # connect before the start
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(int(rounds)):
        assert store.save(sid, {key: i, f"{key}-{i}": i}, [f"{key}-{i - 1}"] if i else [],
                          1_000_001.0)
    store.close()
    """
)
FIRST_USE = textwrap.dedent(
    """
    import os, sys, time
    from wsgi_session.providers.sqlite import SqliteProvider
    path, sid, go = sys.argv[1:]
    store = SqliteProvider(path)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    store.create(sid, {"mine": sid}, 1_000_000.0, idle=60.0, deadline=None)
    assert store.load(sid, 1_000_001.0).data == {"mine": sid}
    store.close()
    """
)

RACER = textwrap.dedent(
    """
    import os, sys, time
    from wsgi_session.providers.sqlite import SqliteProvider
    path, sid, key, go = sys.argv[1:]
    store = SqliteProvider(path)
    store.load(sid, 1_000_001.0)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    if key == "destroy":
        time.sleep(0.05)
        store.destroy(sid)
    else:
        # Save until the destroy shows, then 100 times more: never again True.
        results, end = [], time.monotonic() + 10
        while results.count(False) < 100 and time.monotonic() < end:
            results.append(store.save(sid, {key: len(results)}, (), 1_000_001.0))
        assert results.count(False) == 100, "the destroy never showed"
        assert results == sorted(results, reverse=True), "a save after the destroy"
    store.close()
    """
)


def run_together(script: str, argvs: list[list[str]], go: Path) -> None:
    """Run ``python -c script *argv`` for each argv, released at the same moment."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv, str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for argv in argvs
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            assert proc.stdout.readline() == b"ready\n", proc.stderr.read().decode()
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_processes_writing_different_keys_at_once_keep_every_write(
    store: SqliteProvider, path: Path, tmp_path: Path
) -> None:
    new(store, idle=3600.0, data={"base": "kept"})
    writers, rounds = 4, 150
    argvs = [[str(path), SID, f"p{n}", str(rounds)] for n in range(writers)]
    run_together(WRITER, argvs, tmp_path / "go")
    record = store.load(SID, T0 + 2)
    assert record is not None
    expected: dict[str, Any] = {"base": "kept"}
    for n in range(writers):
        expected[f"p{n}"] = rounds - 1
        expected[f"p{n}-{rounds - 1}"] = rounds - 1
    assert record.data == expected


def test_a_destroy_from_another_process_wins_over_saves(
    store: SqliteProvider, path: Path, tmp_path: Path
) -> None:
    new(store, idle=3600.0)
    argvs = [[str(path), SID, key] for key in ("a", "b", "c", "destroy")]
    run_together(RACER, argvs, tmp_path / "go")
    assert store.load(SID, T0 + 2) is None
    assert store.count() == 0


def test_processes_creating_the_file_at_once(path: Path, tmp_path: Path) -> None:
    """The first use in each process (WAL switch, schema) races with the others'."""
    sids = [f"{n:043d}" for n in range(6)]
    run_together(FIRST_USE, [[str(path), sid] for sid in sids], tmp_path / "go")
    store = SqliteProvider(path)
    for sid in sids:
        record = store.load(sid, T0 + 2)
        assert record is not None and record.data == {"mine": sid}
    store.close()


def test_threads_writing_different_keys_at_once_keep_every_write(store: SqliteProvider) -> None:
    new(store, idle=3600.0)
    writers, rounds = 8, 100
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(key: str) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                assert store.save(SID, {key: i}, (), T0 + 1)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    record = store.load(SID, T0 + 2)
    assert record is not None
    assert record.data == {f"t{n}": rounds - 1 for n in range(writers)}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_thread_that_ends_leaves_no_open_connection(store: SqliteProvider) -> None:
    """A server that starts a thread per request must not pile up open files."""
    new(store)
    assert store.load(SID, T0) is not None  # this thread's connection, open
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(30):
        thread = threading.Thread(target=store.load, args=(SID, T0 + 1))
        thread.start()
        thread.join()
    assert len(os.listdir("/proc/self/fd")) <= before + 3  # at most one more connection


# -- fork ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(
    store: SqliteProvider,
) -> None:
    new(store, data={"n": 0}, idle=3600.0)
    parents = store._db()  # white box: the connection this thread uses
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        status = 1
        try:
            ok = store._db() is not parents
            for i in range(50):
                ok = ok and store.save(SID, {"child": i}, (), T0 + 1)
            os.write(write, b"ok" if ok else b"no")
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    for i in range(50):  # at the same time as the child
        assert store.save(SID, {"parent": i}, (), T0 + 1)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok"
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._db() is parents  # untouched by the child
    record = store.load(SID, T0 + 2)
    assert record is not None and record.data == {"n": 0, "child": 49, "parent": 49}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_another_thread_opens_a_connection_does_not_hang(
    store: SqliteProvider,
) -> None:
    new(store, data={"n": 0}, idle=3600.0)
    held, release = threading.Event(), threading.Event()

    def opening() -> None:  # stands for a thread caught registering its new connection
        with store._lock:  # white box: the lock that registration takes
            held.set()
            release.wait(10)

    thread = threading.Thread(target=opening)
    thread.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the lock's holder did not come along
            status = 1
            try:
                signal.alarm(5)  # a hang ends the child, failed
                record = store.load(SID, T0 + 1)
                store.close()
                status = 0 if record is not None and record.data == {"n": 0} else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


# -- failures ------------------------------------------------------------------------


def test_a_locked_database_raises_provider_error_then_recovers(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteProvider(path, busy_timeout=0.05)
    new(store, data={"a": 1})
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.ERROR, logger="wsgi_session"):
            with pytest.raises(ProviderError, match="locked.*busy_timeout") as caught:
                store.save(SID, {"a": 2}, (), T0 + 1)
            with pytest.raises(ProviderError):
                store.load(SID, T0 + 1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert SID not in str(caught.value)
    assert len(caplog.records) == 2
    line = caplog.records[0].getMessage()
    assert "save failed" in line and "locked" in line and str(path) in line
    assert SID not in caplog.text
    record = store.load(SID, T0 + 2)  # nothing lost, nothing half-written
    assert record is not None and record.data == {"a": 1}
    store.close()


def test_a_corrupt_file_raises_provider_error_and_is_left_as_it_is(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    store = SqliteProvider(path)
    with caplog.at_level(logging.ERROR, logger="wsgi_session"):
        for call in (
            lambda: store.load(SID, T0),
            lambda: new(store),
            lambda: store.gc(T0),
        ):
            with pytest.raises(ProviderError, match="not a database") as caught:
                call()
            assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert "not a database" in caplog.text
    assert SID not in caplog.text
    assert path.read_bytes() == garbage  # never overwritten or "repaired" into an empty store
    store.close()


@pytest.mark.parametrize("data", ["not json", "[1]", '{"a": 1}', '{"a": []}'])
def test_a_damaged_row_raises_provider_error(
    store: SqliteProvider, path: Path, data: str, caplog: pytest.LogCaptureFixture
) -> None:
    new(store, data={"a": 1}, user="alice")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE wsgi_sessions SET data = ?", (data,))
    db.close()
    for call in (lambda: store.load(SID, T0 + 1), lambda: store.sessions_of("alice", T0 + 1)):
        with pytest.raises(ProviderError, match="damaged") as caught:
            call()
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert SID not in caplog.text and "damaged" in caplog.text


def test_a_table_from_a_newer_schema_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    store = SqliteProvider(path)
    with pytest.raises(ProviderError, match="schema version"):
        store.load(SID, T0)
    store.close()


def test_close_then_use_reconnects(store: SqliteProvider) -> None:
    new(store, data={"a": 1})
    store.close()
    record = store.load(SID, T0 + 1)
    assert record is not None and record.data == {"a": 1}


# -- through the middleware and the manager --------------------------------------------


def test_the_middleware_on_sqlite(make_app: Any, clock: FakeClock, path: Path) -> None:
    mw, client = make_app(provider="sqlite", provider_options={"path": str(path)})
    assert client.get("/").text.startswith("n=1 ")
    assert client.get("/").text.startswith("n=2 ")
    first = client.cookies["session_id"]
    assert client.get("/login").text == "n=2 user=alice"
    assert client.cookies["session_id"] != first
    clock.advance(3599)
    assert client.get("/peek").text == "n=2 user=alice"  # the load slid the idle timeout
    clock.advance(3600)
    assert client.get("/peek").text == "n=0 user=None"  # expired, never returned
    assert mw.manager.gc() == 1


def test_the_manager_on_sqlite_lists_and_revokes_a_users_sessions(
    clock: FakeClock, path: Path
) -> None:
    manager = Manager("sqlite", {"path": str(path)}, clock=clock, gc_interval=None)
    sids = [manager.create({"i": i}, user="alice") for i in range(3)]
    manager.create({}, user="bob")
    assert len(manager.sessions_of("alice")) == 3
    keep = manager.sessions_of("alice")[0].handle
    assert manager.revoke_user("alice", keep=keep) == 2
    assert [manager.load(sid) is not None for sid in sids].count(True) == 1
    assert len(manager.sessions_of("bob")) == 1
    manager.close()
