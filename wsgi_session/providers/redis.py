"""Sessions in Redis: one hash per session, expired by Redis itself."""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import weakref
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..manager import check_seconds
from ..provider import Provider

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster
    from redis.connection import ConnectionPool

# The hash field that holds the session's metadata: the absolute deadline
# (epoch seconds) or "" for none. Session keys are non-empty, so no user key
# can ever be this field; it also keeps a session whose data is empty alive.
META = ""

# Every script calls ttl(key, meta, now, idle): the key's TTL in
# milliseconds, that is min(idle, deadline - now) with the deadline (in meta,
# the metadata field's value) checked against the manager's clock; or nil if
# the key is not a live session (no metadata field: absent, or not ours). A
# session past its deadline is deleted there and then. Idle expiry itself is
# Redis's: a key nobody touches for `idle` is gone.
_TTL = """
local function ttl(key, meta, now, idle)
  if not meta then return nil end
  local deadline = tonumber(meta)
  if deadline then
    local left = math.floor((deadline - tonumber(now)) * 1000)
    if left < idle then idle = left end
  end
  if idle <= 0 then
    redis.call('DEL', key)
    return nil
  end
  return idle
end
"""

# KEYS[1] session; ARGV now, idle_ms. The session's data as one JSON object,
# or false. The stored values are JSON texts already, so the object is
# assembled here and the client decodes it in one call.
_LOAD = (
    _TTL
    + """
local k = KEYS[1]
local h = redis.call('HGETALL', k)
local meta
local out = {}
for i = 1, #h, 2 do
  if h[i] == '' then meta = h[i + 1]
  else out[#out + 1] = cjson.encode(h[i]) .. ':' .. h[i + 1] end
end
local t = ttl(k, meta, ARGV[1], tonumber(ARGV[2]))
if not t then return false end
redis.call('PEXPIRE', k, t)
return '{' .. table.concat(out, ',') .. '}'
"""
)

# The same, but the fields and values as stored (the metadata field
# included), for a rename across cluster slots.
_FIELDS = (
    _TTL
    + """
local k = KEYS[1]
local t = ttl(k, redis.call('HGET', k, ''), ARGV[1], tonumber(ARGV[2]))
if not t then return false end
redis.call('PEXPIRE', k, t)
return redis.call('HGETALL', k)
"""
)

# KEYS[1] session; ARGV now, idle_ms, n, n field/value pairs, fields to delete.
# 1 if saved, 0 if the session is not live: the existence check and the
# write are one atomic step, so a destroyed or expired session never returns.
_SAVE = (
    _TTL
    + """
local k = KEYS[1]
local t = ttl(k, redis.call('HGET', k, ''), ARGV[1], tonumber(ARGV[2]))
if not t then return 0 end
local last = 3 + 2 * tonumber(ARGV[3])
for i = 4, last, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
for i = last + 1, #ARGV do redis.call('HDEL', k, ARGV[i]) end
redis.call('PEXPIRE', k, t)
return 1
"""
)

# KEYS[1] session; ARGV ttl_ms, field/value pairs (the metadata field
# included). Stores a new session.
_WRITE = """
local k = KEYS[1]
for i = 2, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', k, ARGV[1])
return 1
"""

# KEYS old, new; ARGV now, idle_ms. 1 if moved, 0 if old is not live.
_RENAME = (
    _TTL
    + """
local old, new = KEYS[1], KEYS[2]
local t = ttl(old, redis.call('HGET', old, ''), ARGV[1], tonumber(ARGV[2]))
if not t then return 0 end
redis.call('RENAME', old, new)
redis.call('PEXPIRE', new, t)
return 1
"""
)


def _pack(*args: bytes) -> bytes:
    """One command in the Redis protocol (RESP), every argument bytes."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


class _Script:
    """A Lua script run with EVALSHA on ``keys`` keys."""

    __slots__ = ("source", "sha", "keys", "head", "load")

    def __init__(self, source: str, keys: int) -> None:
        self.source = source
        # Redis names scripts by their SHA-1.
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self.keys = keys
        # EVALSHA sha numkeys, packed once; the array length comes first.
        self.head = _pack(b"EVALSHA", self.sha.encode("ascii"), b"%d" % keys).split(b"\r\n", 1)[1]
        self.load = _pack(b"SCRIPT", b"LOAD", source.encode("utf-8"))

    def pack(self, keys_and_args: list[bytes]) -> bytes:
        """EVALSHA with these keys and arguments, ready to send."""
        parts = [b"*%d\r\n" % (3 + len(keys_and_args)), self.head]
        for a in keys_and_args:
            parts += (b"$%d\r\n" % len(a), a, b"\r\n")
        return b"".join(parts)


_LOAD_SCRIPT = _Script(_LOAD, 1)
# A load, the commonest command, packed with one format: key, now, idle_ms.
_LOAD_PACKED = b"*6\r\n" + _LOAD_SCRIPT.head.replace(b"%", b"%%") + b"$%d\r\n%b\r\n" * 3
_FIELDS_SCRIPT = _Script(_FIELDS, 1)
_SAVE_SCRIPT = _Script(_SAVE, 1)
_WRITE_SCRIPT = _Script(_WRITE, 1)
_RENAME_SCRIPT = _Script(_RENAME, 2)

# Bumped in a child process after a fork: a provider then drops the
# connections it inherited (compared per command; os.getpid() is a syscall).
_forks = [0]


def _after_fork() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

_EXTRA = "the Redis provider needs redis-py: pip install wsgi_session[redis]"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# json.dumps(value, separators=...) builds a new encoder per call; one will do.
_encode = json.JSONEncoder(separators=(",", ":")).encode
_decode_json = json.JSONDecoder().decode


def _fields(data: Mapping[str, Any], out: list[bytes]) -> None:
    """Append field, value, field, value, ... of ``data`` to ``out``, as stored."""
    for key, value in data.items():
        try:
            text = _encode(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"session value for key {key!r} cannot be stored as JSON: {exc}"
            ) from None
        # surrogatepass: a str key may hold lone surrogates; bytes round-trip them.
        out += (key.encode("utf-8", "surrogatepass"), text.encode("ascii"))


def _release(pool: ConnectionPool, idle: list[Any]) -> None:
    """Disconnect held connections and hand them back to their pool (both
    safe in a forked child: the pool ignores a parent's connection)."""
    while True:
        try:
            conn = idle.pop()
        except IndexError:  # the last one gone, maybe to another thread
            return
        conn.disconnect()
        pool.release(conn)


def _failed(operation: str, exc: Exception) -> ProviderError:
    # The key (it holds the id) is never in the message.
    return ProviderError(f"Redis {operation} failed: {exc}")


class RedisProvider(Provider):
    """Keeps each session in a Redis hash at ``prefix + sid``, values as JSON.

    ::

        SessionMiddleware(app, provider="redis",
                          provider_options={"url": "redis://127.0.0.1:6379/0"})
        SessionMiddleware(app, provider=RedisProvider(client=redis.Redis(...)))

    Give either ``url`` (a client is built with ``socket_timeout`` and
    ``socket_connect_timeout``, so a hung Redis cannot hang a worker) or a
    ready ``client``: a ``redis.Redis``, a Sentinel ``master_for(...)``
    client or a ``redis.cluster.RedisCluster``. Nothing connects before the
    first request.

    With a ``redis.Redis`` client (a Sentinel master's included) the provider
    keeps the connections it takes from the client's pool and sends its
    commands on them directly, which halves redis-py's cost per command: at
    most as many connections as requests ever ran at once (they count
    against the pool's ``max_connections`` until :meth:`close`). A command that
    fails on a connection Redis dropped (a restart) is sent once more on a
    fresh connection; a timeout is not retried; a connection that failed is
    reconnected before it is used again. A cluster client routes its own
    commands. :meth:`close` hands the connections back to the pool,
    disconnected, and closes the client only if it was built here.

    Each operation is one round trip (a Lua script): a load also slides the
    TTL; a save writes only the changed keys, and only if the session still
    exists; a rename is atomic (on a cluster, where both keys may be on
    different nodes, it writes the new key and then deletes the old one).
    Redis expires sessions, so :meth:`gc` has nothing to do. Every Redis
    failure raises :class:`~wsgi_session.ProviderError` with the cause chained.
    """

    #: The server used when neither ``url`` nor ``client`` is given.
    DEFAULT_URL = "redis://127.0.0.1:6379/0"
    #: Seconds to wait for a reply, and to connect, with a client built here.
    DEFAULT_SOCKET_TIMEOUT = 5.0
    DEFAULT_SOCKET_CONNECT_TIMEOUT = 2.0

    def __init__(
        self,
        url: str | None = None,
        prefix: str = "session:",
        client: Redis | RedisCluster | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.cluster import RedisCluster
            from redis.retry import Retry
        except ImportError as exc:
            raise ImportError(_EXTRA) from exc

        if type(prefix) is not str or not prefix:
            raise TypeError(f"prefix must be a non-empty str, not {prefix!r}")
        self.prefix = prefix
        if client is not None:
            if url is not None:
                raise ValueError("url: give url or client, not both")
            for option, value in (
                ("socket_timeout", socket_timeout),
                ("socket_connect_timeout", socket_connect_timeout),
            ):
                if value is not None:
                    raise ValueError(f"{option} is for a client built from url; set it on client")
            if not isinstance(client, (redis.Redis, RedisCluster)):
                raise TypeError(
                    "client must be a redis.Redis or redis.cluster.RedisCluster, "
                    f"not {type(client).__name__}"
                )
            self.client: Redis | RedisCluster = client
            self._owns_client = False
        else:
            if url is None:
                url = self.DEFAULT_URL
            if type(url) is not str:
                raise TypeError(f"url must be a str, not {url!r}")
            timeout = check_seconds(
                "socket_timeout",
                self.DEFAULT_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout,
            )
            connect_timeout = check_seconds(
                "socket_connect_timeout",
                self.DEFAULT_SOCKET_CONNECT_TIMEOUT
                if socket_connect_timeout is None
                else socket_connect_timeout,
            )
            try:
                self.client = redis.Redis.from_url(
                    url,
                    socket_timeout=timeout,
                    socket_connect_timeout=connect_timeout,
                    # One retry, at once, for a pooled connection Redis closed
                    # (a restart); none for a timeout, which would only
                    # multiply the wait.
                    retry=Retry(NoBackoff(), 1, (redis.ConnectionError,)),
                    retry_on_timeout=False,
                )
            except ValueError as exc:
                # Not the URL itself in the message: it may hold a password.
                raise ValueError(f"url is not a Redis URL: {exc}") from None
            self._owns_client = True
        self._cluster = isinstance(self.client, RedisCluster)
        self._errors: tuple[type[Exception], ...] = (
            redis.RedisError,
            redis.exceptions.RedisClusterException,
        )
        self._no_script = redis.exceptions.NoScriptError
        self._connection_error = redis.ConnectionError
        self._response_error = redis.ResponseError
        # A plain client (a Sentinel master's too): commands go straight to
        # connections this provider holds (see _command). A cluster client
        # routes every command itself.
        self._prefix = prefix.encode("utf-8")
        client = self.client
        if not isinstance(client, RedisCluster):
            pool: ConnectionPool = client.connection_pool
            self._pool = pool
            # The key prefix in the client's own encoding, as redis-py would.
            settings = pool.connection_kwargs
            self._prefix = prefix.encode(
                settings.get("encoding", "utf-8"), settings.get("encoding_errors", "strict")
            )
            # Before redis-py 5.3 get_connection() wants a command name; since,
            # passing one is deprecated.
            name = inspect.signature(pool.get_connection).parameters.get("command_name")
            self._name_needed = name is not None and name.default is inspect.Parameter.empty
        self._idle: list[Any] = []
        self._fork = _forks[0]
        if not self._cluster:
            # A provider dropped without close() still hands its connections back.
            weakref.finalize(self, _release, self._pool, self._idle)

    # -- the Redis calls ------------------------------------------------------------

    def _command(self, packed: bytes) -> Any:
        """Send one packed command and return its reply, on a held connection.

        Connections come from the client's pool and stay with the provider,
        idle ones on a stack (``list.pop`` and ``append`` are atomic), so a
        command costs no pool lock and no health-check poll; the stack holds
        at most as many connections as requests ever ran at once. A
        connection that failed mid-command is disconnected before it is
        reused (an error reply, read whole, leaves it in step), so it can
        never hold a stale reply. A command that met a connection Redis
        closed (a restart) is sent once more, freshly connected; a timeout is
        not retried.
        """
        chunks = (packed,)  # send_packed_command sends a sequence of chunks
        idle = self._idle
        if self._fork != _forks[0]:
            idle = self._forked()
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._connect()
        try:
            try:
                conn.send_packed_command(chunks)
                # Bytes whatever the client's decode_responses.
                return conn.read_response(disable_decoding=True)
            except self._connection_error:
                conn.disconnect()
                conn.send_packed_command(chunks)
                return conn.read_response(disable_decoding=True)
        except self._response_error:
            raise  # an error reply, read whole: the connection is in step
        except BaseException:
            conn.disconnect()  # whatever it was in the middle of is dropped
            raise
        finally:
            idle.append(conn)

    def _connect(self) -> Any:
        # The pool connects it (and checks it is ready).
        if self._name_needed:
            return self._pool.get_connection("EVALSHA")
        return self._pool.get_connection()

    def _forked(self) -> list[Any]:
        # A child process must not share its parent's sockets: start afresh
        # (the pool resets itself too). Dropping a connection object here
        # only closes the child's copy of the socket.
        self._idle.clear()
        self._fork = _forks[0]
        return self._idle

    def _eval(self, script: _Script, keys_and_args: list[bytes]) -> Any:
        """EVALSHA, loading the script first where the server lacks it
        (the first call, or after a restart or a SCRIPT FLUSH)."""
        if self._cluster:
            return self._cluster_eval(script, keys_and_args)
        return self._evalsha(script, script.pack(keys_and_args))

    def _evalsha(self, script: _Script, packed: bytes) -> Any:
        try:
            return self._command(packed)
        except self._no_script:
            self._command(script.load)
            return self._command(packed)

    def _cluster_eval(self, script: _Script, keys_and_args: list[bytes]) -> Any:
        try:
            return self.client.evalsha(script.sha, script.keys, *keys_and_args)
        except self._no_script:
            self.client.script_load(script.source)
            return self.client.evalsha(script.sha, script.keys, *keys_and_args)

    @contextmanager
    def _failures(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise _failed(operation, exc) from exc

    def _key(self, sid: str) -> bytes:
        return self._prefix + sid.encode("utf-8")

    @staticmethod
    def _decode(reply: bytes | str) -> dict[str, Any]:
        try:
            if isinstance(reply, bytes):
                # surrogatepass: field names are stored that way (see _fields).
                reply = reply.decode("utf-8", "surrogatepass")
            data = _decode_json(reply)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError too
            raise ProviderError("Redis load failed: a stored value is not JSON") from exc
        if type(data) is not dict:  # a stored value broke the object apart
            raise ProviderError("Redis load failed: a stored value is not JSON")
        return data

    # -- the provider ---------------------------------------------------------------

    def create(
        self, sid: str, data: Mapping[str, Any], now: float, idle: float, deadline: float | None
    ) -> None:
        args = [
            self._prefix + sid.encode("utf-8"),
            b"%d" % self._ttl(now, idle, deadline),
            b"",  # META
            b"" if deadline is None else b"%r" % deadline,
        ]
        _fields(data, args)
        try:
            self._eval(_WRITE_SCRIPT, args)
        except self._errors as exc:
            raise _failed("create", exc) from exc

    @staticmethod
    def _ttl(now: float, idle: float, deadline: float | None) -> int:
        if deadline is None:
            return _ms(idle)
        return _ms(min(idle, deadline - now))

    def load(self, sid: str, now: float, idle: float) -> dict[str, Any] | None:
        key = self._prefix + sid.encode("utf-8")
        at = b"%r" % now
        ms = b"%d" % _ms(idle)
        try:
            if self._cluster:
                reply = self._cluster_eval(_LOAD_SCRIPT, [key, at, ms])
            else:
                packed = _LOAD_PACKED % (len(key), key, len(at), at, len(ms), ms)
                reply = self._evalsha(_LOAD_SCRIPT, packed)
        except self._errors as exc:
            raise _failed("load", exc) from exc
        if reply is None:
            return None
        return self._decode(reply)

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        idle: float,
    ) -> bool:
        args = [
            self._prefix + sid.encode("utf-8"),
            b"%r" % now,
            b"%d" % _ms(idle),
            b"%d" % len(changed),
        ]
        _fields(changed, args)
        for key in removed:
            args.append(key.encode("utf-8", "surrogatepass"))
        try:
            return bool(self._eval(_SAVE_SCRIPT, args))
        except self._errors as exc:
            raise _failed("save", exc) from exc

    def rename(self, old: str, new: str, now: float, idle: float) -> bool:
        if self._cluster:
            return self._rename_across_slots(old, new, now, idle)
        with self._failures("rename"):
            args = [self._key(old), self._key(new), b"%r" % now, b"%d" % _ms(idle)]
            return bool(self._eval(_RENAME_SCRIPT, args))

    def _rename_across_slots(self, old: str, new: str, now: float, idle: float) -> bool:
        # The two keys may live on different nodes, so no single script can
        # see both: copy to the new key, then delete the old one.
        with self._failures("rename"):
            fields = self._eval(_FIELDS_SCRIPT, [self._key(old), b"%r" % now, b"%d" % _ms(idle)])
            if fields is None:
                return False
            deadline = None
            for i in range(0, len(fields), 2):
                if fields[i] in (b"", "") and fields[i + 1] not in (b"", ""):
                    deadline = float(fields[i + 1])
            ttl = b"%d" % self._ttl(now, idle, deadline)
            self._eval(_WRITE_SCRIPT, [self._key(new), ttl, *fields])
            self.client.delete(self._key(old))
        return True

    def destroy(self, sid: str) -> None:
        with self._failures("destroy"):
            if self._cluster:
                self.client.delete(self._key(sid))
            else:
                self._command(_pack(b"DEL", self._key(sid)))

    def __len__(self) -> int:
        """The number of keys under ``prefix``, counted with SCAN.

        Walks the whole keyspace: for monitoring now and then, not per request.
        """
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        with self._failures("SCAN"):
            return sum(1 for _ in self.client.scan_iter(match=pattern, count=1000))

    def close(self) -> None:
        """Disconnect the connections this provider holds (back to the
        client's pool), and close the client if this provider built it."""
        if not self._cluster:
            _release(self._pool, self._idle)
        if self._owns_client:
            self.client.close()
