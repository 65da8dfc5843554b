"""``GET/POST /.auth/logout``: end the session and revoke what can be revoked.

Easy Auth only forgets the cookie. Here logout also

* ends the server-side session at once (a replayed cookie or session token
  is refused afterwards: SECURITY.md 46),
* revokes the user's provider tokens at the provider when it has a
  revocation endpoint (RFC 7009 §2: the refresh token, which ends the
  grant, then the access token); for ``local`` the refresh-token family and
  its access tokens are revoked in-process,
* deletes the stored provider tokens,
* for a caller using one of our access tokens, denies that token.

Then it redirects to ``post_logout_redirect_uri`` (same rules as login:
relative or allow-listed, else 400) or shows a small "signed out" page.
Cookie callers from another site are refused with 403 (Origin /
``Sec-Fetch-Site``): logout is a GET that changes state (SECURITY.md 47).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import InvalidToken
from ..web import pages
from ..web.csrf import same_origin
from . import Gateway, gateway_of
from .identity import Identity, resolve
from .login import REDIRECT_HEADERS, clear_session_cookie, problem
from .redirects import UnsafeRedirect, safe_redirect
from .refresh import bearer, cookie_caller

log = logging.getLogger("authgate.gateway.logout")


async def revoke_all(gw: Gateway, ident: Identity) -> int:
    """Revoke at each provider and delete the stored tokens of this user; how many revoked."""
    revoked = 0
    for tokens in await gw.provider_tokens.of_user(ident.user_key):
        provider = gw.providers.get(tokens.provider)
        try:
            if provider is not None and await provider.revoke(tokens):
                revoked += 1
        except Exception as exc:  # a provider failing must not keep the user signed in
            log.warning("revocation at %s failed: %s", tokens.provider, type(exc).__name__)
        await gw.provider_tokens.delete(ident.user_key, tokens.provider)
    return revoked


async def endpoint(request: Request) -> Response:
    gw = gateway_of(request)
    if cookie_caller(request, gw) and not same_origin(request, gw.settings):
        return problem(request, 403, "cross_site", "cross-site logout requests are refused")
    try:
        target = safe_redirect(request.query_params.get("post_logout_redirect_uri"),
                               gw.settings, default="")
    except UnsafeRedirect as exc:
        return problem(request, 400, "invalid_redirect_uri", str(exc))
    res = await resolve(gw, request.headers, request.cookies)
    ident = res.identity
    if ident is not None:
        revoked = await revoke_all(gw, ident)
        if ident.session is not None:
            await gw.sessions.end(ident.session)
        if ident.via == "access_token":
            await _deny_access_token(gw, request)
        await gw.gate.audit.record("gateway.logout", user=ident.user_key,
                                   reason=f"signed out ({revoked} provider grants revoked)")
    response: Response
    if target:
        response = RedirectResponse(target, status_code=302, headers=REDIRECT_HEADERS)
    else:
        response = pages.respond("Signed out", pages.message("You have signed out."))
    clear_session_cookie(response, gw)
    return response


async def _deny_access_token(gw: Gateway, request: Request) -> None:
    token = bearer(request)
    if token is None:
        return
    try:
        claims = await gw.gate.access.verify(token)
    except InvalidToken:
        return
    await gw.gate.denylist.deny_jti(claims["jti"],
                                    float(claims["exp"]) + gw.gate.settings.tokens.leeway)
