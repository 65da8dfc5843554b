"""Forward-auth (``GET /.auth/verify``) over real HTTP, as nginx auth_request would call it."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from . import _proxy_fixtures as fx
from ._proxy_fixtures import Start

# The shared fixtures (module attributes, so pytest finds them here).
echo_upstream, idp, idp_server, start = fx.echo_upstream, fx.idp, fx.idp_server, fx.start


async def _verify(url: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as c:
        return await c.get("/.auth/verify", **kw)


async def test_signed_in_request_gets_202_with_identity_headers(start: Start) -> None:
    """202 and the same X-MS-* headers the reverse proxy injects, tokens included."""
    env = await start(unauthenticated_action="redirect")
    cookie = await env.sign_in(tokens=env.tokens())
    r = await _verify(env.url, headers={**cookie, "X-MS-CLIENT-PRINCIPAL-ID": "spoofed"})
    assert r.status_code == 202
    assert r.headers.get_list("x-ms-client-principal-id") == ["u-1"]
    assert r.headers["x-ms-client-principal-idp"] == "corp"
    assert json.loads(base64.b64decode(r.headers["x-ms-client-principal"]))["auth_typ"] == "corp"
    assert r.headers["x-ms-token-corp-access-token"] == "at-1"
    assert r.headers["cache-control"] == "no-store"


async def test_session_token_and_head_are_accepted(start: Start) -> None:
    """X-ZUMO-AUTH works, and HEAD answers like GET (Traefik and Caddy may use either)."""
    env = await start()
    token = await env.session_token(user_id="u-7")
    async with httpx.AsyncClient(base_url=env.url) as c:
        r = await c.head("/.auth/verify", headers={"X-ZUMO-AUTH": token})
    assert r.status_code == 202 and r.headers["x-ms-client-principal-id"] == "u-7"


async def test_anonymous_request_gets_401_with_a_challenge(start: Start) -> None:
    """401 JSON with WWW-Authenticate; the login URL comes back to the original URI."""
    env = await start(unauthenticated_action="redirect", trusted_proxies=["127.0.0.1"])
    r = await _verify(env.url, headers={"X-Original-URI": "/app?x=1"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="authgate"'
    assert r.json()["error"] == "unauthorized"
    assert "/.auth/login/corp?post_login_redirect_uri=%2Fapp%3Fx%3D1" in r.json()["error_description"]
    assert "x-ms-client-principal" not in r.headers


async def test_browsers_get_the_login_url(start: Start) -> None:
    """nginx: a 401 with Location to log in; Traefik/Caddy (?redirect=true): the 302 itself."""
    env = await start(unauthenticated_action="redirect", trusted_proxies=["127.0.0.1"])
    browser = {"Accept": "text/html", "X-Forwarded-Uri": "/app/page?x=1"}
    login = "/.auth/login/corp?post_login_redirect_uri=%2Fapp%2Fpage%3Fx%3D1"
    r = await _verify(env.url, headers=browser)
    assert r.status_code == 401 and r.headers["location"] == login
    r = await _verify(env.url, headers=browser, params={"redirect": "true"})
    assert r.status_code == 302 and r.headers["location"] == login
    r = await _verify(env.url, headers={**browser, "Accept": "application/json"},
                      params={"redirect": "true"})
    assert r.status_code == 401 and "location" not in r.headers


async def test_bad_cookie_is_401_invalid_token(start: Start) -> None:
    """A tampered session cookie makes the request anonymous, never a 500."""
    env = await start()
    r = await _verify(env.url, headers={"Cookie": f"{env.gw.cookie_name}=forged.value"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


@pytest.mark.parametrize(("action", "status"), [("allow", 202), ("403", 403), ("401", 401)])
async def test_unauthenticated_action_applies(start: Start, action: str, status: int) -> None:
    """allow lets anonymous requests through (no identity headers); 403 refuses with 403."""
    env = await start(unauthenticated_action=action)
    r = await _verify(env.url)
    assert r.status_code == status
    assert "x-ms-client-principal" not in r.headers


@pytest.mark.parametrize("header", ["X-Forwarded-Uri", "X-Original-URI"])
async def test_excluded_original_uri_passes_only_from_a_trusted_proxy(start: Start,
                                                                      header: str) -> None:
    """The original URI decides exclusions, but only when a trusted proxy says so."""
    env = await start(unauthenticated_action="401", excluded_paths=["/health"],
                      trusted_proxies=["127.0.0.1"])
    assert (await _verify(env.url, headers={header: "/health/live?x=1"})).status_code == 202
    assert (await _verify(env.url, headers={header: "/health/../admin"})).status_code == 401
    assert (await _verify(env.url, headers={header: "/admin"})).status_code == 401
    untrusted = await start(unauthenticated_action="401", excluded_paths=["/health"])
    assert (await _verify(untrusted.url, headers={header: "/health"})).status_code == 401
