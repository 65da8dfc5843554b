"""Token introspection, RFC 7662.

Only authenticated confidential clients may ask (§2.1; 401 otherwise). An
active access token is described by its claims (§2.2); a refresh token only to
the client it was issued to; anything else -- expired, revoked, rotated,
foreign, malformed -- is exactly ``{"active": false}``.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest, InvalidToken
from ..hashing import REFRESH_PREFIX, equal
from .client_auth import authenticate_client
from .http import FormEndpoint, FormRequest

INACTIVE: dict[str, Any] = {"active": False}
_ACCESS_FIELDS = ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "auth_time")


async def introspect(request: FormRequest) -> dict[str, Any]:
    form = request.form
    gate = request.gate
    client = await authenticate_client(request.authorization, request.host, form, gate.clients,
                                       allow_public=False)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    if token.startswith(REFRESH_PREFIX):
        entry = await gate.refresh.lookup(token)
        if (entry is None or entry.consumed_at is not None
                or not equal(entry.data["client_id"], client.client_id)):
            return INACTIVE
        return {
            "active": True, "token_type": "refresh_token", "client_id": entry.data["client_id"],
            "sub": entry.data["user_id"], "scope": entry.data["scope"],
            "exp": int(entry.expires_at or 0), "iat": int(entry.data["issued_at"]),
            "iss": gate.settings.issuer,
        }
    try:
        claims = await gate.access.verify(token)
    except InvalidToken:
        return INACTIVE
    body = {"active": True, "token_type": "Bearer"}
    body.update({k: claims[k] for k in _ACCESS_FIELDS if k in claims})
    return body


endpoint = FormEndpoint(introspect)
