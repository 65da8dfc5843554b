"""Token revocation, RFC 7009.

The client authenticates (§2.1) and may revoke only its own tokens; an
unknown, invalid or foreign token still gets 200 (§2.2) so the endpoint
reveals nothing. Revoking a refresh token revokes its whole family and the
access tokens issued from it (§2.1: "SHOULD also invalidate all access tokens
based on the same authorization grant"); revoking an access token puts its
``jti`` on the denylist until it expires.
"""

from __future__ import annotations

from ..errors import InvalidRequest, InvalidToken
from ..hashing import REFRESH_PREFIX, equal
from .client_auth import authenticate_client
from .http import FormEndpoint, FormRequest


async def revoke(request: FormRequest) -> None:
    form = request.form
    gate = request.gate
    client = await authenticate_client(request.authorization, request.host, form, gate.clients)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    if token.startswith(REFRESH_PREFIX):
        entry = await gate.refresh.lookup(token)
        if entry is not None and entry.grant_id and equal(entry.data["client_id"], client.client_id):
            await gate.refresh.revoke_family(entry.grant_id, user=entry.data["user_id"],
                                             client=client, event="family.revoked",
                                             reason="revoked by the client (RFC 7009)")
    elif token.count(".") == 2:
        try:
            claims = await gate.access.verify(token)
        except InvalidToken:
            claims = None
        if claims is not None and equal(str(claims.get("client_id")), client.client_id):
            await gate.denylist.deny_jti(claims["jti"], float(claims["exp"]) + gate.settings.tokens.leeway)
            await gate.audit.record("access_token.revoked", user=claims.get("sub"),
                                    client=client.client_id, family=claims.get("gid"),
                                    reason="revoked by the client (RFC 7009)")
    return None  # 200 with an empty body, whatever happened (§2.2)


endpoint = FormEndpoint(revoke)
