"""EasyAuthClient against authgate's real Easy Auth gateway (``/.auth/login``, ``/me``, ``/refresh``).

The ``local`` provider stands in for Google & co.: a client-directed login with
an authorization code makes the gateway hold a provider refresh token, so
``/.auth/refresh`` can renew the session token -- also up to 72 hours after
it expired (``token_refresh_extension_hours``).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authgate.client import (
    EasyAuthClient,
    LoginRequired,
    MemoryStorage,
    ProviderIdentity,
    TokenEndpointError,
)
from authgate.clock import FrozenClock
from authgate.codes import CodeGrant
from authgate.hashing import new_id
from authgate.oauth import pkce

from .conftest import BASE, VERIFIER, Server

SESSION = 8 * 3600  # session token lifetime (session.cookie_lifetime)
LEEWAY = 60  # the gateway's leeway on token expiry
CALLBACK = f"{BASE}/.auth/login/local/callback"
ME, REFRESH = "/.auth/me", "/.auth/refresh"


async def provider_code(server: Server, name: str = "alice") -> str:
    """A code of authgate's issuer for the gateway's internal client, as after a browser sign-in."""
    user = await server.user(name)
    return await server.gate.codes.issue(CodeGrant(
        client_id="authgate-gateway", user_id=user.id, redirect_uri=CALLBACK,
        scope="openid profile email offline_access", family=new_id(),
        auth_time=server.clock.now(), nonce=None, code_challenge=pkce.s256(VERIFIER), sid=None))


async def signed_in(server: Server, http: httpx.AsyncClient, clock: FrozenClock) -> EasyAuthClient:
    easy = EasyAuthClient(BASE, storage=MemoryStorage(), clock=clock.now)
    user_id = await easy.alogin(http, "local", authorization_code=await provider_code(server),
                                code_verifier=VERIFIER, redirect_uri=CALLBACK)
    assert user_id and easy.session_token
    server.wire.clear()
    return easy


async def test_client_directed_login_and_me(server: Server) -> None:
    """Login with a provider access token -> a stored session token; /.auth/me as typed data."""
    clock = FrozenClock(server.clock.now())
    storage = MemoryStorage()
    easy = EasyAuthClient(BASE, storage=storage, clock=clock.now)
    access_token = (await server.login())["access_token"]
    async with server.http() as http:
        user_id = await easy.alogin(http, "local", access_token=access_token)
        saved = storage.load()
        assert saved is not None and saved.access_token == easy.session_token
        identities = await easy.ame(http)
    assert user_id == server.users["alice"].id
    [me] = identities
    assert isinstance(me, ProviderIdentity)
    assert me.provider_name == "local" and me.user_id == user_id and me.expires_on is not None
    assert me.access_token == access_token and access_token not in repr(me)
    assert server.wire.to(ME)[0].status == 200


async def test_401_calls_refresh_once_and_retries(server: Server) -> None:
    """The RefreshUser pattern: 401 -> /.auth/refresh (expired token, inside 72 h) -> retry -> 200."""
    clock = FrozenClock(server.clock.now())  # we do not notice the expiry
    async with server.http() as http:
        easy = await signed_in(server, http, clock)
        old = easy.session_token
        server.clock.advance(SESSION + LEEWAY + 3600)
        r = await http.get(ME, auth=easy)
    assert r.status_code == 200
    assert [(c.path, c.status) for c in server.wire.calls] == [(ME, 401), (REFRESH, 200), (ME, 200)]
    assert easy.session_token != old


async def test_refresh_ahead_of_expiry_and_within_the_window(server: Server) -> None:
    """Our clock says expired (2 days ago): refresh first, inside the 72 h window; no 401."""
    clock = FrozenClock(server.clock.now())
    async with server.http() as http:
        easy = await signed_in(server, http, clock)
        for c in (server.clock, clock):
            c.advance(SESSION + 48 * 3600)
        identities = await easy.ame(http)
    assert identities[0].provider_name == "local"
    assert [(c.path, c.status) for c in server.wire.calls] == [(REFRESH, 200), (ME, 200)]


async def test_past_the_window_the_user_must_sign_in(server: Server) -> None:
    """73 h after expiry: LoginRequired, and no hopeless /.auth/refresh is attempted."""
    clock = FrozenClock(server.clock.now())
    async with server.http() as http:
        easy = await signed_in(server, http, clock)
        for c in (server.clock, clock):
            c.advance(SESSION + 73 * 3600)
        with pytest.raises(LoginRequired):
            await easy.ame(http)
    assert server.wire.to(REFRESH) == []


async def test_provider_refusal_means_login_required(server: Server) -> None:
    """The provider grant was revoked: /.auth/refresh answers 403 -> LoginRequired."""
    clock = FrozenClock(server.clock.now())
    async with server.http() as http:
        easy = await signed_in(server, http, clock)
        [me] = await easy.ame(http)
        assert me.refresh_token is not None
        entry = await server.gate.refresh.lookup(me.refresh_token)
        assert entry is not None and entry.grant_id is not None
        await server.gate.refresh.revoke_family(entry.grant_id, user=None, client=None)
        with pytest.raises(LoginRequired, match="refused"):
            await easy.arefresh(http)


async def test_no_stored_provider_refresh_token_is_a_clear_error(server: Server) -> None:
    """Signed in with a bare access token: nothing to refresh with -> 400 explained."""
    clock = FrozenClock(server.clock.now())
    easy = EasyAuthClient(BASE, clock=clock.now)
    async with server.http() as http:
        await easy.alogin(http, "local", access_token=(await server.login())["access_token"])
        with pytest.raises(TokenEndpointError, match="offline access") as caught:
            await easy.arefresh(http)
    assert caught.value.status_code == 400 and not isinstance(caught.value, LoginRequired)


async def test_concurrent_401s_share_one_gateway_refresh(server: Server) -> None:
    """20 tasks refused at once -> one /.auth/refresh, all retried successfully."""
    clock = FrozenClock(server.clock.now())
    async with server.http() as http:
        easy = await signed_in(server, http, clock)
        server.clock.advance(SESSION + LEEWAY + 60)
        server.wire.hold(ME, 20)
        server.wire.latency = 0.005
        responses = await asyncio.gather(*(http.get(ME, auth=easy) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len(server.wire.to(REFRESH)) == 1 and len(server.wire.to(ME, 401)) == 20
