"""Login, as Easy Auth does it: ``/.auth/login/<provider>`` and its callback, client-directed
``POST /.auth/login/<provider>``, and ``/.auth/login/done``.

Server-directed (a browser):

1. ``GET /.auth/login/<provider>`` checks ``post_login_redirect_uri``
   (:mod:`.redirects`), records a pending login (:mod:`.providers.state`:
   state + nonce + PKCE, bound to this browser's login cookie) and redirects
   to the provider, passing allow-listed query parameters through
   (``access_type=offline``, ``prompt``, ``scope``, ``domain_hint``…).
2. The callback refuses a missing, foreign, reused or expired state before
   any code exchange, lets the provider check the response (RFC 9207 ``iss``,
   code exchange, ID token), then starts a **new** gateway session (the one
   the browser had ends: no fixation), stores the provider tokens sealed,
   sets the session cookie and redirects. After ``post_login_redirect_uri=
   /.auth/login/done`` the redirect carries ``#token=`` with a session token,
   as Easy Auth's server flow for mobile apps does.

Client-directed (a mobile app or SPA that already signed in with the
provider's SDK): the JSON body holds ``access_token``, ``id_token`` or
``authorization_code`` (+ ``code_verifier``, ``redirect_uri``); the answer is
``{"authenticationToken": <session token>, "user": {"userId": …}}``.
Session-token sessions live ``token_refresh_extension_hours`` longer than the
token, so an expired token can still be refreshed at ``/.auth/refresh``.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..errors import OAuthError
from ..oauth.http import parse_form, read_body, read_form
from ..web import pages
from . import Gateway, gateway_of
from .providers.base import LoginRefused, Provider, ProviderDown, UpstreamUser
from .providers.state import COOKIE as LOGIN_COOKIE
from .providers.state import LIFETIME, LoginStates, new_binding, valid_binding
from .redirects import UnsafeRedirect, safe_redirect
from .sessions import GatewaySession

log = logging.getLogger("authgate.gateway.login")

DONE_PATH = "/.auth/login/done"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
MAX_JSON = 64 * 1024


def problem(request: Request, status: int, error: str, description: str) -> JSONResponse:
    """A non-2xx answer: ``{"error", "error_description"}``, the same reason logged."""
    log.info("%s %s -> %d %s: %s", request.method, request.url.path, status, error, description)
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers=NO_STORE)


def login_cookie_name(gw: Gateway) -> str:
    return ("__Host-" if gw.settings.secure_cookies else "") + LOGIN_COOKIE


def set_session_cookie(response: Response, gw: Gateway, value: str) -> None:
    """HttpOnly, Secure (unless plain-http loopback), SameSite=Lax, Path=/, no Domain."""
    response.set_cookie(gw.cookie_name, value, max_age=int(gw.settings.session.cookie_lifetime),
                        path="/", domain=None, secure=gw.settings.secure_cookies, httponly=True,
                        samesite="lax")


def clear_session_cookie(response: Response, gw: Gateway) -> None:
    response.delete_cookie(gw.cookie_name, path="/", domain=None,
                           secure=gw.settings.secure_cookies, httponly=True, samesite="lax")


def token_lifetime(gw: Gateway) -> float:
    return gw.settings.session.cookie_lifetime


def token_grace(gw: Gateway) -> float:
    return gw.settings.session.token_refresh_extension_hours * 3600


def session_token(gw: Gateway, session: GatewaySession) -> str:
    return gw.session_tokens.mint(sid=session.sid, user_key=session.user_key,
                                  user_id=session.user_id, provider=session.provider,
                                  name=session.name, now=gw.gate.clock.now(),
                                  lifetime=token_lifetime(gw))


def _provider(request: Request) -> tuple[Gateway, Provider | None, str]:
    gw = gateway_of(request)
    name = request.path_params["provider"]
    return gw, gw.providers.get(name), name


def _unknown(request: Request, name: str) -> JSONResponse:
    return problem(request, 404, "unknown_provider",
                   f"no provider named {name[:40]!r} is configured")


async def start(request: Request) -> Response:
    gw, provider, name = _provider(request)
    if provider is None:
        return _unknown(request, name)
    try:
        query = parse_form(request.scope.get("query_string", b""))
    except OAuthError as exc:
        return problem(request, 400, "invalid_request", exc.description)
    raw = query.get("post_login_redirect_uri", query.get("post_login_redirect_url"))
    try:
        redirect_to = safe_redirect(raw, gw.settings)
    except UnsafeRedirect as exc:
        return problem(request, 400, "invalid_redirect_uri", str(exc))
    cookie = request.cookies.get(login_cookie_name(gw))
    binding = cookie if valid_binding(cookie) else new_binding()
    assert binding is not None
    states = LoginStates(gw.gate.store, gw.gate.hasher)
    state, pending = await states.begin(binding=binding, provider=name, redirect_to=redirect_to)
    try:
        url = await provider.authorization_url(state=state, nonce=pending.nonce,
                                               code_verifier=pending.code_verifier,
                                               params=provider.request_params(query))
    except ProviderDown as exc:
        return problem(request, 502, "provider_unavailable", exc.reason)
    response = RedirectResponse(url, status_code=302, headers=REDIRECT_HEADERS)
    # form_post answers arrive as a cross-site POST, which a Lax cookie would not join.
    form_post = provider.response_mode == "form_post" and gw.settings.secure_cookies
    response.set_cookie(login_cookie_name(gw), binding, max_age=LIFETIME, path="/", domain=None,
                        secure=gw.settings.secure_cookies, httponly=True,
                        samesite="none" if form_post else "lax")
    return response


async def callback(request: Request) -> Response:
    gw, provider, name = _provider(request)
    if provider is None:
        return _unknown(request, name)
    try:
        if request.method == "POST":
            params = await read_form(request)
        else:
            params = parse_form(request.scope.get("query_string", b""))
    except OAuthError as exc:
        return problem(request, 400, "invalid_request", exc.description)
    states = LoginStates(gw.gate.store, gw.gate.hasher)
    try:
        pending = await states.finish(params.get("state"), request.cookies.get(
            login_cookie_name(gw)), provider=name)
    except LoginRefused as exc:
        return problem(request, 400, "invalid_state", exc.reason)
    try:
        user = await provider.complete(params, nonce=pending.nonce,
                                       code_verifier=pending.code_verifier)
    except LoginRefused as exc:
        return problem(request, 401, "login_refused", exc.reason)
    except ProviderDown as exc:
        return problem(request, 502, "provider_unavailable", exc.reason)
    wants_token = urlsplit(pending.redirect_to).path == DONE_PATH
    old = await gw.sessions.by_cookie(request.cookies.get(gw.cookie_name))
    if old is not None:
        await gw.sessions.end(old)
    session, cookie = await sign_in(gw, name, user, token_session=wants_token)
    target = pending.redirect_to
    if wants_token:
        body = json.dumps({"authenticationToken": session_token(gw, session),
                           "user": {"userId": session.user_id}}, separators=(",", ":"))
        target = f"{DONE_PATH}#token={quote(body, safe='')}"
    response = RedirectResponse(target, status_code=302, headers=REDIRECT_HEADERS)
    set_session_cookie(response, gw, cookie)
    return response


async def sign_in(gw: Gateway, provider: str, user: UpstreamUser, *,
                  token_session: bool) -> tuple[GatewaySession, str]:
    """A new session and the user's tokens stored; returns (session, cookie value)."""
    lifetime = token_lifetime(gw) + (token_grace(gw) if token_session else 0)
    cookie, session = await gw.sessions.start(provider=provider, user_id=user.user_id,
                                              name=user.name, claims=user.claims,
                                              lifetime=lifetime)
    tokens = user.tokens
    old = await gw.provider_tokens.get(session.user_key, provider)
    if not tokens.refresh_token and old is not None and not old.refresh_failed:
        tokens.refresh_token = old.refresh_token  # a re-login without consent keeps the grant
    await gw.provider_tokens.save(session.user_key, tokens)
    await gw.gate.audit.record("gateway.login", user=session.user_key,
                               reason=f"signed in with {provider}")
    return session, cookie


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 16 * 1024:
        raise ValueError(f"{key} must be a non-empty string")
    return value


async def client_directed(request: Request) -> Response:
    gw, provider, name = _provider(request)
    if provider is None:
        return _unknown(request, name)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        return problem(request, 400, "invalid_request", "the body must be application/json")
    try:
        body = json.loads(await read_body(request, MAX_JSON))
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        code, id_token, access_token = (_string(body, k) for k in (
            "authorization_code", "id_token", "access_token"))
        verifier, redirect_uri = _string(body, "code_verifier"), _string(body, "redirect_uri")
    except OAuthError as exc:
        return problem(request, exc.status_code, "invalid_request", exc.description)
    except ValueError as exc:
        return problem(request, 400, "invalid_request", str(exc)[:200])
    try:
        if code is not None:
            user = await provider.from_code(code, code_verifier=verifier, redirect_uri=redirect_uri)
        elif id_token is not None:
            user = await provider.from_id_token(id_token, access_token)
        elif access_token is not None:
            user = await provider.from_access_token(access_token)
        else:
            return problem(request, 400, "invalid_request",
                           "the body needs access_token, id_token or authorization_code")
    except LoginRefused as exc:
        return problem(request, 401, "invalid_token", exc.reason)
    except ProviderDown as exc:
        return problem(request, 502, "provider_unavailable", exc.reason)
    session, _cookie = await sign_in(gw, name, user, token_session=True)
    return JSONResponse({"authenticationToken": session_token(gw, session),
                         "user": {"userId": session.user_id}}, headers=NO_STORE)


async def done(request: Request) -> Response:
    """The page mobile SDKs watch for; the token, if any, is in the URL fragment."""
    return pages.respond("Signed in", pages.message("You can close this window."))
