"""The roster of streams in Redis: per-process counts that lapse without heartbeats.

Keys, next to the backplane's stream ``<stream>`` (so a hash-tagged stream name
puts them in its Redis Cluster slot):

* ``<stream>:roster``: a sorted set of the hub processes (*members*), each
  scored with the Redis time (ms) until which it is alive; a heartbeat pushes
  it *ttl* ahead.
* ``<stream>:roster:<member>``: a hash, client ID -> that process's streams of
  it, expiring ``2 * ttl`` after the last heartbeat (long enough for a live
  process to read a dead one's hash, say who left with it, and delete it).

Every operation is one Lua script (atomic, so two workers admitting the same
client ID at once cannot both take its last slot), reading the clock of Redis
itself (``TIME``), so hosts' clocks need not agree. A count across the cluster
reads the hash of every live member: ``O(members)`` per admission and leave.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import redis

from ._cluster import Admission, Beat
from ._exceptions import BackplaneUnavailable
from ._redis_replies import as_str

if TYPE_CHECKING:
    from .redis import RedisBackplane

__all__ = ["RedisRoster", "drop_idle_connections"]

T = TypeVar("T")

# Shared by every script. KEYS[1] is the members' set; ARGV[1] the member,
# ARGV[2] the prefix of the members' hashes.
_LIB: Final = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- the streams of cid held by the live members but `skip`
local function elsewhere(members, prefix, skip, cid, now)
  local n = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', members, now, '+inf')) do
    if m ~= skip then
      n = n + tonumber(redis.call('HGET', prefix .. m, cid) or 0)
    end
  end
  return n
end
-- forget member m; append to `left` the client IDs no live member still holds
local function reap(members, prefix, m, now, left)
  local flat = redis.call('HGETALL', prefix .. m)
  redis.call('DEL', prefix .. m)
  redis.call('ZREM', members, m)
  for i = 1, #flat, 2 do
    if tonumber(flat[i + 1]) > 0 and elsewhere(members, prefix, m, flat[i], now) == 0 then
      table.insert(left, flat[i])
    end
  end
end
"""

# ARGV[3] ttl (ms), ARGV[4] client ID, ARGV[5] limit (-1: none). Returns {admitted, others}.
# ZADD XX: an admission never revives a member a live process reaped (its next
# heartbeat finds it lapsed and rewrites its hash).
_ADMIT: Final = _LIB + """
local now = now_ms()
local others = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or 0)
others = others + elsewhere(KEYS[1], ARGV[2], ARGV[1], ARGV[4], now)
local limit = tonumber(ARGV[5])
if limit >= 0 and others >= limit then return {0, others} end
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), ARGV[1])
return {1, others}
"""

# ARGV[4] client ID. Returns the streams of it the cluster still holds.
_LEAVE: Final = _LIB + """
local now = now_ms()
local n = redis.call('HINCRBY', KEYS[2], ARGV[4], -1)
if n <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[4])
  n = 0
end
return n + elsewhere(KEYS[1], ARGV[2], ARGV[1], ARGV[4], now)
"""

# ARGV[3] ttl (ms), ARGV[4] '1' to rewrite the hash from ARGV[5..] (client ID,
# count pairs). Returns {lapsed, left...}: lapsed is 1 when this member was not
# in the set (first beat, or reaped meanwhile).
_BEAT: Final = _LIB + """
local now = now_ms()
local ttl = tonumber(ARGV[3])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
  for i = 5, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local left = {redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])}
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  reap(KEYS[1], ARGV[2], m, now, left)
end
return left
"""

# Returns the client IDs that left with this member.
_CLEAR: Final = _LIB + """
local left = {}
reap(KEYS[1], ARGV[2], ARGV[1], now_ms(), left)
return left
"""

# ARGV[4]: a client ID, or '' for all. Returns {cid, n, cid, n, ...} over the
# live members (a client ID once per member holding it).
_COUNT: Final = _LIB + """
local now = now_ms()
if ARGV[4] ~= '' then
  return {ARGV[4], elsewhere(KEYS[1], ARGV[2], '', ARGV[4], now)}
end
local out = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  for _, v in ipairs(redis.call('HGETALL', ARGV[2] .. m)) do
    table.insert(out, v)
  end
end
return out
"""


class RedisRoster:
    """One hub process's entry in the roster (:class:`sse_kit._cluster.Roster`).

    Owns its connection (``sse_kit:roster``), made in the process that uses it.
    """

    def __init__(self, backplane: RedisBackplane, member: str, ttl: float) -> None:
        self._bp = backplane
        self._members = f"{backplane.stream}:roster"
        self._prefix = f"{self._members}:"
        self._mine = self._prefix + member
        self._member = member
        self._ttl_ms = max(1, round(ttl * 1000))
        self._client = backplane._connect(backplane.timeout, "sse_kit:roster")
        self._scripts = {name: self._client.register_script(lua) for name, lua in (
            ("admit", _ADMIT), ("leave", _LEAVE), ("beat", _BEAT), ("clear", _CLEAR),
            ("count", _COUNT))}

    def _run(self, name: str, parse: Callable[[Any], T], *args: Any) -> T:
        """Run script *name* and *parse* its reply. A failure drops the idle
        connections (see :func:`drop_idle_connections`), so that no later
        command reads this one's reply as its own."""
        try:
            reply = self._scripts[name](keys=[self._members, self._mine],
                                        args=[self._member, self._prefix, *args])
            return parse(reply)
        except (redis.RedisError, OSError, ValueError, TypeError, IndexError) as exc:
            if not isinstance(exc, redis.ResponseError):
                drop_idle_connections(self._client)
            raise BackplaneUnavailable(
                f"Redis roster {self._members!r} unreachable: {exc or type(exc).__name__}"
            ) from exc

    def admit(self, client_id: str, limit: int | None) -> Admission:
        """See :meth:`sse_kit._cluster.Roster.admit`."""
        return self._run("admit", _admission, self._ttl_ms, client_id,
                         -1 if limit is None else limit)

    def leave(self, client_id: str) -> int:
        """See :meth:`sse_kit._cluster.Roster.leave`."""
        return self._run("leave", _count, self._ttl_ms, client_id)

    def beat(self, counts: Mapping[str, int] | None) -> Beat:
        """See :meth:`sse_kit._cluster.Roster.beat`."""
        pairs = [v for cid, n in (counts or {}).items() if n > 0 for v in (cid, n)]
        return self._run("beat", _beat, self._ttl_ms, "1" if counts is not None else "0",
                         *pairs)

    def clear(self) -> Sequence[str]:
        """See :meth:`sse_kit._cluster.Roster.clear`; also closes the connection."""
        try:
            return self._run("clear", _ids)
        finally:
            self._client.close()

    def count(self) -> dict[str, int]:
        """See :meth:`sse_kit._cluster.Roster.count`."""
        return self._run("count", _counts, self._ttl_ms, "")

    def count_of(self, client_id: str) -> int:
        """See :meth:`sse_kit._cluster.Roster.count_of`."""
        return self._run("count", lambda reply: _count(reply[1]), self._ttl_ms, client_id)


def drop_idle_connections(client: Any) -> None:
    """After a command failed other than by an error reply: close the idle
    connections of *client*'s pool. A command that timed out may leave its reply
    unread on its connection, back in the pool, and the next command would read
    that reply as its own (redis-py's Sentinel connections keep the connection
    after a read error, ``SentinelManagedConnection.read_response``). Another
    thread's command in flight keeps its connection."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.disconnect(inuse_connections=False)


# Each script's reply, checked for its shape (a reply of another shape raises,
# and is taken for a failure).

def _admission(reply: Any) -> Admission:
    admitted, others = reply
    return Admission(bool(admitted), int(others))


def _count(reply: Any) -> int:
    if not isinstance(reply, int):
        raise TypeError(f"expected a count, got {reply!r}")
    return reply


def _ids(reply: Any) -> list[str]:
    return [as_str(cid) for cid in reply]


def _beat(reply: Any) -> Beat:
    lapsed, *left = reply
    return Beat(lapsed=bool(_count(lapsed)), left=_ids(left))


def _counts(reply: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for cid, n in zip(reply[::2], reply[1::2], strict=True):
        key = as_str(cid)
        out[key] = out.get(key, 0) + int(n)
    return {cid: n for cid, n in out.items() if n > 0}
