"""The browser's single sign-on session, and the round trip through the sign-in page.

The authorization endpoint sends a browser without a usable session to
:data:`LOGIN_PATH` with ``return_to`` set to the authorization request to
resume (:func:`login_url`); the sign-in page starts the session
(:mod:`authgate.web.login`); both read it back with :func:`sso_session`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from ..errors import InvalidRequest
from ..oauth.http import parse_form, read_body
from ..service import AuthGate
from ..sso import COOKIE, SSOSession
from .cookies import read_cookie
from .pages import LOGIN_PATH

AUTHORIZE_PATH = "/.auth/oauth2/authorize"


def login_url(return_to: str) -> str:
    return f"{LOGIN_PATH}?{urlencode({'return_to': return_to})}"


async def form_or_query(request: Request) -> dict[str, str]:
    """A page's parameters, strictly parsed: the query of a GET, the form of a POST.

    An empty POST is fine (a bare "Sign out" button); a body must be a form.
    """
    if request.method != "POST":
        return parse_form(request.scope.get("query_string", b""))
    body = await read_body(request)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if body and ctype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    return parse_form(body)


async def sso_session(request: Request, gate: AuthGate) -> SSOSession | None:
    """The live SSO session the browser's cookie names, if any (never-issued ids match nothing)."""
    return await gate.sso.get(read_cookie(request, gate.settings, COOKIE))
