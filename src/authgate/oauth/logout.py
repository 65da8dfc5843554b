"""RP-initiated logout, OpenID Connect RP-Initiated Logout 1.0 §2-3.

``GET/POST /.auth/oauth2/logout`` ends the browser's single sign-on session
server-side and clears its cookie. The relying party may name itself
(``client_id``), the user (``id_token_hint``: our signature and ``iss`` are
checked, expiry is not -- §2 allows expired hints) and where to go next
(``post_logout_redirect_uri``, which must equal one the client registered --
else a 400 page, never a redirect: §3, RFC 9700 §4.11), plus ``state``.

Logging a user out is itself a state change an attacker may want to force
(§6, "logout CSRF"), so a GET ends the session only when its ``id_token_hint``
names the signed-in user; otherwise the user is asked to confirm with a
same-origin POST. A POST from another origin is refused (403).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..app_state import gate_of
from ..clients import Client
from ..errors import InvalidToken, OAuthError
from ..service import AuthGate
from ..sso import COOKIE as SSO_COOKIE
from ..web import pages
from ..web.cookies import delete_cookie
from ..web.csrf import same_origin
from ..web.session import form_or_query, sso_session
from .authorize import with_query

log = logging.getLogger("authgate.logout")


class Refused(Exception):
    """The logout request is malformed or names something we cannot trust."""


def hint_claims(gate: AuthGate, token: str | None) -> dict[str, Any] | None:
    """Claims of an ID token we issued (signature and ``iss``; expired is fine)."""
    if token is None:
        return None
    try:
        _header, claims = gate.keys.verify(token, typ="jwt")
    except InvalidToken:
        raise Refused("id_token_hint is not an ID token from this issuer") from None
    if claims.get("iss") != gate.settings.issuer or not isinstance(claims.get("sub"), str):
        raise Refused("id_token_hint is not an ID token from this issuer")
    return claims


async def named_client(gate: AuthGate, client_id: str | None,
                       hint: dict[str, Any] | None) -> Client | None:
    """The relying party, by ``client_id`` or the hint's audience; both must agree."""
    hinted = None
    if hint is not None:
        aud = hint.get("azp") or hint.get("aud")
        hinted = aud[0] if isinstance(aud, list) and len(aud) == 1 else aud
        if not isinstance(hinted, str):
            raise Refused("id_token_hint has no single audience")
    if client_id is not None and hinted is not None and client_id != hinted:
        raise Refused("client_id does not match the id_token_hint")
    wanted = client_id or hinted
    client = await gate.clients.get(wanted) if wanted is not None else None
    if wanted is not None and client is None:
        raise Refused("unknown client_id")
    return client


def redirect_target(client: Client | None, uri: str | None) -> str | None:
    if uri is None:
        return None
    if client is None:
        raise Refused("post_logout_redirect_uri needs client_id or id_token_hint")
    if uri not in client.post_logout_redirect_uris and uri not in client.redirect_uris:
        raise Refused("post_logout_redirect_uri is not registered for this client")
    return uri


async def endpoint(request: Request) -> Response:
    gate = gate_of(request)
    if request.method == "POST" and not same_origin(request, gate.settings):
        log.info("logout refused: cross-site POST")
        return pages.error_page("Cross-site sign-out requests are not accepted.", 403)
    try:
        params = await form_or_query(request)
        hint = hint_claims(gate, params.get("id_token_hint"))
        client = await named_client(gate, params.get("client_id"), hint)
        target = redirect_target(client, params.get("post_logout_redirect_uri"))
    except (Refused, OAuthError) as exc:
        text = exc.description if isinstance(exc, OAuthError) else str(exc)
        log.info("logout refused: %s", text)
        return pages.error_page(f"This sign-out request is invalid: {text}")
    state = params.get("state")
    session = await sso_session(request, gate)
    if session is not None and request.method != "POST" and (
            hint is None or hint["sub"] != session.user_id):
        fields = {"client_id": client.client_id if client else None,
                  "post_logout_redirect_uri": target, "state": state}
        return pages.respond("Sign out", pages.confirm_logout(fields),
                             redirects_to=[target] if target else [])
    if session is not None:
        await gate.sso.end(session)
        # SECURITY.md: logout revokes the refresh tokens obtained in this session.
        await gate.refresh.revoke_session(session.user_id, session.sid, reason="signed out (RP-initiated logout)")
        await gate.audit.record("logout", user=session.user_id,
                                client=client.client_id if client else None,
                                reason="RP-initiated logout" if client else "signed out")
    response: Response
    if target is not None:
        response = RedirectResponse(with_query(target, {"state": state}), status_code=303,
                                    headers=pages.REDIRECT_HEADERS)
    else:
        response = pages.respond("Signed out", pages.message("You have been signed out."))
    delete_cookie(response, gate.settings, SSO_COOKIE)
    return response
