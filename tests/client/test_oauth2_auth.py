"""OAuth2Auth against a real authgate, in-process through the ASGI app (STYLE rule 10)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authgate.client import LoginRequired, MemoryStorage, OAuth2Auth, TokenEndpointError, TokenSet
from authgate.clock import FrozenClock

from .conftest import DENY, TOKEN_ENDPOINT, USERINFO, Server

LIFETIME = 3600  # the server's default access-token lifetime
SERVER_LEEWAY = 60  # the server accepts a token this long past its exp


def make_auth(server: Server, body: dict[str, object], clock: FrozenClock,
              storage: MemoryStorage | None = None) -> OAuth2Auth:
    return OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret,
                      tokens=TokenSet.from_response(body, now=clock.now()),
                      storage=storage or MemoryStorage(), clock=clock.now)


async def test_proactive_refresh_within_the_leeway(server: Server) -> None:
    """A token expiring within the leeway is refreshed before the request: no 401 is ever seen."""
    clock = FrozenClock(server.clock.now())
    auth = make_auth(server, await server.login(), clock)
    first = auth.tokens
    async with server.http() as http:
        server.clock.advance(LIFETIME - 120)
        clock.advance(LIFETIME - 120)
        assert (await http.get(USERINFO, auth=auth)).status_code == 200
        assert server.wire.refreshes() == []  # two minutes left: no refresh yet

        server.clock.advance(90)
        clock.advance(90)  # 30 s left, inside the 60 s leeway
        r = await http.get(USERINFO, auth=auth)
    assert r.status_code == 200
    assert len(server.wire.refreshes()) == 1
    assert auth.tokens is not None and first is not None
    assert auth.tokens.access_token != first.access_token
    assert server.wire.calls[-1].authorization == f"Bearer {auth.tokens.access_token}"
    assert server.wire.to("/.auth/oauth2/userinfo", 401) == []


async def test_401_refreshes_once_and_retries_once(server: Server) -> None:
    """A token the server refuses (client unaware) -> exactly: 401, one refresh, one retry -> 200."""
    clock = FrozenClock(server.clock.now())  # our clock stands still: we believe the token valid
    auth = make_auth(server, await server.login(), clock)
    server.clock.advance(LIFETIME + SERVER_LEEWAY + 1)
    async with server.http() as http:
        r = await http.get(USERINFO, auth=auth)
    assert r.status_code == 200
    assert [(c.path, c.status, c.grant_type) for c in server.wire.calls] == [
        ("/.auth/oauth2/userinfo", 401, None),
        ("/.auth/oauth2/token", 200, "refresh_token"),
        ("/.auth/oauth2/userinfo", 200, None),
    ]


async def test_a_second_401_is_returned_not_retried(server: Server) -> None:
    """A resource that refuses the fresh token too gets exactly one retry; its 401 comes back."""
    clock = FrozenClock(server.clock.now())
    auth = make_auth(server, await server.login(), clock)
    async with server.http() as http:
        r = await http.get(DENY, auth=auth)
    assert r.status_code == 401
    assert [(c.path, c.status) for c in server.wire.calls] == [
        ("/api/deny", 401), ("/.auth/oauth2/token", 200), ("/api/deny", 401)]


@pytest.mark.parametrize("who_knows", ["client", "server"])
async def test_fifty_concurrent_tasks_share_one_refresh(server: Server, who_knows: str) -> None:
    """50 tasks with an expired token -> exactly one refresh on the wire, and every request succeeds.

    ``client``: our clock knows it expired (proactive path); ``server``: only the
    server does, so all 50 get a 401 first (reactive path).
    """
    clock = FrozenClock(server.clock.now())
    auth = make_auth(server, await server.login(), clock)
    server.clock.advance(LIFETIME + SERVER_LEEWAY + 1)
    if who_knows == "client":
        clock.advance(LIFETIME + SERVER_LEEWAY + 1)
    else:
        server.wire.hold("/.auth/oauth2/userinfo", 50)  # all 50 send the old token first
    server.wire.latency = 0.005
    async with server.http() as http:
        responses = await asyncio.gather(*(http.get(USERINFO, auth=auth) for _ in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert len(server.wire.refreshes()) == 1
    expected_401s = 50 if who_knows == "server" else 0
    assert len(server.wire.to("/.auth/oauth2/userinfo", 401)) == expected_401s


@pytest.mark.parametrize("skew", [-300.0, 300.0])
async def test_skewed_local_clock(server: Server, skew: float) -> None:
    """With our clock 5 minutes off either way, we refresh before the server refuses, never in a loop."""
    clock = FrozenClock(server.clock.now() + skew)
    lifetime = 240.0  # shorter than the skew: an absolute exp read naively would look expired
    server.gate.settings.tokens.access_token_lifetime = lifetime
    server.gate.access.lifetime = lifetime
    auth = make_auth(server, await server.login(), clock)
    async with server.http() as http:
        for _ in range(5):  # fresh token, both clocks still: no refresh at all
            assert (await http.get(USERINFO, auth=auth)).status_code == 200
        assert server.wire.refreshes() == []
        for _ in range(20):  # then an hour in 30 s steps: a refresh per lifetime, never a 401
            server.clock.advance(30)
            clock.advance(30)
            assert (await http.get(USERINFO, auth=auth)).status_code == 200
    assert server.wire.to("/.auth/oauth2/userinfo", 401) == []
    assert 2 <= len(server.wire.refreshes()) <= 600 / (lifetime - 60) + 1


async def test_dead_grant_raises_login_required_without_hammering(server: Server) -> None:
    """A revoked refresh token -> LoginRequired; asking again does not go back to the server."""
    clock = FrozenClock(server.clock.now())
    body = await server.login()
    auth = make_auth(server, body, clock)
    await server.revoke(str(body["refresh_token"]))
    clock.advance(LIFETIME)
    async with server.http() as http:
        with pytest.raises(LoginRequired, match="sign in again"):
            await http.get(USERINFO, auth=auth)
        assert len(server.wire.refreshes()) == 1
        with pytest.raises(LoginRequired):
            await http.get(USERINFO, auth=auth)
    assert len(server.wire.refreshes()) == 1


async def test_sync_client_through_the_same_flow(server: Server) -> None:
    """The one flow also drives httpx.Client (here via a thread running the ASGI app's wire)."""
    clock = FrozenClock(server.clock.now())
    auth = make_auth(server, await server.login(), clock)
    server.clock.advance(LIFETIME + SERVER_LEEWAY + 1)
    loop = asyncio.get_running_loop()

    class Bridge(httpx.BaseTransport):
        """Send sync requests to the async wire, on this test's event loop."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            future = asyncio.run_coroutine_threadsafe(self._send(request), loop)
            return future.result(10)

        async def _send(self, request: httpx.Request) -> httpx.Response:
            response = await server.wire.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

    def call() -> int:
        request = httpx.Request("GET", USERINFO)
        with httpx.Client(transport=Bridge()) as http:
            return http.send(request, auth=auth).status_code

    assert await asyncio.to_thread(call) == 200
    assert len(server.wire.refreshes()) == 1


async def test_early_refresh_failing_briefly_does_not_fail_a_valid_token(server: Server) -> None:
    """Token endpoint down (503) while the token still has 30 s: the request goes out with it."""
    clock = FrozenClock(server.clock.now())
    auth = make_auth(server, await server.login(), clock)

    def token_endpoint_down(request: httpx.Request) -> httpx.Response | None:
        if request.url.path.endswith("/token"):
            return httpx.Response(503, json={"error": "temporarily_unavailable"})
        return None

    server.wire.fault = token_endpoint_down
    async with server.http() as http:
        for c in (server.clock, clock):
            c.advance(LIFETIME - 30)
        assert (await http.get(USERINFO, auth=auth)).status_code == 200
        for c in (server.clock, clock):
            c.advance(LIFETIME)
        with pytest.raises(TokenEndpointError) as caught:  # expired: nothing valid to send
            await http.get(USERINFO, auth=auth)
    assert caught.value.retryable and caught.value.status_code == 503
    assert [c.status for c in server.wire.calls] == [503, 200, 503]
