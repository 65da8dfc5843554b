"""The notifier contract on PostgreSQL and Redis: delivery, reconnection, the lock; and the local one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import asyncpg
import pytest
import redis.asyncio as aioredis

from authgate.store import Backend, notify
from authgate.store.notify import (
    RESYNC,
    LocalNotifier,
    LockTimeout,
    Notifier,
    PostgresNotifier,
    RedisNotifier,
    notifier_for,
)

from ..conftest import POSTGRES, REDIS
from .conftest import open_or_fail

Inbox = asyncio.Queue[tuple[str, str]]


async def listening(notifier: Notifier) -> Inbox:
    inbox: Inbox = asyncio.Queue()

    async def got(channel: str, payload: str) -> None:
        inbox.put_nowait((channel, payload))

    await notifier.subscribe(got)
    return inbox


async def next_message(inbox: Inbox, within: float = 3.0) -> tuple[str, str]:
    return await asyncio.wait_for(inbox.get(), within)


@pytest.fixture
async def pair(backends: tuple[Backend, Backend]) -> AsyncIterator[tuple[Notifier, Notifier]]:
    """Two instances' notifiers on one store."""
    a, b = notifier_for(backends[0]), notifier_for(backends[1])
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_others_hear_a_change_and_the_publisher_does_not(pair: tuple[Notifier, Notifier]) -> None:
    """A publish reaches every other subscriber once; the publisher skips its own message."""
    a, b = pair
    assert a.shared and b.shared
    inbox_a, inbox_b = await listening(a), await listening(b)
    assert await next_message(inbox_a) == (RESYNC, "")  # connected: everything may have changed
    assert await next_message(inbox_b) == (RESYNC, "")
    await a.publish("deny", "")
    await a.publish("clients", "spa")
    assert await next_message(inbox_b) == ("deny", "")
    assert await next_message(inbox_b) == ("clients", "spa")
    await b.publish("keys", "k1")
    assert await next_message(inbox_a) == ("keys", "k1")
    assert inbox_a.empty() and inbox_b.empty()


async def test_stores_sharing_a_server_do_not_hear_each_other(
        store_url: Callable[[str], str], shared_name: str, pair: tuple[Notifier, Notifier]) -> None:
    """The channel is per schema / key prefix: another store's changes are not ours."""
    a, b = pair
    async with AsyncExitStack() as stack:
        other = notifier_for(await open_or_fail(stack, store_url(shared_name), shared_name))
        stack.push_async_callback(other.close)
        inbox_b, inbox_other = await listening(b), await listening(other)
        assert await next_message(inbox_b) == (RESYNC, "")
        assert await next_message(inbox_other) == (RESYNC, "")
        await a.publish("deny")
        assert await next_message(inbox_b) == ("deny", "")
        await asyncio.sleep(0.2)
        assert inbox_other.empty()
    if isinstance(a, PostgresNotifier) and isinstance(other, PostgresNotifier):
        assert a.lock_key("x") != other.lock_key("x")  # advisory locks are database-wide


async def _kill_listener(notifier: Notifier) -> None:
    """Cut the listening connection server-side, as a restart or a network fault would."""
    if isinstance(notifier, PostgresNotifier):
        conn = await asyncpg.connect(POSTGRES)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1", f"authgate-notify {notifier.origin}")
        finally:
            await conn.close()
    else:
        assert isinstance(notifier, RedisNotifier)
        client = aioredis.Redis.from_url(REDIS)
        try:
            ids = [c["id"] for c in await client.client_list()
                   if c.get("name") == f"authgate-notify-{notifier.origin}"]
            killed = sum([await client.client_kill_filter(_id=i) for i in ids])
        finally:
            await client.aclose()
    assert killed == 1


async def test_a_lost_connection_comes_back_and_says_resync(pair: tuple[Notifier, Notifier]) -> None:
    """After the listener reconnects it reports RESYNC (messages may be lost) and hears again."""
    a, b = pair
    inbox = await listening(b)
    assert await next_message(inbox) == (RESYNC, "")
    await _kill_listener(b)
    assert await next_message(inbox, within=5) == (RESYNC, "")
    await a.publish("deny", "after")
    assert await next_message(inbox) == ("deny", "after")


@pytest.mark.parametrize("shared_url", [pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
async def test_a_silently_dead_redis_connection_is_noticed(
        pair: tuple[Notifier, Notifier], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """No pong to the keep-alive PING in time (server frozen, NAT forgot us): reconnect, resync."""
    _a, b = pair
    monkeypatch.setattr(notify, "KEEPALIVE", 0.2)
    monkeypatch.setattr(notify, "CONNECT_TIMEOUT", 0.3)
    inbox = await listening(b)
    assert await next_message(inbox) == (RESYNC, "")
    client = aioredis.Redis.from_url(REDIS)
    try:
        await client.client_pause(1000)  # answers nothing (PINGs included) for a second
    finally:
        await client.aclose()
    started = time.monotonic()
    assert await next_message(inbox, within=5) == (RESYNC, "")
    assert time.monotonic() - started >= 0.5  # not before the server answered again
    assert "no answer to PING" in caplog.text


async def test_the_lock_admits_one_holder_at_a_time(pair: tuple[Notifier, Notifier]) -> None:
    """Many contenders on two instances: never two inside, every one gets in."""
    inside, most, done = 0, 0, 0

    async def contender(n: Notifier) -> None:
        nonlocal inside, most, done
        async with n.lock("refresh:alice\x00github", ttl=10):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1
            done += 1

    await asyncio.gather(*(contender(n) for n in pair for _ in range(8)))
    assert (most, done) == (1, 16)


async def test_locks_of_other_names_do_not_wait(pair: tuple[Notifier, Notifier]) -> None:
    """One lock per user and provider: another key is not held up."""
    a, b = pair
    async with a.lock("one", ttl=10), b.lock("two", ttl=10, wait=0.5):
        pass


async def test_a_waiter_gives_up_after_its_wait(pair: tuple[Notifier, Notifier]) -> None:
    """Not acquired within ``wait``: LockTimeout, and the holder is unaffected."""
    a, b = pair
    async with a.lock("busy", ttl=10):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            async with b.lock("busy", ttl=10, wait=0.3):
                pytest.fail("entered a held lock")
        assert 0.25 <= time.monotonic() - started < 2
    async with b.lock("busy", ttl=10, wait=1):  # released normally afterwards
        pass


async def test_a_holder_that_hangs_loses_the_lock_after_its_ttl(
        pair: tuple[Notifier, Notifier], caplog: pytest.LogCaptureFixture) -> None:
    """The lock expires ``ttl`` after a stuck holder took it; the holder is told on release."""
    a, b = pair
    taken = asyncio.Event()
    got_at: list[float] = []

    async def hung() -> None:
        async with a.lock("stuck", ttl=0.4):
            taken.set()
            await asyncio.sleep(1.5)

    async def waiter() -> None:
        await taken.wait()
        async with b.lock("stuck", ttl=10, wait=5):
            got_at.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(hung(), waiter())
    assert 0.3 <= got_at[0] - started < 1.4
    assert "expired before it was released" in caplog.text


async def test_the_local_notifier_tells_no_one_and_locks_in_process() -> None:
    """SQLite, file, Azure Blob: publish and subscribe do nothing; the lock is an asyncio.Lock."""
    n = LocalNotifier()
    assert not n.shared
    await n.subscribe(lambda channel, payload: asyncio.sleep(0))
    await n.publish("deny")
    async with n.lock("x", ttl=1):
        with pytest.raises(LockTimeout):
            async with n.lock("x", ttl=1, wait=0.05):
                pytest.fail("entered a held lock")
        async with n.lock("y", ttl=1, wait=0.05):
            pass
    async with n.lock("x", ttl=1, wait=0.05):
        pass
    assert len(n._locks) == 0
    await n.close()
