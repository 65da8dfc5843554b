"""Redis specifics: TTLs follow expiry from the passed-in clock, indexes do not leak."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from authgate.clock import FrozenClock
from authgate.errors import ConfigError
from authgate.store import Record
from authgate.store.redis import RedisBackend, redis_options

from .conftest import opened

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(store_url: Callable[[str], str]) -> AsyncIterator[RedisBackend]:
    async with opened(store_url("redis")) as backend:
        assert isinstance(backend, RedisBackend)
        yield backend


async def keys(store: RedisBackend) -> set[str]:
    return {k.decode() async for k in store.client.scan_iter(match=f"{store.prefix}:*")}


async def test_ttl_follows_expiry_from_the_given_clock(store: RedisBackend,
                                                       clock: FrozenClock) -> None:
    """The TTL is expires_at - now (not wall time); no expiry, no TTL; at least one second."""
    now = clock.now()  # far from Redis' own clock on purpose
    await store.upsert(Record("code", "short", b"x", expires_at=now + 120), now=now)
    await store.upsert(Record("client", "forever", b"x"), now=now)
    await store.upsert(Record("code", "late", b"x", expires_at=now - 30), now=now)
    assert 119_000 <= await store.client.pttl(f"{store.prefix}:code:short") <= 120_000
    assert await store.client.pttl(f"{store.prefix}:client:forever") == -1
    assert 0 < await store.client.pttl(f"{store.prefix}:code:late") <= 1000
    await store.consume("code", "short", now=now)
    assert await store.client.pttl(f"{store.prefix}:code:short") > 100_000  # consume keeps it


async def test_index_keys_live_as_long_as_their_longest_member(store: RedisBackend,
                                                                clock: FrozenClock) -> None:
    """Subject and grant index keys take the longest member TTL, and none if one never expires."""
    now = clock.now()
    sub, grant = f"{store.prefix}:@sub:refresh_token:alice", f"{store.prefix}:@grant:fam"
    await store.upsert(Record("refresh_token", "a", b"x", expires_at=now + 100, subject="alice",
                              grant_id="fam"), now=now)
    await store.upsert(Record("refresh_token", "b", b"x", expires_at=now + 50, subject="alice",
                              grant_id="fam"), now=now)
    assert 99_000 <= await store.client.pttl(sub) <= 100_000
    assert 99_000 <= await store.client.pttl(grant) <= 100_000
    await store.upsert(Record("refresh_token", "c", b"x", subject="alice", grant_id="fam"), now=now)
    assert await store.client.pttl(sub) == -1
    assert await store.client.pttl(grant) == -1


async def test_entries_of_records_redis_expired_are_cleaned(store: RedisBackend,
                                                            clock: FrozenClock) -> None:
    """When Redis drops an expired hash, reads and purge remove its index entries."""
    now = clock.now()
    for id in ("gone", "kept"):
        await store.upsert(Record("refresh_token", id, b"x", expires_at=now + 60,
                                  subject="alice", grant_id="fam"), now=now)
    await store.client.delete(f"{store.prefix}:refresh_token:gone")  # what the TTL does
    listed = await store.find_by_subject("refresh_token", "alice", now=now)
    assert [r.id for r in listed] == ["kept"]
    assert not await store.client.zscore(f"{store.prefix}:@sub:refresh_token:alice", "gone")
    assert await store.count("refresh_token") == 1
    await store.destroy("refresh_token", "kept")
    # (30 s, not less: the grant set's TTL runs on Redis's real clock, and a busy machine
    # can take seconds to get from here to the assertions below)
    await store.upsert(Record("code", "c", b"x", expires_at=now + 30, grant_id="g"), now=now)
    await store.client.delete(f"{store.prefix}:code:c")
    assert await store.purge(now=now + 40) == 1
    assert await store.count() == 0
    # Grant sets cannot learn that a member vanished; they expire with their longest member.
    grants = {f"{store.prefix}:@grant:g", f"{store.prefix}:@grant:fam"}
    assert await keys(store) == {f"{store.prefix}:@kinds", *grants}
    for key in grants:
        assert 0 < await store.client.pttl(key) <= 60_000
    assert await store.revoke_by_grant("g") == 0
    assert f"{store.prefix}:@grant:g" not in await keys(store)


async def test_kinds_must_be_key_safe(store: RedisBackend, clock: FrozenClock) -> None:
    """A kind that could collide with another key (':' or '@') is refused."""
    with pytest.raises(ValueError, match="kind"):
        await store.upsert(Record("a:b", "x", b"x"), now=clock.now())
    with pytest.raises(ValueError, match="kind"):
        await store.find("@kind", "x", now=clock.now())


async def test_prefixes_isolate_stores(store_url: Callable[[str], str], clock: FrozenClock) -> None:
    """Two prefixes on one Redis are two independent stores."""
    async with opened(store_url("redis")) as a, opened(store_url("redis")) as b:
        await a.upsert(Record("client", "c", b"a"), now=clock.now())
        assert await b.find("client", "c", now=clock.now()) is None
        assert await b.count() == 0


def test_url_prefix_option() -> None:
    """?prefix= is taken out of the URL; other options go to redis-py; default is authgate."""
    assert redis_options("redis://h:6379/2") == ("redis://h:6379/2", "authgate")
    assert redis_options("rediss://:pw@h/0?prefix=ag1&socket_timeout=5") == (
        "rediss://:pw@h/0?socket_timeout=5", "ag1")
    for bad in ("redis://h/0?prefix=", "redis://h/0?prefix=a&prefix=b", "http://h/0"):
        with pytest.raises(ConfigError):
            redis_options(bad)


async def test_unreachable_redis_fails_on_open() -> None:
    """open() connects, so a wrong address fails at startup rather than on first use."""
    backend = RedisBackend("redis://127.0.0.1:1/0")
    with pytest.raises(aioredis.ConnectionError):
        await backend.open()
    await backend.close()


async def test_concurrent_operations_each_get_their_own_reply(store: RedisBackend,
                                                              clock: FrozenClock) -> None:
    """Operations sent together in one pipelined batch are answered one by one, in order."""
    now = clock.now()
    await asyncio.gather(*(store.upsert(Record("code", f"c{i}", f"p{i}".encode()), now=now)
                           for i in range(300)))
    found = await asyncio.gather(*(store.find("code", f"c{i}", now=now) for i in range(300)))
    assert [r.payload if r else None for r in found] == [f"p{i}".encode() for i in range(300)]
    consumed = await asyncio.gather(*(store.consume("code", "c7", now=now) for _ in range(20)))
    assert sum(1 for r in consumed if r is not None and r.consumed_at is None) == 1


async def test_a_script_the_server_lost_is_loaded_again(store: RedisBackend,
                                                        clock: FrozenClock) -> None:
    """NOSCRIPT (Redis restarted, SCRIPT FLUSH) reloads the script and the operation succeeds."""
    now = clock.now()
    store._scripts["upsert"].sha = "0" * 40  # what the server does not know
    await store.upsert(Record("code", "after-flush", b"x"), now=now)
    assert await store.find("code", "after-flush", now=now) is not None


async def test_a_lost_connection_fails_what_was_in_flight_then_reconnects(
        store: RedisBackend, clock: FrozenClock) -> None:
    """A command whose connection dies gets an error (it may or may not have run, so it is
    never sent again); the next command goes out on a new connection."""
    now = clock.now()
    await store.upsert(Record("code", "c", b"x"), now=now)
    first = await store.batch.call("CLIENT", "ID")
    blocked = asyncio.create_task(store.batch.call("BLPOP", f"{store.prefix}:nothing", 10))
    for _ in range(100):  # until the server has it blocked
        if any(c["id"] == str(first) and c["cmd"] == "blpop" for c in await store.client.client_list()):
            break
        await asyncio.sleep(0.02)
    await store.client.client_kill_filter(_id=first)
    with pytest.raises(aioredis.ConnectionError):
        await blocked
    assert (await store.find("code", "c", now=now)) is not None
    assert await store.batch.call("CLIENT", "ID") != first


async def test_a_cancelled_caller_does_not_shift_the_replies(store: RedisBackend) -> None:
    """A caller cancelled while its command is in flight: its reply is read and dropped, and
    every later caller still gets its own."""
    slow = asyncio.create_task(store.batch.call("BLPOP", f"{store.prefix}:nothing", 0.3))
    await asyncio.sleep(0.05)
    slow.cancel()
    echoes = await asyncio.gather(*(store.batch.call("ECHO", f"e{i}") for i in range(50)))
    assert echoes == [f"e{i}".encode() for i in range(50)]
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_an_error_reply_goes_to_its_own_caller(store: RedisBackend) -> None:
    await store.client.set(f"{store.prefix}:plain", "v")
    replies = await asyncio.gather(store.batch.call("ECHO", "a"),
                                   store.batch.call("HGETALL", f"{store.prefix}:plain"),
                                   store.batch.call("ECHO", "b"), return_exceptions=True)
    assert replies[0] == b"a" and replies[2] == b"b"
    assert isinstance(replies[1], aioredis.ResponseError) and "WRONGTYPE" in str(replies[1])


async def test_close_waits_for_the_replies_in_flight(store_url: Callable[[str], str]) -> None:
    async with opened(store_url("redis")) as backend:
        assert isinstance(backend, RedisBackend)
        waiting = asyncio.create_task(backend.batch.call("BLPOP", f"{backend.prefix}:nothing", 0.2))
        await asyncio.sleep(0.05)
    assert await waiting is None  # BLPOP timed out on the server: answered, not cut off


async def test_a_resp3_url_still_works(store_url: Callable[[str], str], clock: FrozenClock) -> None:
    """?protocol=3 is redis-py's; the pipelined connection speaks RESP2 whatever the URL says."""
    now = clock.now()
    async with opened(store_url("redis") + "&protocol=3") as backend:
        await backend.upsert(Record("code", "c", b"x", subject="s", grant_id="g"), now=now)
        found = await backend.find("code", "c", now=now)
        assert found is not None and found.payload == b"x" and found.subject == "s"
        assert [r.id for r in await backend.find_by_subject("code", "s", now=now)] == ["c"]
