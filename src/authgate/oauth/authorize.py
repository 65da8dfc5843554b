"""The authorization endpoint, ``GET/POST /.auth/oauth2/authorize``.

Authorization code flow only (RFC 6749 §4.1.1-4.1.2, OpenID Connect Core
§3.1.2; no implicit flow, RFC 9700 §2.1.2). The order of checks matters:

1. Until the client and its redirect URI are known good, every error is an
   HTML page with 400 and **never** a redirect (RFC 6749 §4.1.2.1, §10.15 --
   otherwise the endpoint is an open redirector). The redirect URI must equal
   a registered one character for character (RFC 9700 §4.1.3); only the port
   of a loopback IP literal may vary (RFC 8252 §7.3).
2. After that, errors go back to the client as ``?error=…&state=…&iss=…``.
   PKCE is required of public clients and only S256 is accepted (RFC 7636
   §4.3, RFC 9700 §2.1.1); scopes are cut down to those the client may have.
3. A browser without a single sign-on session -- or asked to re-authenticate
   by ``prompt=login`` or an exceeded ``max_age`` -- goes to the sign-in page
   and comes back here; ``prompt=none`` answers ``login_required`` instead
   (OIDC Core §3.1.2.1, §3.1.2.6).

Every response names the issuer (``iss``, RFC 9207) against mix-up attacks.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..app_state import gate_of
from ..clients import Client
from ..codes import CodeGrant
from ..errors import (
    InvalidRequest,
    InvalidScope,
    LoginRequired,
    OAuthError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from ..hashing import new_id
from ..service import AuthGate
from ..web import pages
from ..web.session import AUTHORIZE_PATH, login_url, sso_session
from .http import parse_form, read_body
from .pkce import check_challenge

log = logging.getLogger("authgate.authorize")

STANDARD_SCOPES = ("openid", "profile", "email", "offline_access")
PROMPTS = ("none", "login", "consent", "select_account")
_LOOPBACK = re.compile(r"^http://(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?(/[^#]*)?$")


class Untrusted(Exception):
    """The request names no client or redirect URI we may send the browser back to."""


def loopback_match(registered: str, requested: str) -> bool:
    """RFC 8252 §7.3: a loopback IP literal redirect URI matches on any port, all else exact."""
    reg, req = _LOOPBACK.match(registered), _LOOPBACK.match(requested)
    if reg is None or req is None or reg.group(1) != req.group(1):
        return False
    port = req.group(2)
    if port is not None and not 0 < int(port) < 65536:
        return False
    return (reg.group(3) or "") == (req.group(3) or "")


def redirect_target(client: Client, requested: str | None) -> str:
    """The redirect URI to answer at: the requested one if registered (§3.1.2.3)."""
    if requested is None:
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0]
        raise Untrusted("redirect_uri is required")
    for registered in client.redirect_uris:
        if requested == registered or loopback_match(registered, requested):
            return requested
    raise Untrusted("redirect_uri is not registered for this client")


async def read_params(request: Request) -> tuple[dict[str, str], set[str]]:
    """Query (GET) or form body (POST, OIDC Core §3.1.2.1); also the names sent twice."""
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise Untrusted("the body must be application/x-www-form-urlencoded")
        raw = await read_body(request)
    else:
        raw = request.scope.get("query_string", b"")
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for part in raw.split(b"&"):
        for name, value in parse_form(part).items():
            if name in params:
                repeated.add(name)
            params[name] = value
    return params, repeated


async def endpoint(request: Request) -> Response:
    gate = gate_of(request)
    try:
        params, repeated = await read_params(request)
        if repeated & {"client_id", "redirect_uri"}:
            raise Untrusted("client_id and redirect_uri must be sent once")
        client = await gate.clients.get(params["client_id"]) if "client_id" in params else None
        if client is None:
            raise Untrusted("unknown or missing client_id")
        redirect_uri = redirect_target(client, params.get("redirect_uri"))
    except (Untrusted, OAuthError) as exc:
        text = exc.description if isinstance(exc, OAuthError) else str(exc)
        log.info("authorization request refused without redirect: %s", text)
        return pages.error_page(f"This sign-in request is invalid: {text}",
                                exc.status_code if isinstance(exc, OAuthError) else 400)
    state = None if "state" in repeated else params.get("state")
    try:
        return await _authorize(request, gate, client, redirect_uri, params, repeated, state)
    except OAuthError as exc:
        log.info("authorization request of %s refused: %s (%s)", client.client_id, exc.error,
                 exc.description)
        return respond(gate, redirect_uri, {"error": exc.error,
                                            "error_description": exc.description or None,
                                            "state": state})


def with_query(uri: str, values: dict[str, str | None]) -> str:
    """``uri`` with ``values`` added to its query, keeping the query it has (§3.1.2)."""
    query = urlencode({k: v for k, v in values.items() if v is not None})
    if not query:
        return uri
    sep = "" if uri.endswith(("?", "&")) else "&" if "?" in uri else "?"
    return uri + sep + query


def respond(gate: AuthGate, redirect_uri: str, values: dict[str, str | None]) -> Response:
    """The authorization response (§4.1.2), naming the issuer (RFC 9207 §2)."""
    location = with_query(redirect_uri, {**values, "iss": gate.settings.issuer})
    return RedirectResponse(location, status_code=303, headers=pages.REDIRECT_HEADERS)


def granted_scope(client: Client, requested: str | None) -> str:
    """RFC 6749 §3.3: unknown scopes are an error; known ones the client lacks are dropped."""
    if requested is None:
        raise InvalidScope("scope is required")
    names = list(dict.fromkeys(s for s in requested.split(" ") if s))
    unknown = [s for s in names if s not in STANDARD_SCOPES and s not in client.scopes]
    if unknown:
        raise InvalidScope(f"unknown scope {unknown[0]!r}")
    granted = [s for s in names if s in client.scopes]
    if not granted:
        raise InvalidScope("none of the requested scopes is allowed for this client")
    return " ".join(granted)


def parse_prompt(value: str | None) -> set[str]:
    prompts = set((value or "").split())
    if not prompts <= set(PROMPTS):
        raise InvalidRequest(f"prompt must be made of {', '.join(PROMPTS)}")
    if "none" in prompts and len(prompts) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other values")
    return prompts


def parse_max_age(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise InvalidRequest("max_age must be a number of seconds")
    return int(value)


def resume_url(params: dict[str, str]) -> str:
    """This request again, minus what forced the sign-in (else it would loop back to it)."""
    again = {k: v for k, v in params.items() if k != "max_age"}
    prompts = [p for p in again.pop("prompt", "").split() if p != "login"]
    if prompts:
        again["prompt"] = " ".join(prompts)
    return f"{AUTHORIZE_PATH}?{urlencode(again)}"


async def _authorize(request: Request, gate: AuthGate, client: Client, redirect_uri: str,
                     params: dict[str, str], repeated: set[str], state: str | None) -> Response:
    if repeated:
        raise InvalidRequest(f"parameter {sorted(repeated)[0]!r} is repeated")
    response_type = params.get("response_type")
    if response_type is None:
        raise InvalidRequest("response_type is required")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("this client may not use the authorization code flow")
    if params.get("response_mode", "query") != "query":
        raise InvalidRequest("only response_mode=query is supported")
    if "request" in params or "request_uri" in params:
        raise InvalidRequest("request objects are not supported")
    challenge = params.get("code_challenge")
    check_challenge(challenge, params.get("code_challenge_method"))
    if challenge is None and client.public:
        raise InvalidRequest("public clients must use PKCE (code_challenge, S256)")
    scope = granted_scope(client, params.get("scope"))
    prompts = parse_prompt(params.get("prompt"))
    max_age = parse_max_age(params.get("max_age"))

    session = await sso_session(request, gate)
    user = await gate.accounts.get(session.user_id) if session is not None else None
    fresh_enough = session is not None and (
        max_age is None or (max_age > 0 and gate.clock.now() - session.auth_time <= max_age))
    if session is None or user is None or user.disabled or "login" in prompts or not fresh_enough:
        if "none" in prompts:
            raise LoginRequired("the user must sign in")
        return RedirectResponse(login_url(resume_url(params)), status_code=303,
                                headers=pages.REDIRECT_HEADERS)
    code = await gate.codes.issue(CodeGrant(
        client_id=client.client_id, user_id=user.id, redirect_uri=redirect_uri, scope=scope,
        family=new_id(), auth_time=session.auth_time, nonce=params.get("nonce"),
        code_challenge=challenge, sid=session.sid))
    return respond(gate, redirect_uri, {"code": code, "state": state})
