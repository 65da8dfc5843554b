"""Issuer metadata: OpenID Connect Discovery 1.0 §3-4 and RFC 8414 §2, and the JWKS.

``/.auth/.well-known/openid-configuration`` describes what this issuer
actually does -- code flow only, PKCE S256 only, ``iss`` in authorization
responses (RFC 9207 §3) -- so that conforming clients configure themselves
safely. ``/.auth/keys`` (RFC 7517 §5) publishes the public halves of the
signing keys in force, including retired keys until their tokens expired.
Both may be cached for a few minutes; relying parties refetch the JWKS when
they meet an unknown ``kid``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..app_state import gate_of
from ..clients import GRANT_TYPES
from ..service import AuthGate
from .authorize import PROMPTS, STANDARD_SCOPES

CACHE = {"Cache-Control": "public, max-age=300"}
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
CLAIMS = ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "sid", "at_hash",
          "name", "preferred_username", "email", "email_verified"]


def signing_algs(gate: AuthGate) -> list[str]:
    """The active key's algorithm first, then any other still verifying (rotation)."""
    algs = [gate.keys.active.alg] if gate.keys.active else [gate.settings.tokens.signing_alg]
    return list(dict.fromkeys([*algs, *sorted(k.alg for k in gate.keys.keys.values())]))


def metadata(gate: AuthGate) -> dict[str, Any]:
    issuer = gate.settings.issuer
    algs = signing_algs(gate)
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/keys",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        # RFC 7662 §2.1: only confidential clients may introspect.
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:2],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(STANDARD_SCOPES),
        "claims_supported": CLAIMS,
        "prompt_values_supported": list(PROMPTS),
        "authorization_response_iss_parameter_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


async def openid_configuration(request: Request) -> Response:
    return JSONResponse(metadata(gate_of(request)), headers=CACHE)


async def jwks(request: Request) -> Response:
    return JSONResponse(gate_of(request).keys.jwks(), headers=CACHE)
