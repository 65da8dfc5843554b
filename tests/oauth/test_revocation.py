"""Revocation (RFC 7009) and introspection (RFC 7662) over HTTP (SECURITY 53, 54)."""

from __future__ import annotations

import httpx
import pytest

from authgate.accounts import User
from authgate.clock import FrozenClock
from authgate.service import AuthGate

from .conftest import basic, introspect, login_tokens, refresh

REVOKE = "/.auth/oauth2/revoke"
INTROSPECT = "/.auth/oauth2/introspect"


async def test_revoking_refresh_token_kills_family_and_access_tokens(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """Revoking a refresh token revokes its grant, including the access tokens issued from it."""
    tokens = await login_tokens(http, gate, conf, alice)
    r = await http.post(REVOKE, headers=basic(*conf), data={"token": tokens["refresh_token"],
                                                             "token_type_hint": "refresh_token"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert await introspect(http, conf, tokens["access_token"]) == {"active": False}
    assert (await refresh(http, conf, tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_revoking_access_token(http: httpx.AsyncClient, gate: AuthGate,
                                     conf: tuple[str, str], alice: User) -> None:
    """An access token revoked by its client is inactive; its refresh token still works."""
    tokens = await login_tokens(http, gate, conf, alice)
    r = await http.post(REVOKE, headers=basic(*conf), data={"token": tokens["access_token"]})
    assert r.status_code == 200
    assert await introspect(http, conf, tokens["access_token"]) == {"active": False}
    assert (await refresh(http, conf, tokens["refresh_token"])).status_code == 200


async def test_cannot_revoke_another_clients_token(http: httpx.AsyncClient, gate: AuthGate,
                                                   conf: tuple[str, str], alice: User) -> None:
    """Another client's revocation request is answered 200 and changes nothing (SECURITY 53)."""
    _c, other = await gate.clients.add("other", redirect_uris=["https://o.example/cb"],
                                       grant_types=["client_credentials"], scopes=["api"])
    assert other
    tokens = await login_tokens(http, gate, conf, alice)
    for token in (tokens["refresh_token"], tokens["access_token"]):
        r = await http.post(REVOKE, headers=basic("other", other), data={"token": token})
        assert r.status_code == 200
    assert (await introspect(http, conf, tokens["access_token"]))["active"] is True
    assert (await refresh(http, conf, tokens["refresh_token"])).status_code == 200


@pytest.mark.parametrize("token", ["unknown", "agr_" + "A" * 43, "a.b.c", "x" * 3000])
async def test_unknown_tokens_revoke_with_200(http: httpx.AsyncClient, conf: tuple[str, str], token: str) -> None:
    """Unknown tokens get 200 (RFC 7009 §2.2)."""
    r = await http.post(REVOKE, headers=basic(*conf), data={"token": token})
    assert r.status_code == 200


async def test_revocation_requires_client_auth(http: httpx.AsyncClient, gate: AuthGate,
                                               conf: tuple[str, str], alice: User) -> None:
    """Without client credentials nothing is revoked."""
    tokens = await login_tokens(http, gate, conf, alice)
    r = await http.post(REVOKE, data={"token": tokens["refresh_token"]})
    assert r.status_code == 401
    assert (await refresh(http, conf, tokens["refresh_token"])).status_code == 200


async def test_revocation_missing_token_param(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """No token parameter is invalid_request."""
    r = await http.post(REVOKE, headers=basic(*conf), data={})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_introspection_requires_auth(http: httpx.AsyncClient, gate: AuthGate,
                                           conf: tuple[str, str], spa: str, alice: User) -> None:
    """Unauthenticated or public callers get 401 (SECURITY 54)."""
    tokens = await login_tokens(http, gate, conf, alice)
    assert (await http.post(INTROSPECT, data={"token": tokens["access_token"]})).status_code == 401
    r = await http.post(INTROSPECT, data={"token": tokens["access_token"], "client_id": spa})
    assert r.status_code == 401


async def test_introspection_active_response(http: httpx.AsyncClient, gate: AuthGate,
                                             conf: tuple[str, str], alice: User) -> None:
    """An active access token is described by its claims (RFC 7662 §2.2)."""
    tokens = await login_tokens(http, gate, conf, alice)
    body = await introspect(http, conf, tokens["access_token"])
    assert body["active"] is True and body["sub"] == alice.id and body["client_id"] == conf[0]
    assert body["scope"] == "openid profile offline_access api" and body["token_type"] == "Bearer"
    rt = await introspect(http, conf, tokens["refresh_token"])
    assert rt["active"] is True and rt["token_type"] == "refresh_token"


async def test_introspection_inactive_is_exactly_active_false(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User, clock: FrozenClock
) -> None:
    """Expired, ID and garbage tokens are exactly {"active": false}."""
    tokens = await login_tokens(http, gate, conf, alice)
    for token in (tokens["id_token"], "garbage", "a.b.c"):
        assert await introspect(http, conf, token) == {"active": False}
    clock.advance(3600 + 61)
    assert await introspect(http, conf, tokens["access_token"]) == {"active": False}


async def test_sign_out_everywhere_from_another_process_is_seen(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User, clock: FrozenClock
) -> None:
    """A denylist written by another process (e.g. the CLI) is honoured within a second."""
    tokens = await login_tokens(http, gate, conf, alice)
    assert (await introspect(http, conf, tokens["access_token"]))["active"] is True
    from authgate.denylist import Denylist

    other_process = Denylist(gate.store)
    await other_process.deny_user(alice.id, clock.now() + 7200)
    clock.advance(1.01)
    assert await introspect(http, conf, tokens["access_token"]) == {"active": False}
