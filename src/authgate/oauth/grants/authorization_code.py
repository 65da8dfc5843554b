"""The authorization code grant at the token endpoint, RFC 6749 §4.1.3 + RFC 7636 §4.6.

Every check that a stranger could fail (unknown code, another client's code,
a different redirect URI, a wrong PKCE verifier) is made *before* the code is
consumed, so an invalid request revokes nothing (SECURITY.md). A request that
passes them all with an already-used code is a real replay: the grant the code
started is revoked, including the access tokens already issued from it
(RFC 6749 §4.1.2, RFC 9700 §4.2.4).
"""

from __future__ import annotations

from typing import Any

from ...clients import Client
from ...errors import InvalidGrant, InvalidRequest, UnauthorizedClient
from ...hashing import equal
from ...refresh_tokens import parse_scope
from ...service import AuthGate
from .. import pkce
from . import may_get_refresh_token, token_response


async def grant(gate: AuthGate, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("this client may not use the authorization_code grant")
    code = form.get("code")
    if code is None:
        raise InvalidRequest("code is required")
    found = await gate.codes.find(code)
    if found is None:
        raise InvalidGrant("authorization code is invalid or expired")
    cg, _entry = found
    if not equal(cg.client_id, client.client_id):
        raise InvalidGrant("authorization code was issued to another client")
    if form.get("redirect_uri") is None or not equal(form["redirect_uri"], cg.redirect_uri):
        raise InvalidGrant("redirect_uri does not match the authorization request")
    pkce.verify(cg.code_challenge, form.get("code_verifier"))
    used = await gate.codes.consume(code)
    if used is None:
        raise InvalidGrant("authorization code is invalid or expired")
    if used.consumed_at is not None:
        await gate.refresh.revoke_family(cg.family, user=cg.user_id, client=client,
                                         event="code.replayed",
                                         reason="authorization code presented twice")
        raise InvalidGrant("authorization code was already used; tokens issued from it are revoked")
    user = await gate.accounts.get(cg.user_id)
    if user is None or user.disabled:
        raise InvalidGrant("the user is no longer active")
    scopes = parse_scope(cg.scope)
    refresh = None
    if may_get_refresh_token(gate, client, scopes):
        refresh = await gate.refresh.issue(family=cg.family, user_id=user.id, client=client,
                                           scope=cg.scope, auth_time=cg.auth_time, sid=cg.sid)
    else:
        await gate.audit.record("access_token.issued", user=user.id, client=client.client_id,
                                family=cg.family, reason="authorization_code grant")
    return token_response(gate, client=client, user=user, scope=cg.scope, family=cg.family,
                          auth_time=cg.auth_time, nonce=cg.nonce, sid=cg.sid,
                          refresh_token=refresh)
