"""Sessions in PostgreSQL: one row per session, the data a jsonb object."""

from __future__ import annotations

import os
import re
import select
import threading
import weakref
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from json import JSONEncoder
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from .. import options
from ..errors import ProviderError
from ..provider import UNCHANGED, Provider, Record
from ..values import decode, encode

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

_EXTRA = "the PostgreSQL provider needs psycopg 3: pip install wsgi_session[postgres]"

# Lower case only, so the quoted name means what the unquoted one would.
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

# The data column holds {key: encoded value}: each value as values.encode's
# text in a jsonb *string*, so it comes back exactly (jsonb would make
# 1e300 an int, and refuses NUL and lone surrogates, which the codec
# escapes inside the string).
_SCHEMA = """\
CREATE TABLE IF NOT EXISTS {table} (
    sid        text PRIMARY KEY,
    data       jsonb NOT NULL DEFAULT '{{}}',
    created    double precision NOT NULL,
    accessed   double precision NOT NULL,
    idle       double precision NOT NULL,
    deadline   double precision,
    persistent boolean NOT NULL DEFAULT false,
    username   text,
    -- expires(accessed, idle, deadline): LEAST ignores a NULL deadline.
    expires    double precision NOT NULL
               GENERATED ALWAYS AS (LEAST(accessed + idle, deadline)) STORED
);
CREATE INDEX IF NOT EXISTS {expires_index} ON {table} (expires);
CREATE INDEX IF NOT EXISTS {user_index} ON {table} (username) WHERE username IS NOT NULL;
"""

# Times are the manager's clock (passed in), never the server's now().
# A session is live while expires > now.
_COLUMNS = "data, created, accessed, idle, deadline, persistent"

# Appended to a write that may commit without waiting for the WAL to reach
# the disk (synchronous_commit off for this statement's transaction alone:
# RETURNING runs before the commit, and only when a row was written). A
# server crash may then lose it; it can never bring back a session, since a
# later destroy or rename waits for the disk, and with it for everything
# written before.
_NO_WAIT = "set_config('synchronous_commit', 'off', true)"

_CREATE = (
    "INSERT INTO {table} (sid, data, created, accessed, idle, deadline, persistent, username)"
    " VALUES (%s, %s::jsonb, %s, %s, %s, %s, %s, %s){returning}"
)
# Record.accessed is the access before this one, so the row is read (and
# locked: a concurrent write then waits, and this sees its result) in the
# same statement that moves `accessed` on. The access time is all a load
# writes, so it never waits for the disk: a crash could only move a
# session's access back, making it expire sooner.
_LOAD = (
    "WITH old AS (SELECT sid, accessed FROM {table}"
    " WHERE sid = %(sid)s AND expires > %(now)s FOR NO KEY UPDATE)"
    " UPDATE {table} AS s SET accessed = %(now)s FROM old WHERE s.sid = old.sid"
    " RETURNING s.data, s.created, old.accessed, s.idle, s.deadline, s.persistent, " + _NO_WAIT
)
# The merge runs on the row as it is when this statement gets its lock, so
# concurrent saves of different keys all keep their writes. (`-` binds
# tighter than `||`: the parentheses are needed.)
_SAVE = (
    "UPDATE {table} SET data = (data - %(removed)s::text[]) || %(changed)s::jsonb,"
    " accessed = %(now)s{extra} WHERE sid = %(sid)s AND expires > %(now)s{returning}"
)
_SET_LIFETIME = ", idle = %(idle)s, persistent = %(persistent)s"
_SET_USER = ", username = %(user)s"
# One statement: exactly one of old and new is live afterwards.
_RENAME = "UPDATE {table} SET sid = %s WHERE sid = %s AND expires > %s"
_DESTROY = "DELETE FROM {table} WHERE sid = %s"
_SESSIONS_OF = f"SELECT sid, {_COLUMNS} FROM {{table}} WHERE username = %s AND expires > %s"
# A bounded batch; rows locked by a request are left for the next sweep.
_GC = (
    "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE expires <= %(now)s"
    " LIMIT %(batch)s FOR UPDATE SKIP LOCKED) AND expires <= %(now)s"
)
_COUNT = "SELECT count(*) FROM {table}"

# json.dumps builds a new encoder per call; the values are str already.
# Keys and encoded values are valid UTF-8 without NUL: no escaping needed.
_encode_object = JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE


def _failed(operation: str, exc: Exception) -> ProviderError:
    # The server's primary message only: its DETAIL may quote a key (a storage
    # key holds the id), and neither ids nor contents go into messages.
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    reason = primary or str(exc).split("\n", 1)[0] or type(exc).__name__
    return ProviderError(f"PostgreSQL {operation} failed: {reason}")


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _close_all(idle: list[Any], pid: int) -> None:
    """Close held connections, only in the process that opened them (in a
    forked child, closing would end the parent's session on the server)."""
    if os.getpid() != pid:
        return
    while idle:
        try:
            conn = idle.pop()
        except IndexError:  # another thread took the last one
            return
        conn.close()


class PostgresProvider(Provider):
    """Keeps each session in a row of a PostgreSQL table, values in a jsonb column.

    ::

        SessionMiddleware(app, provider="postgres",
                          provider_options={"dsn": "postgresql://app@db/app"})
        SessionMiddleware(app, provider=PostgresProvider(pool=pool))

    **When to choose it:** sessions shared by every worker on every host and
    kept across restarts and deploys, in the PostgreSQL the application
    already runs, without adding a Redis. **What it costs:** one round trip
    per call. A load locks and updates its row (a load is an access), but
    never waits for the disk: a crash could only move an access time back.
    A save or create waits for the write-ahead log to reach the disk, as
    any commit does, unless ``durable_saves=False``; destroy and rename
    always wait, so a crash never brings back a session that was logged
    out, revoked or renamed at log in. Measured on a shared 2-CPU VM
    against a local server (bench/README_stores.md): a load 0.3 ms, a load
    and a save 1.2 ms (0.25 ms of it this process's CPU: about 4x Redis's
    CPU, 8x its time, mostly the disk's flush); 0.55 ms with
    ``durable_saves=False``. **How it expires:** every statement
    checks ``expires > now`` (``expires`` is a generated, indexed column,
    ``min(accessed + idle, deadline)``), so a dead session is never read,
    listed or written; :meth:`gc` deletes dead rows ``gc_batch`` at a time,
    skipping rows a request holds.

    Give ``dsn`` (a libpq connection string or URI; ``connect_timeout`` is
    5 s unless it sets its own; ``options=-c statement_timeout=5s`` bounds
    a query) or a ready ``pool``
    (a :class:`psycopg_pool.ConnectionPool`, used as it is; its
    connections are switched to autocommit while borrowed). Nothing
    connects before the first call. With ``dsn`` the provider holds its own
    connections, opened in the process that uses them (a forked child
    never touches its parent's), as many as calls ever ran at once; one the
    server closed (a restart, a crash) is noticed by a poll, without a
    round trip, and replaced. A pool is the application's: it must be made
    in the process that uses it, not before a fork.

    ``table`` (lower-case, optionally ``schema.table``) is created with its
    indexes on first use, unless ``create_schema=False``: then a DBA runs
    :meth:`schema_sql` beforehand. Every PostgreSQL failure raises
    :class:`~wsgi_session.ProviderError` with the cause chained (no ids in
    the message); a connection that failed is dropped, and the next call
    connects afresh. ``durable_saves=False`` commits saves and creates
    without waiting for the disk (``synchronous_commit`` off for those
    statements only): much faster where fsync is slow, at the price of the
    last moments of session writes if the server crashes.
    """

    DEFAULT_TABLE = "wsgi_sessions"
    #: Seconds to wait for a connection, unless ``dsn`` sets connect_timeout.
    DEFAULT_CONNECT_TIMEOUT = 5
    #: Dead sessions removed per statement by :meth:`gc`.
    DEFAULT_GC_BATCH = 1000

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: ConnectionPool[Any] | None = None,
        table: str = DEFAULT_TABLE,
        create_schema: bool = True,
        durable_saves: bool = True,
        gc_batch: int = DEFAULT_GC_BATCH,
    ) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError as exc:
            raise ImportError(_EXTRA) from exc

        self._quoted = self._quote(table)
        self.table = table
        self.create_schema = options.boolean("create_schema", create_schema)
        self.durable_saves = options.boolean("durable_saves", durable_saves)
        self.gc_batch = options.positive_int("gc_batch", gc_batch)
        self._pool = None
        self._connect_args: dict[str, Any] = {}
        if pool is not None:
            if dsn is not None:
                raise ValueError("dsn: give dsn or pool, not both")
            try:
                from psycopg_pool import ConnectionPool
            except ImportError as exc:  # a pool without psycopg_pool: not a pool
                raise TypeError("pool must be a psycopg_pool.ConnectionPool") from exc
            self._pool = options.instance("pool", pool, ConnectionPool)
        else:
            if dsn is None:
                raise ValueError("dsn: give dsn (a PostgreSQL connection string) or pool")
            options.text("dsn", dsn)
            try:
                given = conninfo_to_dict(dsn)
            except psycopg.Error:
                # Not libpq's message: it may quote the dsn, password and all.
                raise ValueError("dsn is not a PostgreSQL connection string or URI") from None
            self._connect_args = {"conninfo": dsn, "autocommit": True}
            if "connect_timeout" not in given:
                self._connect_args["connect_timeout"] = self.DEFAULT_CONNECT_TIMEOUT
        self._psycopg = psycopg
        self._errors = (psycopg.Error,)
        returning = "" if self.durable_saves else " RETURNING " + _NO_WAIT
        self._sql = {
            name: query.format(table=self._quoted, returning=returning)
            for name, query in (
                ("create", _CREATE), ("load", _LOAD), ("rename", _RENAME),
                ("destroy", _DESTROY), ("sessions_of", _SESSIONS_OF), ("gc", _GC),
                ("count", _COUNT),
            )
        }  # fmt: skip
        self._saves = {
            (lifetime, user): _SAVE.format(
                table=self._quoted,
                extra=(_SET_LIFETIME if lifetime else "") + (_SET_USER if user else ""),
                returning=returning,
            )
            for lifetime in (False, True)
            for user in (False, True)
        }
        self._pid = os.getpid()
        # Idle held connections: list.pop and append are atomic, so taking
        # one costs no lock.
        self._idle: list[Connection[Any]] = []
        self._schema_ready = not self.create_schema
        self._schema_lock = threading.Lock()
        # A provider dropped without close() still closes its connections.
        self._finalizer = weakref.finalize(self, _close_all, self._idle, self._pid)

    # -- the schema ---------------------------------------------------------------

    @staticmethod
    def _quote(table: object) -> str:
        name = options.text("table", table)
        parts = name.split(".")
        if len(parts) > 2 or not all(_NAME.fullmatch(part) for part in parts):
            raise ValueError(
                "table must be a lower-case SQL name (letters, digits, _; at most "
                f"48 characters), optionally schema.table, not {name!r:.60}"
            )
        return ".".join(f'"{part}"' for part in parts)

    @classmethod
    def schema_sql(cls, table: str = DEFAULT_TABLE) -> str:
        """The SQL that creates ``table`` and its indexes (idempotent), for a
        DBA to run or a migration to hold; :meth:`ensure_schema` runs it."""
        quoted = cls._quote(table)
        base = table.rsplit(".", 1)[-1]
        return _SCHEMA.format(
            table=quoted,
            expires_index=f'"{base}_expires_idx"',
            user_index=f'"{base}_username_idx"',
        )

    def ensure_schema(self) -> None:
        """Create the table and its indexes if the table is missing.

        Run on first use in each process (unless ``create_schema=False``).
        An existing table is only looked up: CREATE INDEX, even IF NOT
        EXISTS, would lock the table against writes. Many processes may
        start at once, and concurrent CREATE ... IF NOT EXISTS can still
        collide, so the statements run in one transaction under an advisory
        lock named for the table.
        """
        if os.getpid() != self._pid:
            self._forked()
        with self._raw_connection("schema creation") as conn:
            row = conn.execute("SELECT to_regclass(%s)", (self._quoted,)).fetchone()
            if row is None or row[0] is None:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._quoted,))
                    conn.execute(self.schema_sql(self.table))  # several statements
        self._schema_ready = True

    # -- connections --------------------------------------------------------------

    @contextmanager
    def _connection(self, operation: str) -> Iterator[Connection[Any]]:
        """A connection for one operation, the schema made on first use;
        PostgreSQL errors become ProviderError."""
        if os.getpid() != self._pid:
            self._forked()
        if not self._schema_ready:
            with self._schema_lock:
                if not self._schema_ready:
                    self.ensure_schema()
        with self._raw_connection(operation) as conn:
            yield conn

    @contextmanager
    def _raw_connection(self, operation: str) -> Iterator[Connection[Any]]:
        if self._pool is not None:
            with self._pooled(operation) as conn:
                yield conn
            return
        conn = self._take(operation)
        try:
            yield conn
        except self._errors as exc:
            # A connection that failed may be mid-protocol or gone: never
            # reused. An error reply leaves it idle and in step: kept.
            if conn.closed or conn.info.transaction_status != _IDLE:
                conn.close()
            else:
                self._idle.append(conn)
            raise _failed(operation, exc) from exc
        except BaseException:
            conn.close()
            raise
        self._idle.append(conn)

    def _take(self, operation: str) -> Connection[Any]:
        idle = self._idle
        while True:
            try:
                conn = idle.pop()
            except IndexError:
                break
            # An idle connection has nothing to read: if it has, the server
            # said goodbye (a restart, a crash, an administrator's kill) or
            # hung up. One poll finds it without a round trip.
            if not conn.closed and not _readable(conn.fileno()):
                return conn
            conn.close()
        try:
            return self._psycopg.connect(**self._connect_args)
        except self._errors as exc:
            raise _failed(operation, exc) from exc

    @contextmanager
    def _pooled(self, operation: str) -> Iterator[Connection[Any]]:
        assert self._pool is not None
        try:
            with self._pool.connection() as conn:
                autocommit = conn.autocommit
                if not autocommit:  # client-side: BEGIN/COMMIT would cost round trips
                    conn.autocommit = True
                try:
                    yield conn
                finally:
                    if not autocommit and not conn.closed:
                        conn.autocommit = False
        except self._errors as exc:  # PoolTimeout and PoolClosed too
            raise _failed(operation, exc) from exc

    def _forked(self) -> None:
        """In a forked child: forget the parent's connections, unclosed."""
        if self._pool is not None:
            raise ProviderError(
                "pool: this ConnectionPool was made before a fork; make the pool "
                "in each worker process, or give dsn"
            )
        # Kept referenced, never closed nor collected here: closing would end
        # the parent's sessions, and collecting would warn.
        _orphans.append(self._idle[:])
        self._idle.clear()
        self._pid = os.getpid()
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _close_all, self._idle, self._pid)

    # -- the provider -------------------------------------------------------------

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
        params = (sid, _encode_data(data), now, now, idle, deadline, persistent, user)
        with self._connection("create") as conn:
            conn.execute(self._sql["create"], params)

    def load(self, sid: str, now: float) -> Record | None:
        with self._connection("load") as conn:
            row = conn.execute(self._sql["load"], {"sid": sid, "now": now}).fetchone()
        return None if row is None else _record(row[:6])

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
        params: dict[str, Any] = {
            "sid": sid,
            "now": now,
            "changed": _encode_data(changed),
            "removed": list(removed),
        }
        if lifetime is not None:
            params["idle"], params["persistent"] = lifetime
        if user is not UNCHANGED:
            params["user"] = user
        query = self._saves[lifetime is not None, user is not UNCHANGED]
        with self._connection("save") as conn:
            return conn.execute(query, params).rowcount == 1

    def rename(self, old: str, new: str, now: float) -> bool:
        with self._connection("rename") as conn:
            return conn.execute(self._sql["rename"], (new, old, now)).rowcount == 1

    def destroy(self, sid: str) -> None:
        with self._connection("destroy") as conn:
            conn.execute(self._sql["destroy"], (sid,))

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        with self._connection("sessions_of") as conn:
            rows = conn.execute(self._sql["sessions_of"], (user, now)).fetchall()
        return [(row[0], _record(row[1:])) for row in rows]

    def gc(self, now: float) -> int:
        """Delete dead sessions, ``gc_batch`` rows per statement (each its own
        transaction), until a batch comes back short."""
        removed = 0
        params = {"now": now, "batch": self.gc_batch}
        while True:
            with self._connection("gc") as conn:
                n = conn.execute(self._sql["gc"], params).rowcount
            removed += n
            if n < self.gc_batch:
                return removed

    def count(self) -> int:
        """Rows in the table, dead ones not yet collected included. Counts
        them all: for monitoring now and then, not per request."""
        with self._connection("count") as conn:
            row = conn.execute(self._sql["count"]).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        """Close the connections this provider opened (a given pool is left
        open: it is the application's). The next call connects again."""
        if os.getpid() == self._pid:
            _close_all(self._idle, self._pid)


# Connections inherited across a fork: see PostgresProvider._forked.
_orphans: list[list[Any]] = []


def _encode_data(data: Mapping[str, Any]) -> str:
    """``data`` as the text of a jsonb object of encoded values."""
    return _encode_object({key: encode(value) for key, value in data.items()})


def _record(row: Any) -> Record:
    data, created, accessed, idle, deadline, persistent = row
    try:
        values = {key: decode(text) for key, text in data.items()}
    except (AttributeError, TypeError, ValueError) as exc:
        raise ProviderError("PostgreSQL load failed: a stored value is not valid") from exc
    return Record(values, created, accessed, idle, deadline, persistent)
