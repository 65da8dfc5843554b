"""``GET /.auth/verify``: forward-auth for nginx ``auth_request``, Traefik ``forwardAuth``, Caddy ``forward_auth``.

The front proxy asks authgate about each request before passing it to the
app, forwarding the request's headers (cookie, ``X-ZUMO-AUTH``,
``Authorization``). The answer:

- 202 with the identity headers the reverse proxy would inject
  (``X-MS-CLIENT-PRINCIPAL*``, ``X-MS-TOKEN-*``, built by the same code), for
  the front proxy to copy onto the proxied request;
- 202 without them for an anonymous request that may pass (an excluded path,
  or ``unauthenticated_action = "allow"``);
- otherwise 401 with ``WWW-Authenticate`` (RFC 6750 §3), or 403 when
  ``unauthenticated_action = "403"``. With ``unauthenticated_action =
  "redirect"`` a browser's 401 carries the login URL in ``Location`` (nginx
  redirects there from ``error_page 401``); ``?redirect=true`` answers browsers
  with the 302 itself, for Traefik and Caddy, which relay the answer as is.

The original request's URI (``X-Forwarded-Uri``, or nginx's conventional
``X-Original-URI``) decides excluded paths, and is believed only from a
peer in ``gateway.trusted_proxies``. Nothing is written to the store on this
path unless a provider token is due for refresh.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from . import gateway_of
from .forwarded import hop
from .identity import resolve
from .policy import policy_of


async def endpoint(request: Request) -> Response:
    gw = gateway_of(request)
    policy = policy_of(gw)
    uri = hop(request.scope, policy.trusted).original_uri
    target = urlsplit(uri) if uri else None
    if target is not None and policy.is_excluded(unquote(target.path), target.path.encode()):
        return Response(status_code=202, headers={"Cache-Control": "no-store"})
    res = await resolve(gw, request.headers, request.cookies)
    if res.identity is not None:
        response = Response(status_code=202, headers={"Cache-Control": "no-store"})
        response.raw_headers.extend((await policy.admit(res.identity)).headers)
        return response
    if policy.action == "allow":
        return Response(status_code=202, headers={"Cache-Control": "no-store"})
    after = (target.path + (f"?{target.query}" if target.query else "")) if target else "/"
    follow = request.query_params.get("redirect", "").lower() in ("1", "true")
    return policy.deny(request.headers, res.problem, after, follow=follow)
