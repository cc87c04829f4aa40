"""Sessions in one SQLite file, shared by every process and thread on the host."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from types import EllipsisType
from typing import Any, TypeVar

from .. import options, values
from ..errors import ProviderError
from ..logs import log
from ..provider import UNCHANGED, Provider, Record, expires

T = TypeVar("T")

#: The schema's version, kept in the file's ``PRAGMA user_version``.
SCHEMA_VERSION = 1

# ``data`` is a JSON object of session key -> [the value's values.encode()
# text]. Boxed in a one-item array, never a bare object or null, so that a
# save can merge with json_patch() (RFC 7396) in the UPDATE itself: null in
# the patch deletes a key, an array replaces one whole, every other key stays
# as the store has it at that moment. (SQLite keeps each value's text as it
# was written. JSON strings instead of arrays would work too, but decoding
# twice took twice the CPU: 8 against 4 µs for seven keys.)
# ``previous`` is the access before the last one (what a load reports:
# RETURNING can only see the updated row).
# ``expires`` = min(accessed + idle, deadline), kept exact by every access:
# every statement checks liveness with it. It is not indexed, because an
# index entry moved on each access made a load or a save a quarter dearer
# (27 against 20 µs of CPU each, SQLite 3.40). gc finds dead rows through
# ``sweep_at`` instead, indexed and never later than ``expires`` (a lower
# bound: accesses only move ``expires`` later, and a save that changes the
# lifetime sets both). gc deletes the rows it finds dead and moves the live
# ones' ``sweep_at`` up to their ``expires``.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS wsgi_sessions (
    sid TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    created REAL NOT NULL,
    accessed REAL NOT NULL,
    previous REAL NOT NULL,
    idle REAL NOT NULL,
    deadline REAL,
    persistent INTEGER NOT NULL,
    user TEXT,
    expires REAL NOT NULL,
    sweep_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wsgi_sessions_sweep_at ON wsgi_sessions (sweep_at);
CREATE INDEX IF NOT EXISTS wsgi_sessions_user ON wsgi_sessions (user) WHERE user IS NOT NULL;
"""

# expires() in SQL, for an access at :now with idle timeout `idle`.
_EXPIRES = (
    "CASE WHEN deadline IS NULL OR :now + {idle} < deadline THEN :now + {idle} ELSE deadline END"
)

_CREATE = (
    "INSERT INTO wsgi_sessions (sid, data, created, accessed, previous, idle, deadline,"
    " persistent, user, expires, sweep_at) VALUES"
    " (:sid, :data, :now, :now, :now, :idle, :deadline, :persistent, :user, :expires, :expires)"
)
_LOAD = (
    "UPDATE wsgi_sessions SET previous = accessed, accessed = :now, expires = "
    + _EXPIRES.format(idle="idle")
    + " WHERE sid = :sid AND expires > :now"
    " RETURNING data, created, previous, idle, deadline, persistent"
)
_RENAME = "UPDATE wsgi_sessions SET sid = :new WHERE sid = :old AND expires > :now"
_DESTROY = "DELETE FROM wsgi_sessions WHERE sid = ?"
_SESSIONS_OF = (
    "SELECT sid, data, created, accessed, idle, deadline, persistent FROM wsgi_sessions"
    " WHERE user = ? AND expires > ?"
)
_GC_FIND = "SELECT sid, expires FROM wsgi_sessions WHERE sweep_at <= ? ORDER BY sweep_at LIMIT ?"
_GC_DELETE = "DELETE FROM wsgi_sessions WHERE sid = ? AND expires <= ?"
_GC_BUMP = "UPDATE wsgi_sessions SET sweep_at = expires WHERE sid = ?"
_COUNT = "SELECT count(*) FROM wsgi_sessions"

_key = json.JSONEncoder(ensure_ascii=False).encode  # keys are checked: UTF-8, no NUL
_encode = values.encode
_decode = values.decode

# What to do about the commonest failures, by SQLite's error name.
_HINTS = {
    "SQLITE_BUSY": " (another connection held the write lock longer than busy_timeout)",
    "SQLITE_NOTADB": " (the file is not a SQLite database; it is left as it is)",
    "SQLITE_CORRUPT": " (the database file is damaged; it is left as it is)",
}

# Connections opened in another process (inherited through fork). Closing one
# would touch a file (and its locks) the parent is still using, and letting it
# be garbage-collected closes it, so it is kept here, unused, until exit: at
# most one per thread of the parent, per fork.
_inherited: list[sqlite3.Connection] = []


class _Connection:
    """One thread's connection, and the process that opened it."""

    __slots__ = ("db", "pid", "__weakref__")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.pid = os.getpid()

    def __del__(self) -> None:
        # The thread ended, or the provider was dropped or closed.
        if self.pid == os.getpid():
            self.db.close()
        else:
            _inherited.append(self.db)


class SqliteProvider(Provider):
    """Sessions in one SQLite file, shared by every worker process on a host.

    **When.** Several workers on one host (``gunicorn -w 4``), sessions that
    survive restarts and deploys, and nothing to install or run: only the
    standard library's :mod:`sqlite3`. For several hosts use Redis or
    PostgreSQL; for one process, ``memory`` costs a tenth.

    **Cost.** Every request that has a session writes the file: the load
    records the access, a save merges the changed keys into the row; one
    statement each, about 20 µs of CPU each. Writers from all processes take
    turns (in WAL mode readers never wait); a call that waits longer than
    ``busy_timeout`` seconds for its turn raises
    :class:`~wsgi_session.ProviderError`, as does a damaged file (which is
    left as it is). Commits are not synced one by one (``synchronous=NORMAL``):
    a power cut may lose the last moments of session writes, never the file.

    **Expiry.** Every statement checks the session's expiry (the last access
    plus its idle timeout, or its deadline if sooner), so a dead session is
    never read, listed or written; :meth:`gc` then deletes dead rows,
    ``gc_batch`` per transaction.

    ``path`` is the database file, created with its table on first use, in
    a directory every worker can write (SQLite keeps ``-wal`` and ``-shm``
    files beside it) on a local file system (WAL mode shares memory between
    processes: not over NFS). ``:memory:`` is refused: every connection (each
    thread and process) would have a database of its own.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        gc_batch: int = 1000,
    ) -> None:
        path = options.text("path", os.fspath(path) if isinstance(path, os.PathLike) else path)
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError(
                f"path must name a database file, not {path!r}: every connection (each "
                "thread and process) would get a private database; use provider='memory' "
                "for a store in one process"
            )
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise ValueError(f"path: the directory {directory!r} does not exist")
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise ValueError(
                f"provider 'sqlite' needs SQLite 3.35 or newer (RETURNING, JSON1); "
                f"Python's sqlite3 has {sqlite3.sqlite_version}"
            )
        self.path = path
        self.busy_timeout = options.seconds("busy_timeout", busy_timeout)
        self.gc_batch = options.positive_int("gc_batch", gc_batch)
        self._local = threading.local()
        self._schema_pid = 0  # the process that has checked the schema
        self._forked()

    def _forked(self) -> None:
        """Start this process's list of connections, for close(). (After a
        fork, the lock may have been held by a thread that is not there.)"""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()

    # -- connections ----------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened in this process."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.pid == os.getpid():
            return conn.db
        # None yet in this thread, or inherited through fork (never used again).
        db = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit: every statement is its own transaction
            check_same_thread=False,  # only close() touches it from another thread
        )
        try:
            db.execute("PRAGMA synchronous = NORMAL")
            if self._schema_pid != os.getpid():
                self._create_schema(db)
                self._schema_pid = os.getpid()
        except BaseException:
            db.close()
            raise
        conn = _Connection(db)
        self._local.conn = conn
        if self._pid != conn.pid:
            self._forked()
        with self._lock:
            self._connections.add(conn)
        return db

    def _create_schema(self, db: sqlite3.Connection) -> None:
        self._use_wal(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # Statement by statement: executescript() would COMMIT first.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"the session table has schema version {version}; "
                    f"this wsgi_session knows version {SCHEMA_VERSION}"
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # not if BEGIN itself failed
                db.execute("ROLLBACK")
            raise

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Switch the file to WAL (readers never block the writer, commits are
        cheap). The mode is the file's, so only the first process switches.
        SQLite answers "locked" at once, without its busy handler, while
        another connection switches or holds a lock: try again until
        ``busy_timeout`` (only when a process first opens the file)."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = db.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _run(self, what: str, call: Callable[[sqlite3.Connection], T]) -> T:
        """``call(connection)``, SQLite's errors turned into ProviderError with a log line."""
        try:
            return call(self._db())
        except sqlite3.Error as exc:
            # The file and the operation, never an id: SQLite's own messages
            # ("database is locked", "file is not a database") hold none.
            hint = _HINTS.get(getattr(exc, "sqlite_errorname", ""), "")
            log.error(
                "SQLite session store %s: %s failed: %s%s", self.path, what, exc, hint
            )
            raise ProviderError(
                f"SQLite session store {self.path}: {what} failed: {exc}{hint}"
            ) from exc

    # -- the contract ---------------------------------------------------------

    def create(
        self,
        sid: str,
        data: Mapping[str, Any],
        now: float,
        *,
        idle: float,
        deadline: float | None,
        persistent: bool = False,
        user: str | None = None,
    ) -> None:
        params = {
            "sid": sid,
            "data": _object({key: f"[{_encode(value)}]" for key, value in data.items()}),
            "now": now,
            "idle": idle,
            "deadline": deadline,
            "persistent": int(persistent),
            "user": _user(user),
            "expires": expires(now, idle, deadline),
        }
        self._run("create", lambda db: db.execute(_CREATE, params))

    def load(self, sid: str, now: float) -> Record | None:
        params = {"sid": sid, "now": now}
        # fetchall(): the statement must run to its end, or its transaction stays open.
        return self._run("load", lambda db: _record(db.execute(_LOAD, params).fetchall()))

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        *,
        lifetime: tuple[float, bool] | None = None,
        user: str | None | EllipsisType = UNCHANGED,
    ) -> bool:
        params: dict[str, Any] = {"sid": sid, "now": now}
        sets = ["accessed = :now"]
        if changed or removed:
            patch = dict.fromkeys(removed, "null")
            for key, value in changed.items():
                patch[key] = f"[{_encode(value)}]"
            # One statement: the merge happens on the row as it is now, so a
            # concurrent save of other keys is never lost.
            sets.append("data = json_patch(data, :patch)")
            params["patch"] = _object(patch)
        if lifetime is None:
            sets.append("expires = " + _EXPIRES.format(idle="idle"))
        else:
            params["idle"], persistent = lifetime
            params["persistent"] = int(persistent)
            sets += [
                "idle = :idle",
                "persistent = :persistent",
                "expires = " + _EXPIRES.format(idle=":idle"),
                # A shorter idle may make it expire sooner: keep the lower bound.
                "sweep_at = " + _EXPIRES.format(idle=":idle"),
            ]
        if user is not UNCHANGED:
            sets.append("user = :user")
            params["user"] = _user(user)
        # The liveness check is the WHERE clause of the write itself.
        statement = (
            f"UPDATE wsgi_sessions SET {', '.join(sets)} WHERE sid = :sid AND expires > :now"
        )
        return self._run("save", lambda db: db.execute(statement, params).rowcount) == 1

    def rename(self, old: str, new: str, now: float) -> bool:
        # One UPDATE of the key is one transaction: the row moves, or stays.
        params = {"old": old, "new": new, "now": now}
        return self._run("rename", lambda db: db.execute(_RENAME, params).rowcount) == 1

    def destroy(self, sid: str) -> None:
        self._run("destroy", lambda db: db.execute(_DESTROY, (sid,)))

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        return self._run(
            "sessions_of", lambda db: _sessions(db.execute(_SESSIONS_OF, (_user(user), now)))
        )

    def gc(self, now: float) -> int:
        """Delete dead rows, ``gc_batch`` rows per transaction (the write lock
        is released between batches, so requests go on during a long sweep)."""
        removed = 0
        while True:
            found, n = self._run("gc", lambda db: self._sweep(db, now))
            removed += n
            if found < self.gc_batch:
                return removed

    def _sweep(self, db: sqlite3.Connection, now: float) -> tuple[int, int]:
        """One batch: how many rows it looked at, and how many it deleted."""
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(_GC_FIND, (now, self.gc_batch)).fetchall()
            dead = [(sid, now) for sid, expiry in rows if expiry <= now]
            db.executemany(_GC_DELETE, dead)
            db.executemany(_GC_BUMP, [(sid,) for sid, expiry in rows if expiry > now])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # not if BEGIN itself failed
                db.execute("ROLLBACK")
            raise
        return len(rows), len(dead)

    def count(self) -> int:
        """Rows in the table: live sessions and dead ones gc has not removed yet
        (a scan of the smallest index: about 2 ms per 100,000 rows)."""
        return int(self._run("count", lambda db: db.execute(_COUNT).fetchone()[0]))

    def close(self) -> None:
        """Close the connections this process opened (in any thread)."""
        if self._pid != os.getpid():
            self._forked()  # nothing opened here yet
        with self._lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            conn.db.close()
        self._local = threading.local()


def _user(user: str | None) -> str | bytes | None:
    """The ``user`` column's value. A str SQLite cannot take as text (a lone
    surrogate) goes as the bytes ``surrogatepass`` makes: a BLOB never equals
    a TEXT, so it names no other user."""
    if user is None or user.isascii():
        return user
    try:
        user.encode("utf-8")
    except UnicodeEncodeError:
        return user.encode("utf-8", "surrogatepass")
    return user


def _object(items: dict[str, str]) -> str:
    """A JSON object of ``items``' keys and their (already JSON) values."""
    return "{" + ",".join(f"{_key(key)}:{text}" for key, text in items.items()) + "}"


def _record(rows: list[Any]) -> Record | None:
    """The record in ``rows`` (one row of _LOAD, or none)."""
    if not rows:
        return None
    data, created, previous, idle, deadline, persistent = rows[0]
    # float(): RETURNING gives the values before the columns' REAL affinity.
    return Record(
        _data(data),
        float(created),
        float(previous),
        float(idle),
        None if deadline is None else float(deadline),
        bool(persistent),
    )


def _sessions(rows: Iterable[Any]) -> list[tuple[str, Record]]:
    return [
        (sid, Record(_data(data), created, accessed, idle, deadline, bool(persistent)))
        for sid, data, created, accessed, idle, deadline, persistent in rows
    ]


def _data(text: str) -> dict[str, Any]:
    try:
        return {key: box[0] for key, box in _decode(text).items()}
    except (ValueError, TypeError, LookupError, AttributeError) as exc:
        # Not what this provider writes: edited by hand, or damaged.
        raise sqlite3.DatabaseError("a session row holds damaged data") from exc
