"""Fixtures for the issuer's protocol tests: a real app over a real SQLite store, frozen time."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authgate.accounts import User
from authgate.app import create_app
from authgate.clock import FrozenClock
from authgate.codes import CodeGrant
from authgate.hashing import new_id
from authgate.oauth import pkce
from authgate.service import AuthGate

from ..support import open_gate

CONF_ID = "conf"
PUBLIC_ID = "spa"
REDIRECT = "https://app.example/cb"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def gate(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[AuthGate]:
    g = await open_gate(tmp_path, clock)
    yield g
    await g.close()


@pytest.fixture
async def http(gate: AuthGate) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gate=gate)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://localhost") as c:
        yield c


@pytest.fixture
async def conf(gate: AuthGate) -> tuple[str, str]:
    """A confidential client allowed every grant: (client_id, secret)."""
    _client, secret = await gate.clients.add(
        CONF_ID, redirect_uris=[REDIRECT],
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        scopes=["openid", "profile", "email", "offline_access", "api"])
    assert secret is not None
    return CONF_ID, secret


@pytest.fixture
async def spa(gate: AuthGate) -> str:
    await gate.clients.add(PUBLIC_ID, public=True, redirect_uris=[REDIRECT],
                           scopes=["openid", "profile", "offline_access", "api"])
    return PUBLIC_ID


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


VERIFIER = "v" * 43 + "-verifier-0123456789"


@pytest.fixture
async def alice(gate: AuthGate) -> User:
    return await gate.accounts.add("alice", "correct horse battery", email="alice@example.com")


async def issue_code(gate: AuthGate, client_id: str, user: User, *,
                     scope: str = "openid profile offline_access api",
                     verifier: str | None = VERIFIER, nonce: str | None = "n-1",
                     redirect_uri: str = REDIRECT) -> tuple[str, CodeGrant]:
    """An authorization code as the authorize endpoint would issue it."""
    grant = CodeGrant(client_id=client_id, user_id=user.id, redirect_uri=redirect_uri, scope=scope,
                      family=new_id(), auth_time=gate.clock.now(), nonce=nonce,
                      code_challenge=pkce.s256(verifier) if verifier else None, sid="sid-1")
    return await gate.codes.issue(grant), grant


async def login_tokens(http: httpx.AsyncClient, gate: AuthGate, client: tuple[str, str], user: User,
                       scope: str = "openid profile offline_access api") -> dict[str, Any]:
    """Run the code grant for ``user`` at confidential ``client``; return the token response."""
    code, _ = await issue_code(gate, client[0], user, scope=scope)
    r = await http.post("/.auth/oauth2/token", headers=basic(*client), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def refresh(http: httpx.AsyncClient, client: tuple[str, str], token: str,
                  **extra: str) -> httpx.Response:
    return await http.post("/.auth/oauth2/token", headers=basic(*client),
                           data={"grant_type": "refresh_token", "refresh_token": token, **extra})


async def introspect(http: httpx.AsyncClient, client: tuple[str, str], token: str) -> dict[str, Any]:
    r = await http.post("/.auth/oauth2/introspect", headers=basic(*client), data={"token": token})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body
