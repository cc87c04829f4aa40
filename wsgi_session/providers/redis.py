"""Sessions in Redis: one hash per session, expired by Redis itself."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import ProviderError
from ..provider import Provider

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

# The hash field that holds the session's metadata: the absolute deadline
# (epoch seconds) or "" for none. Session keys are non-empty, so no user key
# can ever be this field; it also keeps a session whose data is empty alive.
META = ""

# Every script starts with ttl(): the key's TTL in milliseconds, that is
# min(idle, deadline - now) with the deadline checked against the manager's
# clock, or nil if the key is not a live session (no metadata field: absent,
# or not ours). A session past its deadline is deleted there and then. Idle
# expiry itself is Redis's: a key nobody touches for `idle` is gone.
_TTL = """
local function ttl(key, now, idle)
  local meta = redis.call('HGET', key, '')
  if not meta then return nil end
  local deadline = tonumber(meta)
  if deadline then
    local left = math.floor((deadline - now) * 1000)
    if left < idle then idle = left end
  end
  if idle <= 0 then
    redis.call('DEL', key)
    return nil
  end
  return idle
end
"""

# KEYS[1] session; ARGV now, idle_ms. The fields and values, or false.
_LOAD = (
    _TTL
    + """
local k = KEYS[1]
local t = ttl(k, tonumber(ARGV[1]), tonumber(ARGV[2]))
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
local t = ttl(k, tonumber(ARGV[1]), tonumber(ARGV[2]))
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
local t = ttl(old, tonumber(ARGV[1]), tonumber(ARGV[2]))
if not t then return 0 end
redis.call('RENAME', old, new)
redis.call('PEXPIRE', new, t)
return 1
"""
)


class _Script:
    """A Lua script run with EVALSHA."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        self.source = source
        # Redis names scripts by their SHA-1.
        self.sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()


_LOAD_SCRIPT = _Script(_LOAD)
_SAVE_SCRIPT = _Script(_SAVE)
_WRITE_SCRIPT = _Script(_WRITE)
_RENAME_SCRIPT = _Script(_RENAME)

_EXTRA = "the Redis provider needs redis-py: pip install wsgi_session[redis]"


def _seconds(option: str, value: object) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"{option} must be a number of seconds, not {value!r}")
    if not value > 0 or value == math.inf:  # type: ignore[operator]  # also refuses NaN
        raise ValueError(f"{option} must be a positive, finite number of seconds, not {value!r}")
    return float(value)  # type: ignore[arg-type]


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _field(key: str) -> bytes:
    # surrogatepass: a str key may hold lone surrogates; bytes round-trip them.
    return key.encode("utf-8", "surrogatepass")


def _dumps(key: str, value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"session value for key {key!r} cannot be stored as JSON: {exc}") from None


class RedisProvider(Provider):
    """Keeps each session in a Redis hash at ``prefix + sid``, values as JSON.

    ::

        SessionMiddleware(app, provider="redis",
                          provider_options={"url": "redis://127.0.0.1:6379/0"})
        SessionMiddleware(app, provider=RedisProvider(client=redis.Redis(...)))

    Give either ``url`` (a client is built with ``socket_timeout`` and
    ``socket_connect_timeout``, so a hung Redis cannot hang a worker, and
    one retry on a dropped connection) or a ready ``client``: a
    ``redis.Redis``, a Sentinel ``master_for(...)`` client or a
    ``redis.cluster.RedisCluster``. :meth:`close` closes only a client built
    here. Nothing connects before the first request.

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
            timeout = _seconds(
                "socket_timeout",
                self.DEFAULT_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout,
            )
            connect_timeout = _seconds(
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

    def _eval(self, script: _Script, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA, loading the script first where the server lacks it
        (the first call, or after a restart or a SCRIPT FLUSH)."""
        try:
            return self.client.evalsha(script.sha, len(keys), *keys, *args)
        except self._no_script:
            self.client.script_load(script.source)
            return self.client.evalsha(script.sha, len(keys), *keys, *args)

    @contextmanager
    def _failures(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            # The key (it holds the id) is never in the message.
            raise ProviderError(f"Redis {operation} failed: {exc}") from exc

    def _decode(self, fields: list[Any]) -> dict[str, Any]:
        data = {}
        for i in range(0, len(fields), 2):
            name = fields[i]
            if isinstance(name, bytes):
                name = name.decode("utf-8", "surrogatepass")
            if name == META:
                continue
            try:
                data[name] = json.loads(fields[i + 1])
            except ValueError as exc:
                raise ProviderError("Redis load failed: a stored value is not JSON") from exc
        return data

    def create(
        self, sid: str, data: Mapping[str, Any], now: float, idle: float, deadline: float | None
    ) -> None:
        args: list[Any] = [
            self._ttl(now, idle, deadline),
            META,
            "" if deadline is None else repr(deadline),
        ]
        for key, value in data.items():
            args += (_field(key), _dumps(key, value))
        with self._failures("create"):
            self._eval(_WRITE_SCRIPT, [self.prefix + sid], args)

    @staticmethod
    def _ttl(now: float, idle: float, deadline: float | None) -> int:
        if deadline is None:
            return _ms(idle)
        return _ms(min(idle, deadline - now))

    def load(self, sid: str, now: float, idle: float) -> dict[str, Any] | None:
        with self._failures("load"):
            fields = self._eval(_LOAD_SCRIPT, [self.prefix + sid], [repr(now), _ms(idle)])
        if fields is None:
            return None
        return self._decode(fields)

    def save(
        self,
        sid: str,
        changed: Mapping[str, Any],
        removed: Collection[str],
        now: float,
        idle: float,
    ) -> bool:
        args: list[Any] = [repr(now), _ms(idle), len(changed)]
        for key, value in changed.items():
            args += (_field(key), _dumps(key, value))
        args.extend(_field(key) for key in removed)
        with self._failures("save"):
            return bool(self._eval(_SAVE_SCRIPT, [self.prefix + sid], args))

    def rename(self, old: str, new: str, now: float, idle: float) -> bool:
        if self._cluster:
            return self._rename_across_slots(old, new, now, idle)
        with self._failures("rename"):
            keys = [self.prefix + old, self.prefix + new]
            return bool(self._eval(_RENAME_SCRIPT, keys, [repr(now), _ms(idle)]))

    def _rename_across_slots(self, old: str, new: str, now: float, idle: float) -> bool:
        # The two keys may live on different nodes, so no single script can
        # see both: copy to the new key, then delete the old one.
        with self._failures("rename"):
            fields = self._eval(_LOAD_SCRIPT, [self.prefix + old], [repr(now), _ms(idle)])
            if fields is None:
                return False
            deadline = None
            for i in range(0, len(fields), 2):
                if fields[i] in (b"", "") and fields[i + 1] not in (b"", ""):
                    deadline = float(fields[i + 1])
            self._eval(
                _WRITE_SCRIPT, [self.prefix + new], [self._ttl(now, idle, deadline), *fields]
            )
            self.client.delete(self.prefix + old)
        return True

    def destroy(self, sid: str) -> None:
        with self._failures("destroy"):
            self.client.delete(self.prefix + sid)

    def __len__(self) -> int:
        """The number of keys under ``prefix``, counted with SCAN.

        Walks the whole keyspace: for monitoring now and then, not per request.
        """
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + "*"
        with self._failures("SCAN"):
            return sum(1 for _ in self.client.scan_iter(match=pattern, count=1000))

    def close(self) -> None:
        """Close the client if this provider built it (from ``url``)."""
        if self._owns_client:
            self.client.close()
