"""The token endpoint, RFC 6749 §3.2: authenticate the client, dispatch on grant_type.

POST only (405 otherwise); a strict form body (:class:`authgate.oauth.http.FormEndpoint`);
``Cache-Control: no-store`` on every response (§5.1). No implicit or password
grant (RFC 9700 §2.4).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..clients import Client
from ..errors import InvalidRequest, UnsupportedGrantType
from ..service import AuthGate
from .client_auth import authenticate_client
from .grants import authorization_code, client_credentials, refresh_token
from .http import FormEndpoint, FormRequest

Grant = Callable[[AuthGate, Client, dict[str, str]], Awaitable[dict[str, Any]]]

GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code.grant,
    "refresh_token": refresh_token.grant,
    "client_credentials": client_credentials.grant,
}


async def token(request: FormRequest) -> dict[str, Any]:
    form = request.form
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise InvalidRequest("grant_type is required")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
    gate = request.gate
    client = await authenticate_client(request.authorization, request.host, form, gate.clients)
    await gate.keys.refresh_if_stale()
    return await handler(gate, client, form)


endpoint = FormEndpoint(token)
