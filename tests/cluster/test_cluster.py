"""Cluster wiring in one process: what a change on instance A does to the caches of instance B.

B and the control instance C run on frozen clocks, so their own periodic
re-checks (denylist 1 s, client cache 2 s, keys 30 s) never come due: whatever
B notices, it noticed through a notification; C, which does not listen,
shows what B would have seen without one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from authgate.clock import FrozenClock
from authgate.cluster import Cluster
from authgate.config import Settings
from authgate.errors import InvalidToken
from authgate.gateway import Gateway
from authgate.gateway.freshness import ProviderUnavailable
from authgate.keystore import LocalKeys
from authgate.service import AuthGate
from authgate.store.notify import LocalNotifier, LockTimeout

from ..support import open_gate
from ._instances import NEEDS

Gates = tuple[AuthGate, AuthGate, AuthGate]


@pytest.fixture
async def gates(shared_url: str, shared_name: str, local_keys: LocalKeys,
                tmp_path: Path) -> AsyncIterator[Gates]:
    """A (real clock), B (frozen, listening), C (frozen, not listening) on one store."""
    settings = Settings(public_url="http://authgate.localhost", store=shared_url, data_dir=str(tmp_path))
    async with AsyncExitStack() as stack:
        opened = []
        for clock in (None, FrozenClock(time.time()), FrozenClock(time.time())):
            try:
                gate = await AuthGate.open(settings, clock=clock, local_keys=local_keys)
            except Exception as exc:
                pytest.fail(f"the {shared_name} store cannot open; it needs {NEEDS[shared_name]}: "
                            f"{type(exc).__name__}: {exc}", pytrace=False)
            stack.push_async_callback(gate.close)
            opened.append(gate)
        await opened[1].cluster.start()
        yield opened[0], opened[1], opened[2]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 1.0) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def accepts(gate: AuthGate, token: str) -> bool:
    try:
        await gate.access.verify(token)
    except InvalidToken:
        return False
    return True


async def test_sign_out_everywhere_reaches_a_listening_instance(gates: Gates) -> None:
    """B refuses the user's tokens right after A signs them out; C, not listening, still accepts."""
    a, b, c = gates
    user = await a.accounts.add("alice", "correct horse battery")
    token, _ = a.access.mint(sub=user.id, client_id="spa", scope="openid", grant_id="g1")
    assert await accepts(b, token) and await accepts(c, token)
    await a.sign_out_everywhere(user.id)

    async def refused() -> bool:
        return not await accepts(b, token)

    await eventually(refused)
    assert await accepts(c, token)  # what B would do without notifications, until its re-check


async def test_a_rotated_signing_key_is_loaded_by_a_listening_instance(gates: Gates) -> None:
    """``keys rotate`` on A: B signs with the new key at once."""
    a, b, _c = gates
    new = await a.keys.rotate()

    async def loaded() -> bool:
        return b.keys.active is not None and b.keys.active.kid == new.kid

    await eventually(loaded)


async def test_a_changed_client_is_not_served_from_the_cache(gates: Gates) -> None:
    """B had cached "no such client"; A registers it, then removes it: B follows both."""
    a, b, c = gates
    assert await b.clients.get("late") is None and await c.clients.get("late") is None
    await a.clients.add("late", public=True, redirect_uris=["http://127.0.0.1/cb"])

    async def known() -> bool:
        return await b.clients.get("late") is not None

    async def gone() -> bool:
        return await b.clients.get("late") is None

    await eventually(known)
    assert await c.clients.get("late") is None  # still the cached answer
    await a.clients.remove("late")
    await eventually(gone)


async def test_serve_plugs_the_lock_into_the_gateway_refresh(gates: Gates) -> None:
    """With a shared store the gateway's refresh takes the cross-instance lock."""
    a, _b, _c = gates
    gw = Gateway(a)
    try:
        a.cluster.attach(gw)
        assert gw.freshness.lock_factory == a.cluster.refresh_lock
    finally:
        await gw.close()


class Unreachable(LocalNotifier):
    """A server that went away: publishing fails, and no lock is ever obtained."""

    shared = True

    async def publish(self, channel: str, payload: str = "") -> None:
        raise ConnectionError("server went away")

    @asynccontextmanager
    async def lock(self, name: str, ttl: float, *, wait: float | None = None) -> AsyncIterator[None]:
        raise LockTimeout(name)
        yield


async def test_a_failed_publish_is_logged_and_the_change_stands(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The revocation is in the store either way; others get it on their periodic re-check."""
    gate = await open_gate(tmp_path)
    try:
        Cluster(gate, Unreachable())
        await gate.denylist.deny_jti("j1", gate.clock.now() + 60)
        assert gate.denylist.denies({"jti": "j1"})
        assert "could not notify other instances of a deny change" in caplog.text
    finally:
        await gate.close()


async def test_a_refresh_lock_not_obtained_in_time_is_provider_unavailable(tmp_path: Path) -> None:
    """Another instance stuck in a refresh: 502 try-again, never a second refresh."""
    gate = await open_gate(tmp_path)
    try:
        cluster = Cluster(gate, Unreachable())
        with pytest.raises(ProviderUnavailable):
            async with cluster.refresh_lock("alice\x00github"):
                pytest.fail("entered without the lock")
    finally:
        await gate.close()


async def test_a_single_host_store_neither_listens_nor_plugs_a_lock(tmp_path: Path) -> None:
    """SQLite: nothing to listen to; the gateway keeps its in-process single flight."""
    gate = await open_gate(tmp_path)
    gw = Gateway(gate)
    try:
        assert isinstance(gate.cluster.notifier, LocalNotifier)
        await gate.cluster.start()
        assert not gate.cluster.started
        gate.cluster.attach(gw)
        assert gw.freshness.lock_factory is None
    finally:
        await gw.close()
        await gate.close()
