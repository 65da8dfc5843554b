"""The UserInfo endpoint, OpenID Connect Core 1.0 §5.3.

A protected resource like any other: the caller presents one of our access
tokens in the ``Authorization: Bearer`` header (RFC 6750 §2.1). The URI query
form is refused by :mod:`authgate.limits` and the form-body form here (RFC 9700
§4.3.2: tokens in URLs and bodies leak into logs and caches). The token must be
a valid RFC 9068 access token -- an ID token is not (``typ`` differs) -- and
carry the ``openid`` scope (§5.3.1). Claims are released by scope (§5.4):
``profile`` gives ``name`` and ``preferred_username``, ``email`` gives ``email``.
Errors follow RFC 6750 §3.1: 401 with a ``WWW-Authenticate: Bearer`` challenge.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..app_state import gate_of
from ..errors import InvalidRequest, InvalidToken
from ..id_tokens import user_claims
from ..refresh_tokens import parse_scope
from .http import json_response, parse_form, read_body

REALM = 'Bearer realm="authgate"'
NEEDS_OPENID = f'{REALM}, error="insufficient_scope", scope="openid"'


async def _refuse_body_token(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await read_body(request)
    if ctype == "application/x-www-form-urlencoded" and "access_token" in parse_form(body):
        raise InvalidRequest("send the access token in the Authorization header, not the body")


async def endpoint(request: Request) -> Response:
    if request.method == "POST":
        await _refuse_body_token(request)
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise InvalidRequest("send one Authorization header")
    scheme, _, token = (headers[0] if headers else "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        # RFC 6750 §3.1: no credentials at all -> a bare challenge, no error code.
        return json_response({"error": "invalid_token",
                              "error_description": "a Bearer access token is required"},
                             401, {"WWW-Authenticate": REALM})
    gate = gate_of(request)
    claims = await gate.access.verify(token)
    scopes = parse_scope(str(claims.get("scope", "")))
    if "openid" not in scopes:
        return json_response({"error": "insufficient_scope",
                              "error_description": "the token lacks the openid scope"},
                             403, {"WWW-Authenticate": NEEDS_OPENID})
    user = await gate.accounts.get(str(claims["sub"]))
    if user is None or user.disabled:
        raise InvalidToken("the user of this token is no longer active")
    return json_response({"sub": user.id, **user_claims(user, scopes)})
