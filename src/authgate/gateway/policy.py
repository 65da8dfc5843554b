"""Who may pass: ``unauthenticated_action``, excluded paths, and the headers the app receives.

One :class:`Policy` per gateway decides for the reverse proxy, forward-auth
(``/.auth/verify``) and the in-process middleware alike:

- excluded paths (``gateway.excluded_paths``) pass anonymously. A pattern
  without wildcards covers the path and everything below it (``/health``:
  ``/health``, ``/health/live``, not ``/healthz``); ``*`` and ``?`` match
  within one segment, ``**`` across segments (``/static/**``, ``/api/*/health``). Only canonical paths can be
  excluded: dot segments, ``//``, ``\\``, ``;``, ``%`` or an encoded slash
  could be read differently by the app (``/health/../admin``), so such paths
  always need authentication.
- anonymous requests elsewhere: ``allow`` passes them, ``401``/``403``
  refuse them, ``redirect`` sends browsers to the login page and answers
  401 with ``WWW-Authenticate`` (RFC 6750 §3) to API clients -- anything
  that is not a top-level page navigation, sends a token, or is
  ``X-Requested-With: XMLHttpRequest``.
- signed-in requests get ``X-MS-CLIENT-PRINCIPAL*`` and, when enabled, the
  provider's tokens, refreshed first when they are about to expire. If that
  refresh fails, expired tokens are left out (never passed on stale), the
  reason is logged, and the request proceeds.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from .forwarded import TrustedProxies
from .freshness import FreshnessError
from .headers import TOKEN_KINDS, RawHeaders, principal_headers, token_headers
from .identity import Identity, request_token, resolve_credentials
from .provider_tokens import ProviderTokens

if TYPE_CHECKING:
    from . import Gateway

log = logging.getLogger("authgate.gateway")

_NOT_CANONICAL = re.compile(r"(^|/)\.{1,2}(/|$)|//|[\\;%\x00-\x1f\x7f]")
_NO_STORE = {"Cache-Control": "no-store"}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """An excluded-path pattern as a regular expression over the decoded path."""
    if "*" not in pattern and "?" not in pattern:
        return re.compile(re.escape(pattern.rstrip("/")) + r"(?:/.*)?", re.DOTALL)
    parts = re.split(r"(\*\*|\*|\?)", pattern)
    glob = {"**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(glob.get(p) or re.escape(p) for p in parts), re.DOTALL)


def is_canonical(path: str, raw_path: bytes | None = None) -> bool:
    if not path.startswith("/") or _NOT_CANONICAL.search(path):
        return False
    return raw_path is None or not re.search(rb"%(2f|5c|2e|00)", raw_path, re.IGNORECASE)


def is_browser(headers: Headers) -> bool:
    """A top-level page navigation by a browser, which can follow a redirect to log in."""
    if headers.get("x-requested-with", "").lower() == "xmlhttprequest":
        return False
    if "x-zumo-auth" in headers or "authorization" in headers:
        return False
    mode = headers.get("sec-fetch-mode")
    if mode is not None and mode.lower() != "navigate":
        return False
    accept = headers.get("accept", "").lower()
    return "text/html" in accept or "application/xhtml+xml" in accept


def original_target(scope: Scope) -> str:
    """The request's path and query as sent (still percent-encoded)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    query: bytes = scope.get("query_string", b"")
    target = path if path.startswith("/") else "/" + path
    return target + "?" + query.decode("latin-1") if query else target


def error_json(status: int, error: str, description: str,
               headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**_NO_STORE, **(headers or {})})


def unauthorized(problem: str | None, login: str | None = None) -> JSONResponse:
    """401 with an RFC 6750 §3 challenge; ``invalid_token`` when a credential was refused."""
    challenge = 'Bearer realm="authgate"'
    if problem:
        safe = re.sub(r'["\\\x00-\x1f\x7f]', "", problem)
        challenge += f', error="invalid_token", error_description="{safe}"'
    description = problem or "authentication required" + (f"; sign in at {login}" if login else "")
    return error_json(401, "invalid_token" if problem else "unauthorized", description,
                      {"WWW-Authenticate": challenge})


async def answer(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    """Send ``response`` -- for a WebSocket handshake as an HTTP denial where the server can."""
    if scope["type"] != "websocket":
        await response(scope, receive, send)
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        await send({"type": "websocket.close", "code": 1008})


@dataclass
class Outcome:
    identity: Identity | None = None
    tokens: ProviderTokens | None = None
    """The signed-in provider's tokens, fresh; None when not wanted or not available."""
    headers: RawHeaders = field(default_factory=list)
    """Identity headers for the app (set after every incoming one was stripped)."""
    denial: Response | None = None
    """When set, answer this instead of passing the request on."""


class Policy:
    def __init__(self, gw: Gateway) -> None:
        gs = gw.settings.gateway
        self.gw = gw
        self.action = gs.unauthenticated_action
        self.excluded = [compile_pattern(p) for p in gs.excluded_paths]
        # The literal start of every pattern: a path that begins with none of them is
        # not excluded, without the canonical-path check and the regular expressions.
        self._prefixes = tuple(re.split(r"[*?]", p, maxsplit=1)[0].rstrip("/") or "/"
                               for p in gs.excluded_paths)
        self.trusted = TrustedProxies(gs.trusted_proxies)
        self.principal = "principal" in gs.inject_headers
        self.kinds = [k for k in gs.inject_headers if k in TOKEN_KINDS] if gs.token_headers else []

    def is_excluded(self, path: str, raw_path: bytes | None = None) -> bool:
        return (bool(self.excluded) and path.startswith(self._prefixes)
                and is_canonical(path, raw_path) and any(p.fullmatch(path) for p in self.excluded))

    async def authenticate(self, conn: HTTPConnection) -> Outcome:
        return await self.authenticate_credentials(conn.scope, request_token(conn.headers),
                                                   conn.cookies.get(self.gw.cookie_name))

    async def authenticate_credentials(self, scope: Scope, token: str | None,
                                       cookie: str | None) -> Outcome:
        """:meth:`authenticate` with the credentials already picked out of the request."""
        if self.is_excluded(scope["path"], scope.get("raw_path")):
            return Outcome()
        res = await resolve_credentials(self.gw, token, cookie)
        if res.identity is not None:
            return await self.admit(res.identity)
        if res.problem:
            log.info("anonymous request to %s: %s", scope["path"], res.problem)
        if self.action == "allow":
            return Outcome()
        return Outcome(denial=self.deny(Headers(scope=scope), res.problem, original_target(scope)))

    async def admit(self, identity: Identity) -> Outcome:
        headers = principal_headers(identity) if self.principal else []
        tokens = await self.fresh_tokens(identity) if self.kinds else None
        if tokens is not None:
            headers.extend(token_headers(tokens, self.kinds))
        return Outcome(identity, tokens, headers)

    async def fresh_tokens(self, identity: Identity, provider: str | None = None,
                           ) -> ProviderTokens | None:
        """The provider's tokens, refreshed first when due.

        When the refresh fails the stored tokens still pass while they are valid
        (a Facebook token has nothing to refresh with; a provider may be down for a
        minute); expired ones never do.
        """
        provider = provider or identity.provider
        try:
            tokens = await self.gw.freshness.ensure_fresh(identity.user_key, provider)
        except Exception as exc:
            why = exc.reason if isinstance(exc, FreshnessError) else type(exc).__name__
            log.warning("%s tokens of user %s not refreshed: %s", provider, identity.user_id, why)
            tokens = await self.gw.provider_tokens.get(identity.user_key, provider)
        if tokens is not None and tokens.expires_within(self.gw.gate.clock.now(), 0):
            log.warning("not passing %s tokens of user %s on: they have expired",
                        provider, identity.user_id)
            return None
        return tokens

    def default_provider(self) -> str | None:
        configured = self.gw.settings.gateway.default_provider
        if configured:
            return configured
        names = list(self.gw.providers)
        if len(names) > 1:  # `local` is always there; one configured besides it is the default
            names = [n for n in names if n != "local"]
        return names[0] if len(names) == 1 else None

    def login_url(self, provider: str, target: str) -> str:
        """The login page, coming back to ``target`` (a relative path and query) afterwards."""
        return (f"/.auth/login/{quote(provider, safe='')}?post_login_redirect_uri="
                + quote("/" + target.lstrip("/\\"), safe=""))

    def deny(self, headers: Headers, problem: str | None, target: str, *,
             follow: bool = True) -> Response:
        """The answer to an anonymous request for ``target`` that may not pass.

        Browsers are sent to log in when ``unauthenticated_action`` is redirect.
        With ``follow=False`` (nginx ``auth_request``, which only relays 401/403) they
        get the 401 with the login URL in ``Location`` for the front proxy to use.
        """
        if self.action == "403":
            return error_json(403, "forbidden", "authentication required")
        provider = self.default_provider()
        login = self.login_url(provider, target) if provider else None
        browser = self.action == "redirect" and is_browser(headers)
        if browser and follow and login is not None:
            return RedirectResponse(login, status_code=302, headers=_NO_STORE)
        if browser and follow:
            links = "".join(f'<li><a href="{html.escape(self.login_url(p, target))}">'
                            f"{html.escape(p)}</a></li>" for p in sorted(self.gw.providers))
            return HTMLResponse(f"<!doctype html><title>Sign in</title><h1>Sign in with</h1>"
                                f"<ul>{links}</ul>", status_code=401, headers=_NO_STORE)
        response = unauthorized(problem, login)
        if browser and login is not None:
            response.headers["Location"] = login
        return response


def policy_of(gw: Gateway) -> Policy:
    """The gateway's policy, built once from its settings."""
    policy = gw.extras.get("policy")
    if not isinstance(policy, Policy):
        policy = gw.extras["policy"] = Policy(gw)
    return policy
