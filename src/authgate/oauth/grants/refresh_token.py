"""The refresh token grant, RFC 6749 §6, with rotation (RFC 9700 §4.14.2).

The rotation rules live in :mod:`authgate.refresh_tokens`; this module is the
endpoint's side: parameters, the user still being active (as read at most
``accounts.CACHE_SECONDS`` ago: disabling a user also revokes every family, which
stops the rotation itself at once), and the response carrying the successor.
"""

from __future__ import annotations

from typing import Any

from ...clients import Client
from ...errors import InvalidGrant, InvalidRequest, UnauthorizedClient
from ...service import AuthGate
from . import token_response


async def grant(gate: AuthGate, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if "refresh_token" not in client.grant_types:
        raise UnauthorizedClient("this client may not use the refresh_token grant")
    token = form.get("refresh_token")
    if token is None:
        raise InvalidRequest("refresh_token is required")
    successor, grant_, scope = await gate.refresh.rotate(token, client, form.get("scope"))
    user = await gate.accounts.recent(grant_.user_id)
    if user is None or user.disabled:
        await gate.refresh.revoke_family(grant_.family, user=grant_.user_id, client=client,
                                         reason="user disabled or deleted")
        raise InvalidGrant("the user is no longer active")
    return token_response(gate, client=client, user=user, scope=scope, family=grant_.family,
                          auth_time=grant_.auth_time, refresh_token=successor)
