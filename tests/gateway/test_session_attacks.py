"""SECURITY.md 42-47 on the gateway: redirects, cookies, session tokens, CSRF, fixation."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from starlette.applications import Starlette

from authgate.app import create_app
from authgate.clock import FrozenClock
from authgate.gateway import custom_auth

from ..support import open_gate
from ._login_helpers import CROSS_SITE, SAME_ORIGIN, add_user, error_of, local_login
from .conftest import PUBLIC, SIGNING_KEY, browser_for, gateway_of_app, gateway_settings

OPEN_REDIRECTS = [
    "https://evil.example", "https://evil.example/return", "//evil.example", "/\\evil.example",
    "\\\\evil.example", "https:evil.example", "javascript:alert(1)", "JavaScript:alert(1)",
    "data:text/html,hi", "%2F%2Fevil.example", "/%2F%2Fevil.example", "/%5Cevil.example",
    "/%252F%252Fevil.example", "http://localhost.evil.example/", "https://app.example.evil/",
    "https://app.example/returnx", "https://user@app.example/return", "/\t/evil.example",
    " //evil.example", "/x\r\nSet-Cookie: a=b", "myapp://other", "evil.example",
    "https://app.example:444/return", "http://app.example/return",
]
ALLOWED = ["/", "/app/page?x=1&y=%2F", "/.auth/login/done", "https://app.example/return",
           "https://app.example/return/deep?x=1", "myapp://auth/callback", f"{PUBLIC}/anything"]


async def add_alice(app: Starlette) -> None:
    await add_user(gateway_of_app(app))


async def test_open_redirects_are_refused(local_app: Starlette,
                                          browser: httpx.AsyncClient) -> None:
    """42: post_login_redirect_uri / post_logout_redirect_uri off-site -> 400, no redirect."""
    refused = {(400, "invalid_redirect_uri"), (400, "invalid_request")}  # control chars: the latter
    for target in OPEN_REDIRECTS:
        r = await browser.get("/.auth/login/local", params={"post_login_redirect_uri": target})
        assert error_of(r) in refused, target
        r = await browser.get("/.auth/logout", params={"post_logout_redirect_uri": target})
        assert error_of(r) in refused, target


async def test_local_and_allow_listed_redirects_are_accepted(local_app: Starlette,
                                                             browser: httpx.AsyncClient) -> None:
    """Relative paths, our origin and allow-listed URLs (incl. app schemes) are fine."""
    for target in ALLOWED:
        r = await browser.get("/.auth/login/local", params={"post_login_redirect_uri": target})
        assert r.status_code == 302, target
        r = await browser.get("/.auth/logout", params={"post_logout_redirect_uri": target})
        assert r.status_code == 302, target
        assert r.headers["location"] == target


async def test_login_redirects_to_the_checked_target(local_app: Starlette,
                                                     browser: httpx.AsyncClient) -> None:
    """The target survives the round trip through the issuer unchanged."""
    await add_alice(local_app)
    r = await local_login(browser, post_login_redirect_uri="https://app.example/return/x")
    assert r.headers["location"] == "https://app.example/return/x"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_tampered_cookies_are_anonymous_never_500(local_app: Starlette,
                                                        browser: httpx.AsyncClient) -> None:
    """44: truncated, edited, swapped or garbage cookies -> 401 on /.auth/me."""
    await add_alice(local_app)
    await local_login(browser)
    gw = gateway_of_app(local_app)
    good = browser.cookies[gw.cookie_name]
    sid, secret = good.split(".")
    other, _ = await gw.sessions.start(provider="local", user_id="bob", name="bob", claims=[])
    other_sid, other_secret = other.split(".")
    variants = [good[:-1], good[:10], sid, f"{sid}.", f".{secret}", f"{sid}.{other_secret}",
                f"{other_sid}.{secret}", f"{sid}.{secret[::-1]}", "x" * 300, "a.b.c", "%00",
                secrets.token_urlsafe(16) + "." + secrets.token_urlsafe(32), "é.ü"]
    browser.cookies.clear()
    for value in variants:
        raw = f"{gw.cookie_name}={value}".encode()  # bytes: non-ASCII cookies too
        r = await browser.get("/.auth/me", headers={b"Cookie": raw})
        assert r.status_code == 401, value
        assert error_of(r)[1] == "unauthorized"
    assert (await browser.get("/.auth/me", headers={
        "Cookie": f"{gw.cookie_name}={good}"})).status_code == 200


async def test_tampered_session_tokens_are_refused(local_app: Starlette,
                                                   browser: httpx.AsyncClient) -> None:
    """A session token edited, re-signed with another key, alg none or truncated -> 401."""
    await add_alice(local_app)
    r = await local_login(browser, post_login_redirect_uri="/.auth/login/done")
    token = json.loads(unquote(r.headers["location"].split("#token=")[1]))["authenticationToken"]
    browser.cookies.clear()
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    other_key = custom_auth.session_token("mallory", signing_key_hex=secrets.token_hex(32),
                                          public_url=PUBLIC)
    variants = [
        f"{head}.{payload}.{sig[:-2]}", f"{head}.{_b64({**claims, 'sid': 'x'})}.{sig}",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.", f"{head}.{payload}", other_key,
        token + "x", "garbage",
    ]
    for value in variants:
        for headers in ({"X-ZUMO-AUTH": value}, {"Authorization": f"Bearer {value}"}):
            assert (await browser.get("/.auth/me", headers=headers)).status_code == 401, value
            assert (await browser.get("/.auth/refresh", headers=headers)).status_code == 401
    assert (await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": token})).status_code == 200


async def test_custom_auth_session_token_is_accepted(local_app: Starlette,
                                                     browser: httpx.AsyncClient,
                                                     frozen: FrozenClock) -> None:
    """authgate.session_token(...) minted with the shared key signs a custom user in."""
    token = custom_auth.session_token("user-42", signing_key_hex=SIGNING_KEY, public_url=PUBLIC,
                                      now=frozen.now())
    r = await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": token})
    assert r.status_code == 200
    assert r.json() == []
    wrong_site = custom_auth.session_token("user-42", signing_key_hex=SIGNING_KEY,
                                           public_url="https://other.example", now=frozen.now())
    assert (await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": wrong_site})).status_code == 401
    with pytest.raises(ValueError, match="user_id"):
        custom_auth.session_token("", signing_key_hex=SIGNING_KEY, public_url=PUBLIC)


@pytest.fixture
async def https_app(tmp_path: Path, frozen: FrozenClock) -> AsyncIterator[Starlette]:
    gate = await open_gate(tmp_path, frozen, gateway_settings(
        tmp_path, public_url="https://gw.example"))
    app = create_app(gate=gate)
    yield app
    await gateway_of_app(app).close()
    await gate.close()


async def test_cookie_flags(https_app: Starlette) -> None:
    """45: __Host- prefix, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain, Max-Age 8 h."""
    await add_alice(https_app)
    async with browser_for(https_app, "https://gw.example") as b:
        start = await b.get("/.auth/login/local")
        [login_cookie] = start.headers.get_list("set-cookie")
        assert login_cookie.startswith("__Host-authgate_login=")
        r = await local_login(b, origin="https://gw.example")
        [raw] = [c for c in r.headers.get_list("set-cookie") if "authgate_session" in c]
        name, _, rest = raw.partition("=")
        attrs = {a.strip().split("=")[0].lower(): a.strip() for a in rest.split(";")[1:]}
        assert name == "__Host-authgate_session"
        assert {"secure", "httponly", "samesite", "path", "max-age"} <= set(attrs)
        assert "domain" not in attrs
        assert attrs["samesite"].lower() == "samesite=lax"
        assert attrs["path"] == "Path=/"
        assert attrs["max-age"] == "Max-Age=28800"
        assert (await b.get("/.auth/me")).status_code == 200


async def test_plain_http_loopback_cookies_are_not_secure(local_app: Starlette,
                                                          browser: httpx.AsyncClient) -> None:
    """On http://localhost the cookie cannot be Secure (nor __Host-), but stays HttpOnly+Lax."""
    await add_alice(local_app)
    r = await local_login(browser)
    [raw] = [c for c in r.headers.get_list("set-cookie") if "authgate_session" in c]
    assert raw.startswith("authgate_session=")
    assert "secure" not in raw.lower() and "httponly" in raw.lower()


async def test_cross_site_cookie_requests_are_403(local_app: Starlette,
                                                  browser: httpx.AsyncClient) -> None:
    """47: a cross-site GET or POST with the session cookie -> 403, and nothing happens."""
    await add_alice(local_app)
    await local_login(browser)
    for path in ("/.auth/refresh", "/.auth/logout"):
        for method in ("GET", "POST"):
            for headers in (CROSS_SITE, {"Sec-Fetch-Site": "same-site"},
                            {"Origin": "https://evil.example"},
                            {**CROSS_SITE, "Authorization": "Basic YTpi"}):
                r = await browser.request(method, path, headers=headers)
                assert error_of(r) == (403, "cross_site"), (path, method, headers)
    assert (await browser.get("/.auth/me")).status_code == 200  # still signed in
    assert (await browser.post("/.auth/refresh", headers=SAME_ORIGIN)).status_code == 200
    assert (await browser.get("/.auth/logout", headers={"Sec-Fetch-Site": "none"})).status_code == 200
    assert (await browser.get("/.auth/me")).status_code == 401


async def test_login_replaces_the_session_no_fixation(local_app: Starlette,
                                                      browser: httpx.AsyncClient) -> None:
    """43: a session cookie held before login (planted or old) does not survive the login."""
    await add_alice(local_app)
    gw = gateway_of_app(local_app)
    planted, _ = await gw.sessions.start(provider="local", user_id="mallory", name="m", claims=[])
    browser.cookies.set(gw.cookie_name, planted, domain="localhost.local")  # as cookielib files it
    await local_login(browser)
    fresh = browser.cookies[gw.cookie_name]
    assert fresh != planted
    assert await gw.sessions.by_cookie(planted) is None
    await local_login(browser)
    assert await gw.sessions.by_cookie(fresh) is None
    assert (await browser.get("/.auth/me")).status_code == 200


async def test_anonymous_callers_get_401_json(local_app: Starlette,
                                              browser: httpx.AsyncClient) -> None:
    """No credential: /.auth/me and /.auth/refresh are 401 with a JSON reason."""
    assert error_of(await browser.get("/.auth/me")) == (401, "unauthorized")
    assert error_of(await browser.get("/.auth/refresh")) == (401, "unauthorized")
    r = await browser.get("/.auth/logout")
    assert r.status_code == 200  # nothing to end; still a clean answer
