"""``GET /.auth/me``: who is signed in, and the provider tokens the token store holds.

A JSON array with one entry per provider the user holds tokens for, as Easy
Auth answers it: ``access_token``, ``expires_on``, ``id_token``,
``provider_name``, ``refresh_token``, ``user_claims`` (``[{"typ", "val"}]``)
and ``user_id`` -- a field that does not apply is absent, never null.
``expires_on`` is ISO 8601 UTC in Easy Auth's own style,
``2026-11-23T10:00:00.0000000Z``. Tokens that are expired or about to expire
are refreshed first (:mod:`.freshness`); if that fails the stored ones are
shown. ``?provider=NAME`` answers that one entry as an object (404 if none).

401 when nobody is signed in; 404 ``token_store_disabled`` when
``gateway.token_store = false`` (as Easy Auth with the token store off).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import gateway_of
from .freshness import FreshnessError
from .identity import resolve
from .login import NO_STORE, problem
from .provider_tokens import ProviderTokens, format_expires_on


def entry(tokens: ProviderTokens) -> dict[str, Any]:
    """One provider's entry; absent fields are left out."""
    out: dict[str, Any] = {}
    if tokens.access_token:
        out["access_token"] = tokens.access_token
    if tokens.access_token_secret:
        out["access_token_secret"] = tokens.access_token_secret
    if tokens.expires_on is not None:
        out["expires_on"] = format_expires_on(tokens.expires_on)
    if tokens.id_token:
        out["id_token"] = tokens.id_token
    out["provider_name"] = tokens.provider
    if tokens.refresh_token:
        out["refresh_token"] = tokens.refresh_token
    if tokens.claims:
        out["user_claims"] = [{"typ": typ, "val": val} for typ, val in tokens.claims]
    if tokens.user_id:
        out["user_id"] = tokens.user_id
    return out


async def endpoint(request: Request) -> Response:
    gw = gateway_of(request)
    if not gw.provider_tokens.enabled:
        return problem(request, 404, "token_store_disabled",
                       "the token store is disabled (gateway.token_store = false)")
    res = await resolve(gw, request.headers, request.cookies)
    if res.identity is None:
        return problem(request, 401, "unauthorized", res.problem or "not signed in")
    key = res.identity.user_key
    wanted = request.query_params.get("provider")
    entries = []
    for stored in await gw.provider_tokens.of_user(key):
        if wanted is not None and stored.provider != wanted:
            continue
        shown = stored
        with suppress(FreshnessError):  # the reason is logged by Freshness; show what is stored
            shown = await gw.freshness.ensure_fresh(key, stored.provider) or stored
        entries.append(entry(shown))
    if wanted is not None:
        if not entries:
            return problem(request, 404, "not_found",
                           f"no tokens are stored for provider {wanted[:40]!r}")
        return JSONResponse(entries[0], headers=NO_STORE)
    return JSONResponse(entries, headers=NO_STORE)
