"""``GET/POST /.auth/refresh``: fresh provider tokens now, and a new session token.

The caller is identified like everywhere else (cookie, ``X-ZUMO-AUTH``,
``Authorization: Bearer`` with a session token or one of our access tokens
-- bearer callers may refresh too, which Easy Auth never allowed). A session
token that expired less than ``session.token_refresh_extension_hours`` ago
(default 72) is still accepted here, and only here: that is how mobile SDKs
renew it. Then the provider tokens of the caller's provider (or
``?provider=NAME``) are refreshed at the provider via
:meth:`Freshness.ensure_fresh` with ``force=True``.

=====  =========================================================================
200    the refreshed ``/.auth/me`` entry; with a session token also
       ``authenticationToken`` (a new one, same session) and ``user``
400    ``no_refresh_token``: nothing stored to refresh with (offline scope not
       granted); ``token_store_disabled`` with ``gateway.token_store = false``
401    no or invalid session
403    ``provider_refused``: the provider refused the grant (revoked);
       ``cross_site``: a cookie caller from another site (SECURITY.md 47)
502    ``provider_unavailable``: the provider could not be asked; nothing changed
=====  =========================================================================
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..web.csrf import same_origin
from . import Gateway, gateway_of
from .freshness import NoRefreshToken, ProviderRefused, ProviderUnavailable
from .identity import resolve
from .login import NO_STORE, problem, session_token, token_grace, token_lifetime
from .me import entry


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def cookie_caller(request: Request, gw: Gateway) -> bool:
    """The request authenticates with the session cookie (so CSRF applies), as identity.resolve
    decides: a cookie counts unless ``X-ZUMO-AUTH`` or a Bearer token is sent."""
    token = request.headers.get("x-zumo-auth") or bearer(request)
    return not token and gw.cookie_name in request.cookies


async def endpoint(request: Request) -> Response:
    gw = gateway_of(request)
    if cookie_caller(request, gw) and not same_origin(request, gw.settings):
        return problem(request, 403, "cross_site", "cross-site refresh requests are refused")
    if not gw.provider_tokens.enabled:
        return problem(request, 400, "token_store_disabled",
                       "the token store is disabled (gateway.token_store = false)")
    res = await resolve(gw, request.headers, request.cookies, expired_grace=token_grace(gw))
    ident = res.identity
    if ident is None:
        return problem(request, 401, "unauthorized", res.problem or "not signed in")
    provider = request.query_params.get("provider") or ident.provider
    try:
        tokens = await gw.freshness.ensure_fresh(ident.user_key, provider, force=True)
    except NoRefreshToken as exc:
        return problem(request, 400, "no_refresh_token", exc.reason)
    except ProviderRefused as exc:
        return problem(request, 403, "provider_refused",
                       f"the provider refused to refresh the tokens: {exc.reason}")
    except ProviderUnavailable as exc:
        return problem(request, 502, "provider_unavailable", exc.reason)
    if tokens is None:
        return problem(request, 400, "no_refresh_token",
                       f"no tokens of provider {provider[:40]!r} are stored for this user")
    body = entry(tokens)
    if ident.via == "session_token" and ident.session is not None:
        session = ident.session
        session.expires_at = max(session.expires_at,
                                 gw.gate.clock.now() + token_lifetime(gw) + token_grace(gw))
        await gw.sessions.update(session)
        body["authenticationToken"] = session_token(gw, session)
        body["user"] = {"userId": session.user_id}
    return JSONResponse(body, headers=NO_STORE)
