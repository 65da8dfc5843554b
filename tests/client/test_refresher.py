"""Refresher: offline grants kept fresh against a real authgate, with simulated time."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from authgate.client import LoginRequired, OAuth2Auth, Refresher, TokenSet
from authgate.clock import FrozenClock

from .conftest import TOKEN_ENDPOINT, USERINFO, Server, open_server

DAY = 86400.0


class Clocks:
    """The server's clock and ours, moved together (no skew here)."""

    def __init__(self, server: Server) -> None:
        self.server = server.clock
        self.client = FrozenClock(server.clock.now())

    def advance(self, seconds: float) -> None:
        self.server.advance(seconds)
        self.client.advance(seconds)

    def to(self, when: float) -> None:
        self.advance(max(0.0, when - self.client.now()))

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


async def grant(server: Server, clocks: Clocks, name: str) -> OAuth2Auth:
    body = await server.login(name)
    return OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret, clock=clocks.client.now,
                      tokens=TokenSet.from_response(body, now=clocks.client.now()))


@pytest.fixture
async def long_lived(tmp_path: Path) -> AsyncIterator[Server]:
    """A server whose access tokens live a day (so weeks simulate in a few refreshes)."""
    s = await open_server(tmp_path, access_token_lifetime=DAY)
    try:
        yield s
    finally:
        await s.gate.close()


async def test_grant_outlives_its_inactivity_limit(long_lived: Server) -> None:
    """Three weeks without API traffic: the refreshed grant works, the neglected one died idle."""
    server, clocks = long_lived, Clocks(long_lived)
    kept, neglected = await grant(server, clocks, "alice"), await grant(server, clocks, "bob")
    start = clocks.client.now()
    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now, rng=random.Random(7),
                              max_interval=2 * DAY)  # the token lifetime sets the pace
        refresher.add("alice", kept)
        while clocks.client.now() - start < 21 * DAY:
            clocks.advance(await refresher.tick())
        assert 21 <= refresher.stats.refreshed <= 25 and refresher.stats.failures == 0
        assert (await http.get(USERINFO, auth=kept)).status_code == 200
        with pytest.raises(LoginRequired):  # 14 days idle killed bob's refresh token
            await http.get(USERINFO, auth=neglected)


async def test_backoff_on_provider_errors_then_recovery(server: Server) -> None:
    """503s and a network error are retried after 1, 2, 4, 8 s (jittered by half); then it recovers."""
    clocks = Clocks(server)
    auth = await grant(server, clocks, "alice")
    failures = [httpx.Response(503, json={"error": "temporarily_unavailable"})] * 3
    attempts: list[float] = []

    def outage(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/token"):
            attempts.append(clocks.client.now())
            if failures:
                return failures.pop()
            if len(attempts) == 4:
                raise httpx.ConnectError("connection refused", request=request)
        return None

    server.wire.fault = outage
    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now, rng=random.Random(3))
        refresher.add("alice", auth)
        for _ in range(5):
            clocks.to(refresher.due_at("alice"))
            await refresher.tick()
    waits = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(waits) == 4
    for n, wait in enumerate(waits):
        assert 2**n / 2 <= wait <= 2**n, waits
    assert refresher.stats.failures == 4 and refresher.stats.refreshed == 1
    assert len(server.wire.refreshes()) == 4  # 503s answered by the outage, then the real one
    assert auth.tokens is not None and auth.tokens.expires_at is not None
    assert refresher.due_at("alice") > auth.tokens.expires_at - 3600  # back on the normal schedule


async def test_backoff_is_capped(server: Server) -> None:
    """However long the outage, the wait never exceeds max_backoff."""
    clocks = Clocks(server)
    server.wire.fault = lambda request: httpx.Response(502)
    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now, max_backoff=30)
        refresher.add("alice", await grant(server, clocks, "alice"))
        clocks.to(refresher.due_at("alice"))
        for _ in range(10):
            await refresher.tick()
            assert refresher.due_at("alice") - clocks.client.now() <= 30
            clocks.to(refresher.due_at("alice"))
    assert refresher.stats.failures == 10


async def test_dead_grant_calls_back_and_is_dropped(server: Server) -> None:
    """invalid_grant -> on_dead(name, error) once, the grant is dropped; the others go on."""
    clocks = Clocks(server)
    alice, bob = await grant(server, clocks, "alice"), await grant(server, clocks, "bob")
    assert alice.tokens is not None and alice.tokens.refresh_token
    await server.revoke(alice.tokens.refresh_token)
    dead: list[tuple[str, LoginRequired]] = []

    async def on_dead(name: str, error: LoginRequired) -> None:
        dead.append((name, error))

    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now, on_dead=on_dead)
        refresher.add("alice", alice)
        refresher.add("bob", bob)
        clocks.advance(3600)
        await refresher.tick()
        assert [name for name, _ in dead] == ["alice"] and len(refresher) == 1
        assert refresher.stats.dead == 1 and refresher.stats.refreshed == 1
        clocks.advance(3600)
        await refresher.tick()
    assert len(dead) == 1
    assert len(server.wire.refreshes()) == 3  # alice once (refused), bob twice


async def test_jitter_spreads_grants_issued_together(server: Server) -> None:
    """Grants issued at one moment get different due times, all before expiry minus the lead."""
    clocks = Clocks(server)
    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now, lead=120, jitter=0.1)
        for name in ("u1", "u2", "u3", "u4", "u5"):  # five sign-ins of one user, same moment
            refresher.add(name, await grant(server, clocks, "alice"))
        dues = [refresher.due_at(n) for n in ("u1", "u2", "u3", "u4", "u5")]
    expires = clocks.client.now() + 3600
    assert len(set(dues)) == 5
    assert all(expires - 120 - 360 <= d <= expires - 120 for d in dues)


async def test_live_traffic_refresh_is_not_repeated(server: Server) -> None:
    """When requests already refreshed a grant, the refresher only reschedules it."""
    clocks = Clocks(server)
    auth = await grant(server, clocks, "alice")
    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now, lead=30)
        refresher.add("alice", auth)
        clocks.advance(3600 - 45)  # inside OAuth2Auth's 60 s leeway, before the refresher's due
        assert (await http.get(USERINFO, auth=auth)).status_code == 200
        clocks.to(refresher.due_at("alice"))
        await refresher.tick()
    assert len(server.wire.refreshes()) == 1 and refresher.stats.refreshed == 0


async def test_runs_as_a_background_task(server: Server) -> None:
    """As a task: wakes for new grants, refreshes on schedule, stops cleanly."""
    clocks = Clocks(server)
    alice = await grant(server, clocks, "alice")  # before the refresher's sleeps move the clocks
    async with server.http() as http:
        async with Refresher(http, clock=clocks.client.now, sleep=clocks.sleep) as refresher:
            refresher.add("alice", alice)
            for _ in range(500):
                if refresher.stats.refreshed >= 3:
                    break
                await asyncio.sleep(0.01)
        assert refresher.stats.refreshed >= 3
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "authgate-refresher"]


async def test_a_grant_that_cannot_be_refreshed_is_reported_not_spun_on(server: Server) -> None:
    """No refresh token (a sign-in without offline_access): dead at once, no busy loop."""
    clocks = Clocks(server)
    body = await server.login(scope="openid profile")
    assert "refresh_token" not in body
    dead: list[str] = []
    async with server.http() as http:
        refresher = Refresher(http, clock=clocks.client.now,
                              on_dead=lambda name, error: dead.append(name))
        refresher.add("alice", OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret,
                                          clock=clocks.client.now,
                                          tokens=TokenSet.from_response(body, now=clocks.client.now())))
        clocks.advance(3600)
        assert await refresher.tick() == refresher.max_interval  # nothing left to schedule
    assert dead == ["alice"] and server.wire.calls == []
