"""The UserInfo endpoint (OIDC Core §5.3): bearer access tokens only, claims by scope."""

from __future__ import annotations

import httpx
import pytest

from authgate.clock import FrozenClock
from authgate.id_tokens import mint_id_token
from authgate.service import AuthGate

from ._fixtures import add_user

USERINFO = "/.auth/oauth2/userinfo"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_claims_follow_the_scopes(http: httpx.AsyncClient, gate: AuthGate) -> None:
    user = await add_user(gate)
    full, _ = gate.access.mint(sub=user.id, client_id="conf", scope="openid profile email")
    r = await http.get(USERINFO, headers=bearer(full))
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {"sub": user.id, "name": "Alice Liddell", "preferred_username": "alice",
                        "email": "alice@example.com", "email_verified": False}
    bare, _ = gate.access.mint(sub=user.id, client_id="conf", scope="openid")
    assert (await http.get(USERINFO, headers=bearer(bare))).json() == {"sub": user.id}


async def test_post_with_the_header_works(http: httpx.AsyncClient, gate: AuthGate) -> None:
    user = await add_user(gate)
    token, _ = gate.access.mint(sub=user.id, client_id="conf", scope="openid email")
    r = await http.post(USERINFO, headers=bearer(token))
    assert r.status_code == 200
    assert r.json()["email"] == "alice@example.com"


async def test_no_token_is_401_with_a_challenge(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic Y29uZjpzZWNyZXQ="}, {"Authorization": "Bearer "}):
        r = await http.get(USERINFO, headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_id_token_is_not_an_access_token(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """SECURITY.md 12: right signature, wrong typ and audience -> invalid_token."""
    user = await add_user(gate)
    idt = mint_id_token(gate.keys, issuer=gate.settings.issuer, user=user, client_id="conf",
                        scopes=["openid"], now=gate.clock.now(), lifetime=300,
                        auth_time=gate.clock.now(), nonce=None, sid=None, access_token=None)
    r = await http.get(USERINFO, headers=bearer(idt))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.json()["error"] == "invalid_token"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
async def test_malformed_tokens_are_invalid_token(http: httpx.AsyncClient, token: str) -> None:
    r = await http.get(USERINFO, headers=bearer(token))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_expired_token_is_invalid(http: httpx.AsyncClient, gate: AuthGate,
                                        clock: FrozenClock) -> None:
    user = await add_user(gate)
    token, _ = gate.access.mint(sub=user.id, client_id="conf", scope="openid")
    clock.advance(gate.settings.tokens.access_token_lifetime + gate.settings.tokens.leeway + 1)
    r = await http.get(USERINFO, headers=bearer(token))
    assert r.status_code == 401


async def test_token_without_openid_scope_is_403(http: httpx.AsyncClient, gate: AuthGate) -> None:
    user = await add_user(gate)
    token, _ = gate.access.mint(sub=user.id, client_id="conf", scope="profile api")
    r = await http.get(USERINFO, headers=bearer(token))
    assert r.status_code == 403
    assert r.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


async def test_token_in_body_or_query_is_refused(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """RFC 9700 §4.3.2 / SECURITY.md 16: only the Authorization header carries the token."""
    user = await add_user(gate)
    token, _ = gate.access.mint(sub=user.id, client_id="conf", scope="openid")
    body = await http.post(USERINFO, data={"access_token": token})
    assert body.status_code == 400
    query = await http.get(USERINFO, params={"access_token": token})
    assert query.status_code == 400
    both = await http.post(USERINFO, data={"access_token": token}, headers=bearer(token))
    assert both.status_code == 400


async def test_disabled_or_deleted_user_is_invalid_token(http: httpx.AsyncClient,
                                                         gate: AuthGate) -> None:
    user = await add_user(gate)
    token, _ = gate.access.mint(sub=user.id, client_id="conf", scope="openid")
    user.disabled = True
    await gate.accounts.save(user)
    assert (await http.get(USERINFO, headers=bearer(token))).status_code == 401
    ghost, _ = gate.access.mint(sub="no-such-user", client_id="conf", scope="openid")
    assert (await http.get(USERINFO, headers=bearer(ghost))).status_code == 401


async def test_revoked_token_is_invalid(http: httpx.AsyncClient, gate: AuthGate) -> None:
    user = await add_user(gate)
    token, claims = gate.access.mint(sub=user.id, client_id="conf", scope="openid")
    await gate.denylist.deny_jti(claims["jti"], claims["exp"])
    assert (await http.get(USERINFO, headers=bearer(token))).status_code == 401
