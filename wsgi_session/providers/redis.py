"""Sessions in Redis: one hash per session, expired by Redis itself."""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from .. import options, values
from ..errors import ProviderError
from ..provider import UNCHANGED, Provider, Record

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster
    from redis.connection import ConnectionPool

# A session's hash holds its data (one field per key, the value as
# values.encode text) and two reserved fields that no session key can be
# (keys are non-empty and hold no NUL):
#
# - META = "": "idle deadline persistent created[ user]": idle and created
#   as decimal numbers, deadline likewise or "-" for none, persistent "0" or
#   "1", and the user (any text) after a fourth space if there is one;
# - ACCESSED = "\0": the last access, a decimal number; apart so that an
#   access rewrites only a number.
#
# Numbers are written with 17 significant digits ("%.17g"; before 0.3, as
# reprs): either text reads back as the same float.
#
# Liveness is judged on the manager's clock (the `now` every call passes):
# dead once now >= min(accessed + idle, deadline). Redis's own TTL,
# min(idle, deadline - now) from the last access, removes what nobody
# touches. Numbers are compared in Lua but never turned back into text
# there (Lua's tostring keeps 14 digits): stored texts are the caller's.
#
# The user index: a set per user at `prefix + "user:" + user` whose members
# are the sessions' Redis keys (a sid is URL-safe, never holds ":", so no
# session key can be an index key). On one node the scripts below keep it
# with the session: created, moved, emptied in the same step. Its TTL is
# stretched to twice the session's whenever it would otherwise end first,
# so an index outlives its sessions and then vanishes (on a cluster, see
# the class docstring). Members whose session has gone (expired in Redis,
# given to another user) are skipped and removed when the index is read.
META = b""
ACCESSED = b"\x00"

# Lua functions, each script taking only those it calls (a function is
# made anew on every call of a script).
_CHECK = """
-- The TTL in ms of the session (its META and ACCESSED fields, false if
-- absent) accessed at now, and its user (false for none); false if it is
-- not live at now. A dead one is deleted there and then, with its index
-- entry (ix: the index key prefix, '' where the index is not kept here).
-- One match parses the metadata: with a second one for the user, the
-- load script took 5.9 us inside Redis, against 5.4 now.
local function check(k, meta, accessed, now, ix)
  if not meta or not accessed then return false end
  local idle, deadline, rest = string.match(meta, '^(%S+) (%S+) %S+ %S+(.*)$')
  idle, deadline = tonumber(idle), tonumber(deadline)
  local ends = tonumber(accessed) + idle
  if deadline then
    if deadline < ends then ends = deadline end
    if deadline - now < idle then idle = deadline - now end
  end
  local user = rest ~= '' and string.sub(rest, 2)
  if now < ends then return math.ceil(idle * 1000), user end
  redis.call('DEL', k)
  if user and ix ~= '' then redis.call('SREM', ix .. user, k) end
  return false
end
"""

# Keep k in the index at key ix (add it if add), and the index alive at
# least t ms: an index that would die first (or is gone: an eviction, a
# FLUSH) gets k again and twice t, so most accesses cost one PTTL here.
_INDEX = """
local function index(ix, k, t, add)
  if add then redis.call('SADD', ix, k) end
  if redis.call('PTTL', ix) < t then
    if not add then redis.call('SADD', ix, k) end
    redis.call('PEXPIRE', ix, 2 * t)
  end
end
"""

# HSET k to the field/value pairs ARGV[first..last], in chunks that Lua's
# stack can take (one HSET for any session of fewer than 500 keys).
_HSET = """
local function hset(k, first, last)
  for i = first, last, 998 do
    redis.call('HSET', k, unpack(ARGV, i, math.min(i + 997, last)))
  end
end
"""

# KEYS session; ARGV now, ix. "accessed\\n{data as JSON}\\nmeta" with the
# access before this one, or false. The stored values are JSON texts
# already, so the object is assembled here and decoded in one call; JSON
# holds no raw newline, and the meta (which may) comes last.
_LOAD = (
    _CHECK
    + _INDEX
    + """
local k, now, ix = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local h = redis.call('HGETALL', k)
local meta, accessed
local out, n = {}, 0
for i = 1, #h, 2 do
  local f = h[i]
  if f == '' then meta = h[i + 1]
  elseif f == '\\0' then accessed = h[i + 1]
  else n = n + 1 out[n] = cjson.encode(f) .. ':' .. h[i + 1] end
end
local t, u = check(k, meta, accessed, now, ix)
if not t then return false end
redis.call('HSET', k, '\\0', ARGV[1])
redis.call('PEXPIRE', k, t)
if u and ix ~= '' then index(ix .. u, k, t, false) end
return accessed .. '\\n{' .. table.concat(out, ',') .. '}\\n' .. meta
"""
)

# KEYS session; ARGV now, ix, n, idle, persistent, user?, user, then n
# field/value pairs (ACCESSED and now first), then the fields to delete.
# idle and persistent are '' to keep the session's; user? is '' to keep
# its user, '0' for none, '1' for ARGV[7]. 1 if saved, 0 if the session
# is not live: the check and the write are one step, so a destroyed or
# expired session never returns.
_SAVE = (
    _CHECK
    + _INDEX
    + _HSET
    + """
local k, now, ix = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local m = redis.call('HMGET', k, '', '\\0')
local meta = m[1]
local t, old = check(k, meta, m[2], now, ix)
if not t then return 0 end
local user = old
if ARGV[4] ~= '' or ARGV[6] ~= '' then
  local idle, deadline, persistent, created = string.match(meta, '^(%S+) (%S+) (%S+) (%S+)')
  if ARGV[4] ~= '' then
    idle, persistent = ARGV[4], ARGV[5]
    local left = tonumber(idle)
    local d = tonumber(deadline)
    if d and d - now < left then left = d - now end
    t = math.ceil(left * 1000)
  end
  if ARGV[6] == '0' then user = false elseif ARGV[6] == '1' then user = ARGV[7] end
  meta = idle .. ' ' .. deadline .. ' ' .. persistent .. ' ' .. created
  if user then meta = meta .. ' ' .. user end
  redis.call('HSET', k, '', meta)
  if ix ~= '' and old and old ~= user then redis.call('SREM', ix .. old, k) end
end
local first = 8 + 2 * tonumber(ARGV[3])
hset(k, 8, first - 1)
for i = first, #ARGV do redis.call('HDEL', k, ARGV[i]) end
redis.call('PEXPIRE', k, t)
if ix ~= '' and user then index(ix .. user, k, t, user ~= old) end
return 1
"""
)

# KEYS session (not in the store); ARGV ttl_ms, index key or '', then
# field/value pairs (the reserved fields included). Stores a whole session:
# a new one, or a copy.
_WRITE = (
    _INDEX
    + _HSET
    + """
local k, t = KEYS[1], tonumber(ARGV[1])
hset(k, 3, #ARGV)
redis.call('PEXPIRE', k, t)
if ARGV[2] ~= '' then index(ARGV[2], k, t, true) end
return 1
"""
)

# KEYS old, new; ARGV now, ix. 1 if moved, 0 if old is not live. RENAME
# keeps the TTL, and the session keeps its last access.
_RENAME = (
    _CHECK
    + """
local old, new, now, ix = KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2]
local m = redis.call('HMGET', old, '', '\\0')
local t, u = check(old, m[1], m[2], now, ix)
if not t then return 0 end
redis.call('RENAME', old, new)
if u and ix ~= '' then
  redis.call('SREM', ix .. u, old)
  redis.call('SADD', ix .. u, new)
end
return 1
"""
)

# KEYS session; ARGV ix. Deletes the session and its index entry; returns
# its user (for a cluster, where the index is elsewhere), or false.
_DESTROY = """
local k, ix = KEYS[1], ARGV[1]
local meta = redis.call('HGET', k, '')
redis.call('DEL', k)
local u = meta and string.match(meta, '^%S+ %S+ %S+ %S+ (.*)$')
if not u then return false end
if ix ~= '' then redis.call('SREM', ix .. u, k) end
return u
"""

# KEYS index; ARGV now, user, ix. key, accessed, meta for each live session
# of the user; other members are removed from the index (and dead
# sessions from the store).
_SESSIONS_OF = (
    _CHECK
    + """
local index_key, now, user, ix = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
for _, k in ipairs(redis.call('SMEMBERS', index_key)) do
  local m = redis.call('HMGET', k, '', '\\0')
  local t, u = check(k, m[1], m[2], now, ix)
  if t and u == user then
    out[#out + 1] = k
    out[#out + 1] = m[2]
    out[#out + 1] = m[1]
  else
    redis.call('SREM', index_key, k)
  end
end
return out
"""
)

# KEYS session; ARGV now. {meta, accessed} of a live session, not an
# access; or false. For a cluster's sessions_of and rename.
_PEEK = (
    _CHECK
    + """
local k, now = KEYS[1], tonumber(ARGV[1])
local m = redis.call('HMGET', k, '', '\\0')
if not check(k, m[1], m[2], now, '') then return false end
return m
"""
)

# KEYS session; ARGV now. {pttl, fields and values} of a live session, not
# an access; or false. The first half of a rename across cluster slots.
_COPY = (
    _CHECK
    + """
local k, now = KEYS[1], tonumber(ARGV[1])
local m = redis.call('HMGET', k, '', '\\0')
if not check(k, m[1], m[2], now, '') then return false end
return {redis.call('PTTL', k), redis.call('HGETALL', k)}
"""
)

# KEYS session; ARGV now, then the field/value pairs _COPY returned, less
# ACCESSED. The second half: deletes the session and returns 1 if it is
# still live and as copied (an access in between changes nothing that
# matters); 0 if it is not live; -1, keeping it, if a write changed it.
_DROP = (
    _CHECK
    + """
local k, now = KEYS[1], tonumber(ARGV[1])
local m = redis.call('HMGET', k, '', '\\0')
if not check(k, m[1], m[2], now, '') then return 0 end
if redis.call('HLEN', k) ~= (#ARGV - 1) / 2 + 1 then return -1 end
for i = 2, #ARGV, 2 do
  if redis.call('HGET', k, ARGV[i]) ~= ARGV[i + 1] then return -1 end
end
redis.call('DEL', k)
return 1
"""
)

# KEYS index; ARGV member. A cluster's index entry (the index sits in
# another slot than the session, so it is written before the session).
_ADD = "redis.call('SADD', KEYS[1], ARGV[1]) return 1"


def _pack(*args: bytes) -> bytes:
    """One command in the Redis protocol (RESP), every argument bytes."""
    return b"*%d\r\n" % len(args) + _bulks(args)


def _bulks(args: Iterable[bytes]) -> bytes:
    """Arguments in the Redis protocol: bulk strings, one after another."""
    return b"".join([b"$%d\r\n%b\r\n" % (len(a), a) for a in args])


class _Script:
    """A Lua script run with EVALSHA on ``keys`` keys; ``simple`` if it
    replies with a bulk string, an integer or nil (never an array)."""

    __slots__ = ("source", "sha", "keys", "simple", "head", "load")

    def __init__(self, source: str, keys: int, simple: bool = True) -> None:
        self.source = source
        self.simple = simple
        # Redis names scripts by their SHA-1.
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        self.keys = keys
        # EVALSHA sha numkeys, packed once; the array length comes first.
        self.head = _pack(b"EVALSHA", self.sha.encode("ascii"), b"%d" % keys).split(b"\r\n", 1)[1]
        self.load = _pack(b"SCRIPT", b"LOAD", source.encode("utf-8"))

    def pack(self, keys_and_args: list[bytes]) -> bytes:
        """EVALSHA with these keys and arguments, ready to send."""
        return b"*%d\r\n%b%b" % (3 + len(keys_and_args), self.head, _bulks(keys_and_args))

    def template(self, *args: bytes | None) -> bytes:
        """A format that packs EVALSHA like :meth:`pack`, with one
        ``%``-operation: the arguments are ``args`` (None for one given
        then, as its length and itself), then any more, packed by _bulks;
        the first value given is the number of arguments in all plus 3.

        A save packed so (ten fixed arguments in one format, the fields
        after) took 1.3-1.8 us against 2.7-4.2 argument by argument here.
        """
        parts = [b"*%d\r\n", self.head.replace(b"%", b"%%")]
        for a in args:
            parts.append(b"$%d\r\n%b\r\n" if a is None else _bulks([a]).replace(b"%", b"%%"))
        return b"".join(parts) + b"%b"


_LOAD_SCRIPT = _Script(_LOAD, 1)
_SAVE_SCRIPT = _Script(_SAVE, 1)
_WRITE_SCRIPT = _Script(_WRITE, 1)
_RENAME_SCRIPT = _Script(_RENAME, 2)
_DESTROY_SCRIPT = _Script(_DESTROY, 1)
_SESSIONS_OF_SCRIPT = _Script(_SESSIONS_OF, 1, simple=False)
_PEEK_SCRIPT = _Script(_PEEK, 1, simple=False)
_COPY_SCRIPT = _Script(_COPY, 1, simple=False)
_DROP_SCRIPT = _Script(_DROP, 1)
_ADD_SCRIPT = _Script(_ADD, 1)

_EXTRA = "the Redis provider needs redis-py: pip install wsgi_session[redis]"
_NOT_JSON = "Redis load failed: a stored value is not JSON"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _float(value: float) -> bytes:
    # 17 significant digits read back as the same number, as repr's shortest
    # text does, at two thirds of its cost (0.5 against 0.8 us here); the
    # hot paths write the same format in place.
    return b"%.17g" % value


def _user(user: str) -> bytes:
    # surrogatepass: a user id is any str, lone surrogates included.
    return user.encode("utf-8", "surrogatepass")


def _meta(
    idle: float, deadline: float | None, persistent: bool, created: bytes, user: str | None
) -> bytes:
    meta = b"%.17g %b %d %b" % (
        idle,
        b"-" if deadline is None else _float(deadline),
        persistent,
        created,
    )
    return meta if user is None else meta + b" " + _user(user)


def _record(data: dict[str, Any], accessed: bytes, meta: bytes) -> Record:
    """The record of a session from its ACCESSED and META fields."""
    try:
        idle, deadline, persistent, created = meta.split(b" ", 4)[:4]
        # tuple.__new__: the NamedTuple's own __new__ is a Python call (0.3 us).
        return _new_record(
            Record,
            (
                data,
                float(created),
                float(accessed),
                float(idle),
                None if deadline == b"-" else float(deadline),
                persistent == b"1",
            ),
        )
    except ValueError as exc:
        raise ProviderError("Redis load failed: a session's metadata is corrupt") from exc


_new_record = tuple.__new__


def _owner(meta: bytes) -> str | None:
    parts = meta.split(b" ", 4)
    return parts[4].decode("utf-8", "surrogatepass") if len(parts) == 5 else None


def _fields(data: Mapping[str, Any], out: list[bytes]) -> None:
    """Append field, value, field, value, ... of ``data`` to ``out``, as stored."""
    encode = values.encode
    for key, value in data.items():
        out += (key.encode("utf-8"), encode(value).encode("utf-8"))


def _bytes(reply: Any) -> Any:
    """A reply with str made bytes again (a cluster client may decode)."""
    if isinstance(reply, str):
        return reply.encode("utf-8", "surrogatepass")
    if isinstance(reply, list):
        return [_bytes(r) for r in reply]
    return reply


def _redis_py_talk(conn: Any, packed: bytes) -> Any:
    """Send ``packed`` and read the reply with redis-py (bytes, whatever
    the client's decode_responses)."""
    conn.send_packed_command((packed,))  # a sequence of chunks
    return conn.read_response(disable_decoding=True)


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


def _hash_tag(prefix: str) -> bool:
    """Whether every key under ``prefix`` hashes to one cluster slot."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 2) > start


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
    commands on them directly, which halves redis-py's cost per command,
    and on a connection speaking RESP2 (a client built from ``url`` asks for
    it; pass ``protocol=2`` to your own) reads the replies itself: at
    most as many connections as requests ever ran at once (they count
    against the pool's ``max_connections`` until :meth:`close`). A command that
    fails on a connection Redis dropped (a restart) is sent once more on a
    fresh connection; a timeout is not retried; a connection that failed is
    reconnected before it is used again. Every command first compares
    ``os.getpid()``: a forked child never uses its parent's sockets, whether
    or not the server ran at-fork hooks. A cluster client routes its own
    commands. :meth:`close` hands the connections back to the pool,
    disconnected, and closes the client only if it was built here.

    Each operation is one round trip (a Lua script): a load also slides the
    TTL by the session's own idle timeout; a save writes only the changed
    keys, and only if the session is live; a rename is atomic; the user
    index (a set per user, ``prefix + "user:" + user``) is kept in the same
    scripts. Redis expires sessions, so :meth:`gc` has nothing to do.

    On a cluster, a session's key and its user's index usually sit in
    different slots, so no script sees both. There the index is written
    *before* the session (creating with a user or changing it costs a
    second round trip), so it always lists at least every live session;
    it has no TTL, and entries whose session has gone are removed when
    :meth:`sessions_of` reads it (one round trip per entry there) or the
    session is destroyed. A rename
    copies the session to the new key, then deletes the old one only if it
    is still live and unchanged (a script on the old key's node); if a
    destroy came in between, the copy is deleted again and the rename
    reports False; if a save did, the copy is made again. A prefix with a
    hash tag (``"{sessions}:"``) puts every key in one slot: then the
    cluster is treated as one node (and carries every session on one
    shard).

    Every Redis failure raises :class:`~wsgi_session.ProviderError` with the
    cause chained.
    """

    #: The server used when neither ``url`` nor ``client`` is given.
    DEFAULT_URL = "redis://127.0.0.1:6379/0"
    #: Seconds to wait for a reply, and to connect, with a client built here.
    DEFAULT_SOCKET_TIMEOUT = 5.0
    DEFAULT_SOCKET_CONNECT_TIMEOUT = 2.0
    #: How often a rename across cluster slots copies again when writes keep
    #: changing the session in between, before it gives up with ProviderError.
    #: A copy takes four round trips, so a busy session (a page firing
    #: requests while its log in regenerates) can disturb several in a row:
    #: 5 attempts failed the kit's save-racing-rename check once in CI.
    RENAME_ATTEMPTS = 16

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

        self.prefix = options.text("prefix", prefix)
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
            url = options.text("url", self.DEFAULT_URL if url is None else url)
            timeout = options.seconds(
                "socket_timeout",
                self.DEFAULT_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout,
            )
            connect_timeout = options.seconds(
                "socket_connect_timeout",
                self.DEFAULT_SOCKET_CONNECT_TIMEOUT
                if socket_connect_timeout is None
                else socket_connect_timeout,
            )
            # RESP2 (redis-py 5 and later default to RESP3 where a URL does not
            # say): nothing but replies ever comes on a connection, so the
            # provider may read them itself (see _talk).
            resp2 = {"protocol": 2}
            if "protocol" not in inspect.signature(redis.Redis).parameters:
                resp2 = {}  # redis-py before 5.0 speaks RESP2 only
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
                    **resp2,
                )
            except ValueError as exc:
                # Not the URL itself in the message: it may hold a password.
                raise ValueError(f"url is not a Redis URL: {exc}") from None
            self._owns_client = True
        self._cluster = isinstance(self.client, RedisCluster)
        # Keys in different slots: no script sees a session and its index.
        self._split = self._cluster and not _hash_tag(prefix)
        self._errors: tuple[type[Exception], ...] = (
            redis.RedisError,
            redis.exceptions.RedisClusterException,
        )
        self._no_script = redis.exceptions.NoScriptError
        self._connection_error = redis.ConnectionError
        self._timeout_error = redis.TimeoutError
        self._response_error = redis.ResponseError
        self._redis_error = redis.RedisError
        # Connections whose replies _talk reads itself (decided on the first
        # one: a pool's connections are all alike).
        self._plain: tuple[type, ...] = (
            redis.Connection,
            redis.SSLConnection,
            redis.UnixDomainSocketConnection,
        )
        self._lean = False
        # A plain client (a Sentinel master's too): commands go straight to
        # connections this provider holds (see _command). A cluster client
        # routes every command itself.
        encoding, errors = "utf-8", "strict"
        client = self.client
        if not isinstance(client, RedisCluster):
            pool: ConnectionPool = client.connection_pool
            self._pool = pool
            # The key prefix in the client's own encoding, as redis-py would.
            settings = pool.connection_kwargs
            encoding = settings.get("encoding", encoding)
            errors = settings.get("encoding_errors", errors)
            # Before redis-py 5.3 get_connection() wants a command name; since,
            # passing one is deprecated.
            name = inspect.signature(pool.get_connection).parameters.get("command_name")
            self._name_needed = name is not None and name.default is inspect.Parameter.empty
        self._prefix = prefix.encode(encoding, errors)
        self._index = self._prefix + b"user:"
        # What the scripts get as ix: where the index is, or '' when they
        # must leave it alone (a cluster's index is in another slot).
        self._ix = b"" if self._split else self._index
        # The commonest commands packed with one format each (see template):
        # a load (key, now), a save that keeps the lifetime and the user
        # (key, now, n, now, then the fields), a create (key, ttl, index,
        # meta, now, then the fields).
        self._load_format = _LOAD_SCRIPT.template(None, None, self._ix)
        self._save_format = _SAVE_SCRIPT.template(
            None, None, self._ix, None, b"", b"", b"", b"", ACCESSED, None
        )
        self._create_format = _WRITE_SCRIPT.template(None, None, None, META, None, ACCESSED, None)
        self._idle: list[Any] = []
        self._pid = os.getpid()
        if not self._cluster:
            # A provider dropped without close() still hands its connections back.
            weakref.finalize(self, _release, self._pool, self._idle)

    # -- the Redis calls ------------------------------------------------------------

    def _command(self, packed: bytes, simple: bool = True) -> Any:
        """Send one packed command and return its reply, on a held connection.

        Connections come from the client's pool and stay with the provider,
        idle ones on a stack (``list.pop`` and ``append`` are atomic), so a
        command costs no pool lock and no health-check poll; the stack holds
        at most as many connections as requests ever ran at once. A
        connection that failed mid-command is disconnected before it is
        reused (an error reply, read whole, leaves it in step), so it can
        never hold a stale reply. A command that met a connection Redis
        closed (a restart) is sent once more, freshly connected; a timeout is
        not retried. ``simple``: the reply is a bulk string, an integer or
        nil, which :meth:`_talk` can read.
        """
        idle = self._idle
        # A forked child must not share its parent's sockets, and at-fork
        # hooks do not run under every server (uWSGI without
        # --py-call-osafterfork): so a pid check per command (about 0.2 us
        # here, against a round trip of about 30).
        if self._pid != os.getpid():
            idle = self._forked()
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._connect()
        talk = self._talk if simple and self._lean else _redis_py_talk
        try:
            try:
                return talk(conn, packed)
            except self._connection_error:
                conn.disconnect()
                return talk(conn, packed)
        except self._response_error:
            raise  # an error reply, read whole: the connection is in step
        except BaseException:
            conn.disconnect()  # whatever it was in the middle of is dropped
            raise
        finally:
            idle.append(conn)

    def _talk(self, conn: Any, packed: bytes) -> Any:
        """Send ``packed`` on the connection's socket and read the reply
        there: a bulk string (bytes), an integer, nil (None), or an error
        reply raised as redis-py would.

        redis-py's pure-Python reader costs about 4 us per reply here, a
        tenth of a round trip. Used only on redis-py's own TCP, TLS and Unix
        connections speaking RESP2 without health checks (see _connect), where
        nothing but the replies to this provider's commands can arrive;
        everything else (connecting, the handshake, arrays, other clients)
        stays with redis-py.
        """
        sock = conn._sock
        if sock is None:  # disconnected after a failure: redis-py reconnects
            conn.connect()
            sock = conn._sock
        try:
            sock.sendall(packed)
            data = self._recv(sock)
            line = data.find(b"\r\n")
            while line < 0:  # the first line split (never seen on one host)
                data += self._recv(sock)
                line = data.find(b"\r\n")
            kind = data[0]
            if kind == 36:  # "$": a bulk string of this many bytes, -1 for nil
                size = int(data[1:line])
                if size < 0:
                    return None
                end = line + 2 + size
                if len(data) < end + 2:
                    chunks = [data]
                    have = len(data)
                    while have < end + 2:
                        chunks.append(self._recv(sock))
                        have += len(chunks[-1])
                    data = b"".join(chunks)
                return data[line + 2 : end]
            if kind == 58:  # ":": an integer
                return int(data[1:line])
        except TimeoutError as exc:
            raise self._timeout_error("Timeout talking to Redis") from exc
        except OSError as exc:
            raise self._connection_error(f"Error talking to Redis: {exc}") from exc
        if kind == 45:  # "-": an error reply
            text = data[1:line].decode("utf-8", "replace")
            if text.startswith("NOSCRIPT"):
                raise self._no_script(text)
            raise self._response_error(text)
        raise self._redis_error("Redis sent a reply of an unexpected kind")

    def _recv(self, sock: Any) -> bytes:
        data: bytes = sock.recv(65536)
        if not data:
            raise self._connection_error("Redis closed the connection")
        return data

    def _connect(self) -> Any:
        # The pool connects it (and checks it is ready).
        if self._name_needed:
            conn = self._pool.get_connection("EVALSHA")
        else:
            conn = self._pool.get_connection()
        # Replies are read here only where nothing but replies can arrive:
        # RESP3 may carry push messages, Sentinel's connection reads a
        # READONLY reply as a failover, a health check sends PINGs.
        self._lean = (
            type(conn) in self._plain
            and hasattr(conn, "_sock")  # redis-py's socket, a private name
            and getattr(conn, "protocol", 2) in (2, "2")
            and not getattr(conn, "health_check_interval", 0)
        )
        return conn

    def _forked(self) -> list[Any]:
        # Start afresh (the pool resets itself too). Dropping a connection
        # object here only closes the child's copy of the socket.
        self._idle.clear()
        self._pid = os.getpid()
        return self._idle

    def _eval(self, script: _Script, keys_and_args: list[bytes]) -> Any:
        """EVALSHA, loading the script first where the server lacks it
        (the first call, or after a restart or a SCRIPT FLUSH). Replies are
        bytes, whatever the client decodes."""
        if self._cluster:
            return self._cluster_eval(script, keys_and_args)
        return self._evalsha(script, script.pack(keys_and_args))

    def _evalsha(self, script: _Script, packed: bytes) -> Any:
        try:
            return self._command(packed, script.simple)
        except self._no_script:
            self._command(script.load)
            return self._command(packed, script.simple)

    def _cluster_eval(self, script: _Script, keys_and_args: list[bytes]) -> Any:
        # The cluster client routes by the first key, and loads the script
        # on that key's node when it lacks it.
        client: Any = self.client
        args = ("EVALSHA", script.sha, script.keys, *keys_and_args)
        try:
            return _bytes(client.execute_command(*args))
        except self._no_script:
            client.script_load(script.source)
            return _bytes(client.execute_command(*args))

    @contextmanager
    def _failures(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise _failed(operation, exc) from exc

    def _key(self, sid: str) -> bytes:
        return self._prefix + sid.encode("utf-8")

    def _sid(self, key: bytes) -> str:
        return key[len(self._prefix) :].decode("utf-8")

    # -- the provider ---------------------------------------------------------------

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
        key = self._key(sid)
        ttl = b"%d" % _ms(idle if deadline is None else min(idle, deadline - now))
        index = b"" if user is None else self._index + _user(user)
        at = b"%.17g" % now
        meta = _meta(idle, deadline, persistent, at, user)
        fields: list[bytes] = []
        _fields(data, fields)
        # try, not _failures(): a context manager costs about 1 us per call.
        try:
            if not self._cluster:
                packed = self._create_format % (
                    *(10 + len(fields), len(key), key, len(ttl), ttl, len(index), index),
                    *(len(meta), meta, len(at), at, _bulks(fields)),
                )
                self._evalsha(_WRITE_SCRIPT, packed)
                return
            if self._split and index:
                # First the index: it may list a session that failed to
                # appear, never miss one that did.
                self._eval(_ADD_SCRIPT, [index, key])
            index = b"" if self._split else index
            args = [key, ttl, index, META, meta, ACCESSED, at, *fields]
            self._eval(_WRITE_SCRIPT, args)
        except self._errors as exc:
            raise _failed("create", exc) from exc

    def load(self, sid: str, now: float) -> Record | None:
        key = self._key(sid)
        at = b"%.17g" % now
        try:
            if self._cluster:
                reply = self._cluster_eval(_LOAD_SCRIPT, [key, at, self._ix])
            else:
                packed = self._load_format % (6, len(key), key, len(at), at, b"")
                reply = self._evalsha(_LOAD_SCRIPT, packed)
        except self._errors as exc:
            raise _failed("load", exc) from exc
        if reply is None:
            return None
        try:
            accessed, data, meta = reply.split(b"\n", 2)
            decoded = values.decode(data)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError too
            raise ProviderError(_NOT_JSON) from exc
        return _record(decoded, accessed, meta)

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
        key = self._key(sid)
        at = b"%.17g" % now
        n = b"%d" % (len(changed) + 1)
        tail: list[bytes] = []
        _fields(changed, tail)
        for name in removed:
            tail.append(name.encode("utf-8"))
        try:
            if lifetime is None and user is UNCHANGED and not self._cluster:
                packed = self._save_format % (
                    *(13 + len(tail), len(key), key, len(at), at),
                    *(len(n), n, len(at), at, _bulks(tail)),
                )
                return bool(self._evalsha(_SAVE_SCRIPT, packed))
            args = [key, at, self._ix, n]
            if lifetime is None:
                args += (b"", b"")
            else:
                args += (_float(lifetime[0]), b"1" if lifetime[1] else b"0")
            if user is UNCHANGED:
                args += (b"", b"")
            elif user is None:
                args += (b"0", b"")
            else:
                args += (b"1", _user(user))
            args += (ACCESSED, at, *tail)
            if self._split and isinstance(user, str):
                self._eval(_ADD_SCRIPT, [self._index + _user(user), key])
            return bool(self._eval(_SAVE_SCRIPT, args))
        except self._errors as exc:
            raise _failed("save", exc) from exc

    def rename(self, old: str, new: str, now: float) -> bool:
        with self._failures("rename"):
            if self._split:
                return self._rename_across_slots(self._key(old), self._key(new), now)
            args = [self._key(old), self._key(new), _float(now), self._ix]
            return bool(self._eval(_RENAME_SCRIPT, args))

    def _rename_across_slots(self, old: bytes, new: bytes, now: float) -> bool:
        # No script sees both keys: copy, then delete the old key only if it
        # is still live and unchanged; else undo the copy.
        at = _float(now)
        for _ in range(self.RENAME_ATTEMPTS):
            copied = self._eval(_COPY_SCRIPT, [old, at])
            if copied is None:
                return False
            ttl, fields = copied
            user = None
            kept = [old, at]
            for i in range(0, len(fields), 2):
                if fields[i] == META:
                    user = _owner(fields[i + 1])
                if fields[i] != ACCESSED:
                    kept += fields[i : i + 2]
            index = None if user is None else self._index + _user(user)
            if index is not None:
                self._eval(_ADD_SCRIPT, [index, new])
            self._eval(_WRITE_SCRIPT, [new, b"%d" % max(1, ttl), b"", *fields])
            self._copied()
            dropped = self._eval(_DROP_SCRIPT, kept)
            if dropped == 1:
                if index is not None:
                    self.client.srem(index, old)
                return True
            self.client.delete(new)
            if dropped == 0:  # destroyed or expired meanwhile: that wins
                return False
        raise ProviderError("Redis rename failed: the session kept changing during the copy")

    def _copied(self) -> None:
        """Called between the copy and the delete of a rename across
        cluster slots (tests race a destroy or a save against it here)."""

    def destroy(self, sid: str) -> None:
        key = self._key(sid)
        with self._failures("destroy"):
            user = self._eval(_DESTROY_SCRIPT, [key, self._ix])
            if self._split and user is not None:
                self.client.srem(self._index + user, key)

    def sessions_of(self, user: str, now: float) -> list[tuple[str, Record]]:
        index = self._index + _user(user)
        at = _float(now)
        with self._failures("sessions_of"):
            if not self._split:
                reply = self._eval(_SESSIONS_OF_SCRIPT, [index, at, _user(user), self._ix])
                found = [(reply[i], reply[i + 1], reply[i + 2]) for i in range(0, len(reply), 3)]
            else:
                found, stale = [], []
                for key in _bytes(list(self.client.smembers(index))):
                    peeked = self._eval(_PEEK_SCRIPT, [key, at])
                    if peeked is not None and _owner(peeked[0]) == user:
                        found.append((key, peeked[1], peeked[0]))
                    else:
                        stale.append(key)
                if stale:
                    self.client.srem(index, *stale)
        return [(self._sid(key), _record({}, accessed, meta)) for key, accessed, meta in found]

    def count(self) -> int:
        """The number of session hashes under ``prefix``, counted with SCAN.

        Walks the whole keyspace: for monitoring now and then, not per request.
        """
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        with self._failures("SCAN"):
            return sum(1 for _ in self.client.scan_iter(match=pattern, count=1000, _type="hash"))

    def close(self) -> None:
        """Disconnect the connections this provider holds (back to the
        client's pool), and close the client if this provider built it."""
        if not self._cluster:
            _release(self._pool, self._idle)
        if self._owns_client:
            self.client.close()
