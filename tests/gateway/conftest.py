"""Fixtures for the gateway's login tests: the independent IdP, authgate in-process, a browser.

* ``oidc_peer`` -- npm ``oidc-provider`` on loopback, once per session, with a
  confidential client ``authgate`` registered for the gateway's callbacks.
* ``login_gate`` / ``login_app`` -- authgate over a real SQLite store; the peer
  appears as provider ``corp`` (OpenID Connect) and ``plain`` (the same
  server as a plain OAuth 2.0 provider), beside the built-in ``local``.
* ``browser`` -- an httpx client that reaches authgate through its ASGI app
  (``http://localhost``) and the peer over real HTTP, with one cookie jar,
  like a browser would.

Missing node/npm fails these tests (the peer module raises), never skips.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from authgate.app import create_app
from authgate.clock import Clock, FrozenClock, SystemClock
from authgate.config import Settings
from authgate.gateway import Gateway
from authgate.service import AuthGate

from ..peers.oidc_provider import PeerError, client, running
from ..support import make_settings, open_gate

PUBLIC = "http://localhost"
RP_ID = "authgate"
RP_SECRET = secrets.token_urlsafe(32)
SIGNING_KEY = secrets.token_hex(32)


def callback(provider: str) -> str:
    return f"{PUBLIC}/.auth/login/{provider}/callback"


@pytest.fixture(scope="session")
def oidc_peer() -> Iterator[str]:
    """The issuer URL of a running oidc-provider (rotating refresh tokens, PKCE required)."""
    config = {
        "clients": [client(RP_ID, RP_SECRET, redirect_uris=[callback("corp"), callback("plain")],
                           introspection_endpoint_auth_method="client_secret_basic")],
        "pkceRequired": True,
        "rotateRefreshToken": True,
        "accounts": {"alice": {"name": "Alice Liddell", "email": "alice@example.test"}},
    }
    try:
        with running(config) as issuer:
            yield issuer
    except PeerError as exc:
        pytest.fail(f"the oidc-provider peer is needed: {exc}", pytrace=False)


def peer_providers(issuer: str) -> dict[str, dict[str, Any]]:
    return {
        "corp": {"type": "oidc", "issuer": issuer, "client_id": RP_ID, "client_secret": RP_SECRET,
                 "scopes": ["openid", "profile", "email", "offline_access"],
                 "login_params": {"prompt": "consent"}},
        "plain": {"type": "oauth2", "client_id": RP_ID, "client_secret": RP_SECRET,
                  "authorization_endpoint": f"{issuer}/auth", "token_endpoint": f"{issuer}/token",
                  "userinfo_endpoint": f"{issuer}/me",
                  "revocation_endpoint": f"{issuer}/token/revocation",
                  "scopes": ["openid", "email"]},
    }


def gateway_settings(tmp_path: Path, *, public_url: str = PUBLIC,
                     providers: dict[str, dict[str, Any]] | None = None,
                     **gateway: Any) -> Settings:
    s = make_settings(tmp_path)
    s.public_url = public_url
    s.session.signing_key = SIGNING_KEY
    s.providers = dict(providers or {})
    for key, value in gateway.items():
        setattr(s.gateway, key, value)
    return s


async def open_app(gate: AuthGate) -> Starlette:
    return create_app(gate=gate)


def gateway_of_app(app: Starlette) -> Gateway:
    gw: Gateway = app.state.gateway
    return gw


@pytest.fixture
def frozen() -> FrozenClock:
    return FrozenClock()


async def _gate(tmp_path: Path, settings: Settings, clock: Clock) -> AuthGate:
    return await open_gate(tmp_path, clock, settings)


@pytest.fixture
async def peer_app(tmp_path: Path, oidc_peer: str) -> AsyncIterator[Starlette]:
    """authgate with ``corp`` and ``plain`` at the peer, on the wall clock (the peer's)."""
    gate = await _gate(tmp_path, gateway_settings(tmp_path, providers=peer_providers(oidc_peer)),
                       SystemClock())
    app = create_app(gate=gate)
    yield app
    await gateway_of_app(app).close()
    await gate.close()


@pytest.fixture
async def local_app(tmp_path: Path, frozen: FrozenClock) -> AsyncIterator[Starlette]:
    """authgate with only the built-in ``local`` provider, on a frozen clock."""
    gate = await _gate(tmp_path, gateway_settings(
        tmp_path, allowed_external_redirect_urls=["https://app.example/return", "myapp://auth"]),
        frozen)
    app = create_app(gate=gate)
    yield app
    await gateway_of_app(app).close()
    await gate.close()


def browser_for(app: Starlette, base: str = PUBLIC) -> httpx.AsyncClient:
    """One cookie jar; ``base``'s host goes to the ASGI app, anything else over the network."""
    return httpx.AsyncClient(mounts={base: httpx.ASGITransport(app=app)}, base_url=base,
                             timeout=30.0)


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on whichever app the test uses (``peer_app`` or ``local_app``)."""
    name = "peer_app" if "peer_app" in request.fixturenames else "local_app"
    app: Starlette = request.getfixturevalue(name)
    async with browser_for(app) as b:
        yield b
