"""The built-in accounts' sign-in page, ``GET/POST /.auth/account/login``.

This is where the authorization endpoint sends a browser that has no (or not
a fresh enough) single sign-on session, with ``return_to`` naming the
authorization request to resume. Security properties, each tested:

* ``return_to`` may only be a relative ``/.auth/oauth2/authorize?…`` URL
  (no open redirect, RFC 9700 §4.11; SECURITY.md 42); anything else is a 400.
* POSTs must be same-origin and carry the double-submit CSRF token
  (:mod:`authgate.web.csrf`; 403 otherwise).
* Every login starts a *new* SSO session and ends the one the browser had, so
  a session id planted before login is worthless (no fixation, OWASP ASVS
  V3.2.1; SECURITY.md 43).
* Failures say only "wrong username or password" (no account enumeration);
  the account backs off after repeated failures (429 with ``Retry-After``).
"""

from __future__ import annotations

import logging
import math
import re
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..accounts import LoginLocked
from ..app_state import gate_of
from ..errors import OAuthError
from ..oauth.authorize import Untrusted, redirect_target
from ..service import AuthGate
from ..sso import COOKIE as SSO_COOKIE
from . import pages
from .cookies import set_cookie
from .csrf import CSRF, same_origin
from .csrf import FIELD as CSRF_FIELD
from .session import AUTHORIZE_PATH, form_or_query, sso_session

log = logging.getLogger("authgate.login")

LOGIN_PATH = pages.LOGIN_PATH
WRONG = "Wrong username or password."
TITLE = "Sign in"
_RETURN_TO = re.compile(re.escape(AUTHORIZE_PATH) + r"\?[A-Za-z0-9_.~%+=&-]+")


def safe_return_to(value: str) -> bool:
    """Only this origin's authorization endpoint, as the relative URL :func:`urlencode` builds.

    Nothing but the query's characters may follow the fixed path -- no scheme,
    host, backslash, fragment or dot segment can get through.
    """
    return _RETURN_TO.fullmatch(value) is not None


async def final_target(gate: AuthGate, return_to: str | None) -> list[str]:
    """The registered redirect URI the resumed authorization request will end at, if any."""
    if return_to is None:
        return []
    query = {k: v[0] for k, v in parse_qs(urlsplit(return_to).query).items() if len(v) == 1}
    client = await gate.clients.get(query["client_id"]) if "client_id" in query else None
    try:
        return [redirect_target(client, query.get("redirect_uri"))] if client else []
    except Untrusted:
        return []


async def endpoint(request: Request) -> Response:
    gate = gate_of(request)
    if request.method == "POST" and not same_origin(request, gate.settings):
        log.info("login refused: cross-site POST")
        return pages.error_page("Cross-site sign-in requests are not accepted.", 403)
    try:
        params = await form_or_query(request)
    except OAuthError as exc:
        return pages.error_page(exc.description or "Malformed request.", exc.status_code)
    return_to = params.get("return_to")
    if return_to is not None and not safe_return_to(return_to):
        log.info("login refused: return_to is not the authorization endpoint")
        return pages.error_page("The page to return to after signing in is not allowed.")
    csrf = CSRF(request, gate.settings, gate.hasher)
    form = Form(csrf, return_to, await final_target(gate, return_to))
    if request.method == "POST":
        return await _submit(gate, request, form, params)
    if return_to is None:
        session = await sso_session(request, gate)
        user = await gate.accounts.get(session.user_id) if session else None
        if user is not None and not user.disabled:
            return pages.respond("Signed in", pages.signed_in(user.username))
    return form.show()


class Form:
    """The sign-in form of one request, shown again with a message after a failure."""

    def __init__(self, csrf: CSRF, return_to: str | None, redirects_to: list[str]) -> None:
        self.csrf = csrf
        self.return_to = return_to
        self.redirects_to = redirects_to

    def show(self, *, status: int = 200, username: str = "", error: str = "",
             headers: dict[str, str] | None = None) -> Response:
        body = pages.login_form(csrf_token=self.csrf.token(), return_to=self.return_to,
                                username=username, error=error)
        response = pages.respond(TITLE, body, status, headers, redirects_to=self.redirects_to)
        self.csrf.set_cookie(response)
        return response


async def _submit(gate: AuthGate, request: Request, form: Form, params: dict[str, str]) -> Response:
    if not form.csrf.valid(params.get(CSRF_FIELD)):
        log.info("login refused: missing or wrong CSRF token")
        return form.show(status=403, error="This sign-in form has expired. Please try again.")
    username, password = params.get("username", ""), params.get("password", "")
    if not username or not password:
        return form.show(status=400, username=username, error="Enter your username and password.")
    try:
        user = await gate.accounts.authenticate(username, password)
    except LoginLocked as locked:
        wait = max(1, math.ceil(locked.retry_after))
        log.warning("login refused: account backing off for %d s after repeated failures", wait)
        return form.show(status=429, username=username,
                         error=f"Too many failed attempts. Try again in {wait} seconds.",
                         headers={"Retry-After": str(wait)})
    if user is None:
        log.info("login refused: wrong username or password")
        return form.show(status=401, username=username, error=WRONG)
    previous = await sso_session(request, gate)
    if previous is not None:
        await gate.sso.end(previous)
    value, session = await gate.sso.start(user.id)
    await gate.audit.record("login.succeeded", user=user.id, reason="password")
    response = RedirectResponse(form.return_to or LOGIN_PATH, status_code=303,
                                headers=pages.REDIRECT_HEADERS)
    set_cookie(response, gate.settings, SSO_COOKIE, value,
               max_age=int(session.expires_at - session.auth_time))
    form.csrf.forget(response)
    return response
