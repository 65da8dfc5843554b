"""The client credentials grant, RFC 6749 §4.4: a confidential client acting for itself.

No refresh token is issued (§4.4.3) and the access token's subject is the client.
"""

from __future__ import annotations

from typing import Any

from ...clients import Client
from ...errors import InvalidScope, UnauthorizedClient
from ...refresh_tokens import parse_scope
from ...service import AuthGate
from . import token_response

USER_ONLY_SCOPES = {"openid", "profile", "email", "offline_access"}


async def grant(gate: AuthGate, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if client.public or "client_credentials" not in client.grant_types:
        raise UnauthorizedClient("this client may not use the client_credentials grant")
    allowed = [s for s in client.scopes if s not in USER_ONLY_SCOPES]
    requested = form.get("scope")
    if requested is None:
        scopes = allowed
    else:
        scopes = parse_scope(requested)
        if not scopes or not set(scopes) <= set(allowed):
            raise InvalidScope("scope not allowed for this client")
    return token_response(gate, client=client, user=None, scope=" ".join(scopes),
                          family=None, auth_time=None)
