"""Token-endpoint grants (RFC 6749 §4), one module each, and the shared response.

The successful token response (RFC 6749 §5.1) is built here once for every
grant: an access token (RFC 9068), an ID token when ``openid`` was granted to a
user, and a refresh token when one was issued or rotated.
"""

from __future__ import annotations

from typing import Any

from ...accounts import User
from ...clients import Client
from ...id_tokens import mint_id_token
from ...refresh_tokens import parse_scope
from ...service import AuthGate


def token_response(gate: AuthGate, *, client: Client, user: User | None, scope: str,
                   family: str | None, auth_time: float | None, nonce: str | None = None,
                   sid: str | None = None, refresh_token: str | None = None,
                   id_token: bool = True) -> dict[str, Any]:
    lifetime = client.access_token_lifetime or gate.settings.tokens.access_token_lifetime
    access, _claims = gate.access.mint(
        sub=user.id if user else client.client_id, client_id=client.client_id, scope=scope,
        grant_id=family, auth_time=auth_time, lifetime=lifetime)
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                            "expires_in": int(lifetime), "scope": scope}
    scopes = parse_scope(scope)
    if user is not None and id_token and "openid" in scopes:
        t = gate.settings.tokens
        body["id_token"] = mint_id_token(
            gate.keys, issuer=gate.settings.issuer, user=user, client_id=client.client_id,
            scopes=scopes, now=gate.clock.now(), lifetime=t.id_token_lifetime,
            auth_time=auth_time or gate.clock.now(), nonce=nonce, sid=sid, access_token=access)
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


def may_get_refresh_token(gate: AuthGate, client: Client, scopes: list[str]) -> bool:
    """DESIGN.md §2.2: only with offline_access, only for clients allowed the grant."""
    if "offline_access" not in scopes or "refresh_token" not in client.grant_types:
        return False
    return not client.public or gate.settings.tokens.public_clients_refresh
