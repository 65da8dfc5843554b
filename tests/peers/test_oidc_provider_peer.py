"""The oidc-provider peer behaves as the upstream IdP the other tests assume."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .oidc_provider import (
    authorize_url,
    client,
    mint_refresh_tokens,
    running,
    scripted_login,
    scripted_login_async,
)

pytestmark = pytest.mark.node

RP = "authgate-test"
RP_SECRET = secrets.token_urlsafe(32)
SERVICE = "service"
SERVICE_SECRET = secrets.token_urlsafe(32)
CALLBACK = "http://127.0.0.1:9/callback"  # never followed: the login stops at the redirect


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    config = {
        "clients": [
            client(RP, RP_SECRET, redirect_uris=[CALLBACK]),
            client(SERVICE, SERVICE_SECRET, grant_types=["client_credentials"],
                   scope="api:read"),
        ],
        "scopes": ["api:read"],
        "testApi": True,
    }
    with running(config) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


def _discover(http: httpx.Client, issuer: str) -> dict[str, Any]:
    response = http.get(f"{issuer}/.well-known/openid-configuration")
    assert response.status_code == 200
    meta: dict[str, Any] = response.json()
    return meta


def _refresh(http: httpx.Client, issuer: str, token: str) -> httpx.Response:
    return http.post(_discover(http, issuer)["token_endpoint"], auth=(RP, RP_SECRET),
                     data={"grant_type": "refresh_token", "refresh_token": token})


def _login_for_refresh_token(http: httpx.Client, issuer: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url = authorize_url(issuer, RP, CALLBACK, scope="openid email offline_access",
                        prompt="consent", state=state, nonce=nonce,
                        code_challenge=challenge.rstrip(b"=").decode(),
                        code_challenge_method="S256")
    final = scripted_login(url, login="alice")
    assert final.startswith(CALLBACK)
    query = parse_qs(urlsplit(final).query)
    assert query["state"] == [state]
    assert "code" in query, final
    response = http.post(_discover(http, issuer)["token_endpoint"], auth=(RP, RP_SECRET), data={
        "grant_type": "authorization_code", "code": query["code"][0],
        "redirect_uri": CALLBACK, "code_verifier": verifier})
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()
    assert "offline_access" in tokens["scope"].split()
    refresh: str = tokens["refresh_token"]
    return refresh


def test_discovery_advertises_what_authgate_relies_on(issuer: str, http: httpx.Client) -> None:
    """Discovery names the issuer, PKCE S256 and every endpoint the tests use."""
    meta = _discover(http, issuer)
    assert meta["issuer"] == issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        meta["grant_types_supported"])
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                     "introspection_endpoint", "revocation_endpoint", "userinfo_endpoint"):
        assert meta[endpoint].startswith(issuer)
    assert http.get(meta["jwks_uri"]).json()["keys"]


def test_client_credentials_token_is_introspectable(issuer: str, http: httpx.Client) -> None:
    """A confidential client gets an access token that introspection reports active."""
    meta = _discover(http, issuer)
    response = http.post(meta["token_endpoint"], auth=(SERVICE, SERVICE_SECRET),
                         data={"grant_type": "client_credentials", "scope": "api:read"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api:read"
    info = http.post(meta["introspection_endpoint"], auth=(SERVICE, SERVICE_SECRET),
                     data={"token": body["access_token"]}).json()
    assert info["active"] is True
    assert info["client_id"] == SERVICE


def test_client_credentials_rejects_a_wrong_secret(issuer: str, http: httpx.Client) -> None:
    """A wrong client secret is invalid_client."""
    response = http.post(_discover(http, issuer)["token_endpoint"], auth=(SERVICE, "wrong"),
                         data={"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_scripted_login_refresh_and_revocation(issuer: str, http: httpx.Client) -> None:
    """Login without a browser, refresh (rotating), then revocation kills the token."""
    first = _login_for_refresh_token(http, issuer)
    refreshed = _refresh(http, issuer, first)
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()["refresh_token"]
    assert second != first  # rotated
    revoked = http.post(_discover(http, issuer)["revocation_endpoint"], auth=(RP, RP_SECRET),
                        data={"token": second, "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200
    after = _refresh(http, issuer, second)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_reuse_of_a_rotated_refresh_token_is_invalid_grant(issuer: str,
                                                          http: httpx.Client) -> None:
    """Presenting a rotated refresh token again fails and revokes its successor."""
    first = _login_for_refresh_token(http, issuer)
    second = _refresh(http, issuer, first).json()["refresh_token"]
    assert _refresh(http, issuer, first).json()["error"] == "invalid_grant"
    assert _refresh(http, issuer, second).json()["error"] == "invalid_grant"


def test_minted_refresh_tokens_are_independent(issuer: str, http: httpx.Client) -> None:
    """The test API mints refresh tokens of separate grants (benchmark pools)."""
    a, b = mint_refresh_tokens(issuer, RP, 2)
    assert _refresh(http, issuer, a).status_code == 200
    assert _refresh(http, issuer, a).status_code == 400  # reuse revokes a's grant only
    assert _refresh(http, issuer, b).status_code == 200


async def test_async_scripted_login_returns_code_and_state(issuer: str) -> None:
    """The async variant drives the same forms to the same redirect."""
    url = authorize_url(issuer, RP, CALLBACK, scope="openid", state="s-123")
    final = await scripted_login_async(url, login="bob")
    query = parse_qs(urlsplit(final).query)
    assert final.startswith(CALLBACK)
    assert query["state"] == ["s-123"]
    assert query["code"]
