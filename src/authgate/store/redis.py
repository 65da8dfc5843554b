"""The Redis backend: records as hashes whose TTL follows the token's expiry.

Redis deletes a record by itself when it expires, so a Redis store never
needs a purge job to stay small. Two facts shape the rest:

* The clock is passed in, and may be far from Redis' own clock (a frozen
  clock in tests, a skewed host). The TTL is only a garbage collector,
  computed as ``expires_at - now`` (at least one second); expiry itself is
  decided by comparing ``expires_at`` with ``now`` in every read.
* Every operation that must be atomic, or that touches a record together with
  its index entries, is one Lua script, so it is atomic across any number of
  authgate instances and no index can disagree with a record mid-way.

Keys, with ``P`` the prefix (``authgate``, or ``?prefix=`` in the URL)::

    P:<kind>:<id>           hash  p=payload e=expires_at g=grant_id s=subject c=consumed_at
    P:@kind:<kind>          zset  ids of that kind (score 0, ordered by id): scan, count
    P:@kinds                set   kinds ever stored: count()
    P:@sub:<kind>:<subject> zset  ids with that subject: find_by_subject
    P:@grant:<grant_id>     set   "<kind>:<id>" of a family: revoke_by_grant
    P:@exp                  zset  "<kind>:<id>" scored by expires_at: purge

Kinds are therefore restricted to ``[A-Za-z0-9_.-]`` (no ``:``, no ``@``), which
every authgate kind satisfies. The per-subject and per-grant index keys carry
the TTL of their longest-lived member, so they vanish with their records.
Index entries of a record Redis already expired are dropped lazily, by
``find_by_subject``, ``scan``, ``revoke_by_grant`` and ``purge`` (which walks
``P:@exp`` up to ``now``); until then ``count`` may include them.

Every operation is one command: ``find`` an ``HGETALL``, every other one an
``EVALSHA`` of a script loaded once when the backend opens -- except
``consume_then`` (refresh rotation), which is two: the consume, then the writes
that follow from the consumed record, made only while it is still there.
Concurrent operations share round trips (:mod:`authgate.store.redis_batch`).

Scripts build key names from the prefix, so this needs one Redis node (or a
primary with replicas / Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from ..errors import ConfigError
from .base import Record
from .redis_batch import Batcher

Arg = str | bytes | int | float
_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_LIB = r"""
local P = ARGV[1]
local EXP = P .. ':@exp'
local function rkey(kind, id) return P .. ':' .. kind .. ':' .. id end
local function kindkey(kind) return P .. ':@kind:' .. kind end
local function subkey(kind, s) return P .. ':@sub:' .. kind .. ':' .. s end
local function grantkey(g) return P .. ':@grant:' .. g end
local function opt(v) if v == '' then return false end return string.sub(v, 2) end
local function split(m)
  local i = string.find(m, ':', 1, true)
  return string.sub(m, 1, i - 1), string.sub(m, i + 1)
end
local function fields(h)
  local rec = {}
  for i = 1, #h, 2 do rec[h[i]] = h[i + 1] end
  return rec
end
-- Add a member to an index key, which lives as long as its longest-lived member (ttl < 0:
-- forever). PTTL before the add: -2 the key is new, -1 it never expires, else ms left.
local function index(cmd, key, score, member, ttl)
  if ttl < 0 then
    if score then redis.call(cmd, key, score, member) else redis.call(cmd, key, member) end
    redis.call('PERSIST', key)
    return
  end
  local cur = redis.call('PTTL', key)
  if score then redis.call(cmd, key, score, member) else redis.call(cmd, key, member) end
  if cur == -2 or (cur >= 0 and cur < ttl) then redis.call('PEXPIRE', key, ttl) end
end
local function unindex(kind, id, s, g)
  redis.call('ZREM', kindkey(kind), id)
  redis.call('ZREM', EXP, kind .. ':' .. id)
  if s then redis.call('ZREM', subkey(kind, s), id) end
  if g then redis.call('SREM', grantkey(g), kind .. ':' .. id) end
end
-- The record at key as {payload, e, s, g} (false for a missing field), or false if none.
local function stored(key)
  local h = redis.call('HMGET', key, 'p', 'e', 's', 'g')
  if not h[1] then return false end
  return h
end
-- Create or replace one record with its index entries (e g s c: false for none); old is
-- what stored() found there.
local function put(kind, id, payload, e, g, s, c, ttl, old)
  local key = rkey(kind, id)
  if old then
    unindex(kind, id, old[3], old[4])
    redis.call('DEL', key)
  end
  local f = {'p', payload}
  if e then f[#f + 1] = 'e'; f[#f + 1] = e end
  if g then f[#f + 1] = 'g'; f[#f + 1] = g end
  if s then f[#f + 1] = 's'; f[#f + 1] = s end
  if c then f[#f + 1] = 'c'; f[#f + 1] = c end
  redis.call('HSET', key, unpack(f))
  if ttl >= 0 then redis.call('PEXPIRE', key, ttl) end
  redis.call('ZADD', kindkey(kind), 0, id)
  redis.call('SADD', P .. ':@kinds', kind)
  if e then redis.call('ZADD', EXP, e, kind .. ':' .. id) end
  if s then index('ZADD', subkey(kind, s), 0, id, ttl) end
  if g then index('SADD', grantkey(g), false, kind .. ':' .. id, ttl) end
end
-- ARGV[b..b+7]: kind id payload e g s c ttl_ms (e g s c: '' for none, '=' .. value).
-- create: only if no live record is there (now: the caller's clock). True if written.
local function write_at(b, create, now)
  local old = stored(rkey(ARGV[b], ARGV[b + 1]))
  if create and old and (not old[2] or tonumber(old[2]) > now) then return false end
  put(ARGV[b], ARGV[b + 1], ARGV[b + 2], opt(ARGV[b + 3]), opt(ARGV[b + 4]), opt(ARGV[b + 5]),
      opt(ARGV[b + 6]), tonumber(ARGV[b + 7]), old)
  return true
end
"""

_UPSERT = _LIB + "write_at(2, false) return 1"

_INSERT = _LIB + r"""
if write_at(2, true, tonumber(ARGV[10])) then return 1 end
return 0
"""

# The writes that follow a won consume (consume_then), only while the consumed record is
# still there: a revocation since deletes it, and then nothing is written.
# ARGV: P kind id now n, then n times: create(1/0) + the 8 write arguments.
_FOLLOW = _LIB + r"""
if redis.call('EXISTS', rkey(ARGV[2], ARGV[3])) == 0 then return 0 end
local now = tonumber(ARGV[4])
for i = 0, tonumber(ARGV[5]) - 1 do
  local b = 6 + i * 9
  write_at(b + 1, ARGV[b] == '1', now)
end
return 1
"""

_CONSUME = _LIB + r"""
local key = rkey(ARGV[2], ARGV[3])
local h = redis.call('HGETALL', key)
if #h == 0 then return false end
local rec = fields(h)
if rec.e and tonumber(rec.e) <= tonumber(ARGV[4]) then return false end
if not rec.c then redis.call('HSET', key, 'c', ARGV[4]) end
return h
"""

_DESTROY = _LIB + r"""
local kind, id = ARGV[2], ARGV[3]
local key = rkey(kind, id)
if redis.call('EXISTS', key) == 0 then
  unindex(kind, id, false, false)
  return 0
end
local old = redis.call('HMGET', key, 's', 'g')
unindex(kind, id, old[1], old[2])
redis.call('DEL', key)
return 1
"""

_REVOKE = _LIB + r"""
local gk = grantkey(ARGV[2])
local n = 0
for _, m in ipairs(redis.call('SMEMBERS', gk)) do
  local kind, id = split(m)
  local key = rkey(kind, id)
  if redis.call('EXISTS', key) == 1 then
    local old = redis.call('HMGET', key, 's', 'g')
    if old[2] == ARGV[2] then
      unindex(kind, id, old[1], old[2])
      redis.call('DEL', key)
      n = n + 1
    end
  else
    unindex(kind, id, false, false)
  end
end
redis.call('DEL', gk)
return n
"""

_BY_SUBJECT = _LIB + r"""
local kind, s, now, limit = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local sk = subkey(kind, s)
local out = {}
local cursor = '-'
while #out < limit do
  local ids = redis.call('ZRANGEBYLEX', sk, cursor, '+', 'LIMIT', 0, 100)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local h = redis.call('HGETALL', rkey(kind, id))
    local rec = fields(h)
    if #h == 0 then
      unindex(kind, id, s, false)
    elseif rec.s ~= s then
      redis.call('ZREM', sk, id)
    elseif not rec.e or tonumber(rec.e) > now then
      out[#out + 1] = {id, h}
      if #out >= limit then break end
    end
  end
  cursor = '(' .. ids[#ids]
end
return out
"""

_SCAN = _LIB + r"""
local kind, after, limit = ARGV[2], opt(ARGV[3]), tonumber(ARGV[4])
local kk = kindkey(kind)
local out = {}
local cursor = '-'
if after then cursor = '(' .. after end
while #out < limit do
  local ids = redis.call('ZRANGEBYLEX', kk, cursor, '+', 'LIMIT', 0, limit - #out)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local h = redis.call('HGETALL', rkey(kind, id))
    if #h == 0 then unindex(kind, id, false, false) else out[#out + 1] = {id, h} end
  end
  cursor = '(' .. ids[#ids]
end
return out
"""

_PURGE = _LIB + r"""
local now = tonumber(ARGV[2])
local n = 0
local due = redis.call('ZRANGEBYSCORE', EXP, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  local kind, id = split(m)
  local key = rkey(kind, id)
  if redis.call('EXISTS', key) == 1 then
    local old = redis.call('HMGET', key, 'e', 's', 'g')
    if old[1] and tonumber(old[1]) <= now then
      unindex(kind, id, old[2], old[3])
      redis.call('DEL', key)
      n = n + 1
    elseif not old[1] then
      redis.call('ZREM', EXP, m)
    end
  else
    unindex(kind, id, false, false)
    n = n + 1
  end
end
return n
"""


def redis_options(url: str) -> tuple[str, str]:
    """Split a store URL into the URL redis-py understands and the key prefix."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigError("a redis store URL starts with redis:// or rediss://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    if len(prefixes) > 1:
        raise ConfigError("give ?prefix= once")
    prefix = prefixes[0] if prefixes else "authgate"
    if not prefix:
        raise ConfigError("?prefix= must not be empty")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def _check_kind(kind: str) -> str:
    if not _KIND.fullmatch(kind):
        raise ValueError(f"record kind {kind!r} is not usable as a Redis key part")
    return kind


def _opt(value: object) -> str:
    return "" if value is None else f"={value!r}" if isinstance(value, float) else f"={value}"


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _record(kind: str, id: str, h: dict[bytes, bytes]) -> Record:
    return Record(
        kind=kind,
        id=id,
        payload=h[b"p"],
        expires_at=_float(h.get(b"e")),
        grant_id=_text(h.get(b"g")),
        subject=_text(h.get(b"s")),
        consumed_at=_float(h.get(b"c")),
    )


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisBackend:
    url_scheme = "redis"

    def __init__(self, url: str) -> None:
        self.url, self.prefix = redis_options(url)
        self._client: aioredis.Redis | None = None
        self._batch: Batcher | None = None
        self._scripts: dict[str, AsyncScript] = {}

    async def open(self) -> None:
        if self._client is not None:
            return
        client = aioredis.Redis.from_url(self.url, decode_responses=False)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._scripts = {
            name: client.register_script(src)
            for name, src in (
                ("upsert", _UPSERT), ("insert", _INSERT), ("consume", _CONSUME), ("follow", _FOLLOW),
                ("destroy", _DESTROY), ("revoke", _REVOKE), ("by_subject", _BY_SUBJECT),
                ("scan", _SCAN), ("purge", _PURGE),
            )
        }
        try:
            # Loaded once, in one round trip: every call after this is one EVALSHA. (Should
            # the server lose them -- a restart, SCRIPT FLUSH -- redis-py reloads on NOSCRIPT.)
            async with client.pipeline(transaction=False) as pipe:
                for script in self._scripts.values():
                    pipe.script_load(script.script)
                await pipe.execute()
        except BaseException:
            await client.aclose()
            raise
        self._batch = Batcher(client)
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            if self._batch is not None:
                await self._batch.close()
                self._batch = None
            await client.aclose()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisBackend used before open()")
        return self._client

    @property
    def batch(self) -> Batcher:
        if self._batch is None:
            raise RuntimeError("RedisBackend used before open()")
        return self._batch

    async def _run(self, name: str, *args: Arg) -> Any:
        script = self._scripts.get(name)
        if script is None or self._batch is None:
            raise RuntimeError("RedisBackend used before open()")
        try:
            return await self._batch.call("EVALSHA", script.sha, 0, self.prefix, *args)
        except NoScriptError:  # the server lost its scripts (restart, SCRIPT FLUSH): reload
            return await script(keys=[], args=[self.prefix, *args])

    def _key(self, kind: str, id: str) -> str:
        return f"{self.prefix}:{_check_kind(kind)}:{id}"

    def _write_args(self, record: Record, now: float) -> list[Arg]:
        ttl = -1
        if record.expires_at is not None:
            ttl = max(1000, math.ceil((record.expires_at - now) * 1000))
        return [
            _check_kind(record.kind), record.id, record.payload, _opt(record.expires_at),
            _opt(record.grant_id), _opt(record.subject), _opt(record.consumed_at), ttl,
        ]

    async def upsert(self, record: Record, *, now: float) -> None:
        await self._run("upsert", *self._write_args(record, now))

    async def insert(self, record: Record, *, now: float) -> bool:
        return bool(await self._run("insert", *self._write_args(record, now), repr(now)))

    async def find(self, kind: str, id: str, *, now: float) -> Record | None:
        flat = cast(list[bytes], await self.batch.call("HGETALL", self._key(kind, id)))
        if not flat:
            return None
        record = _record(kind, id, _pairs(flat))
        return record if record.live(now) else None

    async def consume(self, kind: str, id: str, *, now: float) -> Record | None:
        flat = await self._run("consume", _check_kind(kind), id, repr(now))
        return None if flat is None else _record(kind, id, _pairs(flat))

    async def consume_then(self, kind: str, id: str, *, now: float,
                           then: Callable[[Record], Iterable[tuple[Record, bool]]]) -> Record | None:
        """``consume``; when this caller won, the ``(record, create)`` writes ``then`` derives
        from it (``create``: ``insert``, else ``upsert``) in one more script, which writes
        them only if the consumed record is still there. A revocation (deleting the record
        and every other record of its grant, in one script of its own) lands either before
        that script -- nothing is written, and this returns None, as for a record that is
        gone -- or after it, and deletes what it wrote. Two round trips, not one per write."""
        record = await self.consume(kind, id, now=now)
        if record is None or record.consumed_at is not None:
            return record
        args: list[Arg] = []
        n = 0
        for rec, create in then(record):
            args += [1 if create else 0, *self._write_args(rec, now)]
            n += 1
        if n and not await self._run("follow", _check_kind(kind), id, repr(now), n, *args):
            return None
        return record

    async def destroy(self, kind: str, id: str) -> bool:
        return bool(await self._run("destroy", _check_kind(kind), id))

    async def revoke_by_grant(self, grant_id: str) -> int:
        return int(await self._run("revoke", grant_id))

    async def find_by_subject(
        self, kind: str, subject: str, *, now: float, limit: int = 1000
    ) -> list[Record]:
        if limit <= 0:
            return []
        rows = await self._run("by_subject", _check_kind(kind), subject, repr(now), limit)
        return [_record(kind, id.decode(), _pairs(flat)) for id, flat in rows]

    async def scan(self, kind: str, *, after: str | None = None, limit: int = 500) -> list[Record]:
        if limit <= 0:
            return []
        rows = await self._run("scan", _check_kind(kind), _opt(after), limit)
        return [_record(kind, id.decode(), _pairs(flat)) for id, flat in rows]

    async def purge(self, *, now: float, limit: int = 1000) -> int:
        if limit <= 0:
            return 0
        return int(await self._run("purge", repr(now), limit))

    async def count(self, kind: str | None = None) -> int:
        if kind is not None:
            return int(await self.client.zcard(f"{self.prefix}:@kind:{_check_kind(kind)}"))
        kinds = cast(set[bytes], await self.client.smembers(f"{self.prefix}:@kinds"))
        async with self.client.pipeline(transaction=False) as pipe:
            for k in sorted(kinds):
                pipe.zcard(f"{self.prefix}:@kind:".encode() + k)
            counts = await pipe.execute()
        return sum(int(c) for c in counts)
