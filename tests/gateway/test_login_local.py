"""The ``local`` provider end to end, in-process: authgate's own issuer behind its own gateway."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote, urlsplit

import httpx
from starlette.applications import Starlette

from authgate.clock import FrozenClock
from authgate.gateway import sessions
from authgate.gateway.providers.claims import EMAIL, NAMEIDENTIFIER

from ._login_helpers import SAME_ORIGIN, add_user, error_of, local_login, query, start_login
from .conftest import PUBLIC, gateway_of_app


async def add_alice(app: Starlette) -> str:
    return (await add_user(gateway_of_app(app))).id


async def test_local_login_signs_in_and_stores_our_tokens(local_app: Starlette,
                                                          browser: httpx.AsyncClient) -> None:
    """Login through /.auth/oauth2/authorize ends at '/' with a session and our own tokens."""
    uid = await add_alice(local_app)
    r = await local_login(browser)
    assert r.status_code == 302
    assert r.headers["location"] == "/"
    me = await browser.get("/.auth/me")
    assert me.status_code == 200, me.text
    [entry] = me.json()
    assert entry["provider_name"] == "local"
    assert entry["user_id"] == uid
    assert entry["refresh_token"].startswith("agr_")
    claims = {(c["typ"], c["val"]) for c in entry["user_claims"]}
    assert (NAMEIDENTIFIER, uid) in claims
    assert (EMAIL, "alice@example.com") in claims
    assert entry["expires_on"].endswith(".0000000Z")
    at = await gateway_of_app(local_app).gate.access.verify(entry["access_token"])
    assert at["sub"] == uid


async def test_authorization_request_is_pkce_bound_and_names_our_callback(
        local_app: Starlette, browser: httpx.AsyncClient) -> None:
    """The redirect to the issuer carries state, nonce, S256 and our exact callback."""
    url = await start_login(browser, "local")
    q = query(url)
    assert urlsplit(url).path == "/.auth/oauth2/authorize"
    assert q["redirect_uri"] == f"{PUBLIC}/.auth/login/local/callback"
    assert q["code_challenge_method"] == "S256"
    assert len(q["state"]) >= 43 and len(q["nonce"]) >= 43
    assert "offline_access" in q["scope"].split()


async def test_refresh_rotates_our_refresh_token(local_app: Starlette,
                                                 browser: httpx.AsyncClient) -> None:
    """/.auth/refresh with the cookie rotates the local refresh token (in-process grant)."""
    await add_alice(local_app)
    await local_login(browser)
    before = (await browser.get("/.auth/me")).json()[0]
    r = await browser.get("/.auth/refresh", headers=SAME_ORIGIN)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]
    assert "authenticationToken" not in after  # cookie callers get no session token
    assert (await browser.get("/.auth/me")).json()[0]["refresh_token"] == after["refresh_token"]


async def test_logout_revokes_our_family_and_ends_the_session(local_app: Starlette,
                                                              browser: httpx.AsyncClient) -> None:
    """Logout revokes the refresh-token family and the access token; the old cookie is dead."""
    await add_alice(local_app)
    await local_login(browser)
    entry = (await browser.get("/.auth/me")).json()[0]
    gw = gateway_of_app(local_app)
    cookie = browser.cookies[gw.cookie_name]
    r = await browser.get("/.auth/logout", headers=SAME_ORIGIN)
    assert r.status_code == 200
    assert "signed out" in r.text
    assert await gw.gate.refresh.lookup(entry["refresh_token"]) is None
    r = await browser.get("/.auth/oauth2/userinfo",
                          headers={"Authorization": f"Bearer {entry['access_token']}"})
    assert r.status_code == 401
    replay = await browser.get("/.auth/me", headers={"Cookie": f"{gw.cookie_name}={cookie}"})
    assert error_of(replay)[0] == 401
    assert await gw.provider_tokens.of_user(f"local|{entry['user_id']}") == []


async def test_server_flow_to_done_returns_a_session_token(local_app: Starlette,
                                                           browser: httpx.AsyncClient) -> None:
    """post_login_redirect_uri=/.auth/login/done ends at done#token={authenticationToken, user}."""
    uid = await add_alice(local_app)
    r = await local_login(browser, post_login_redirect_uri="/.auth/login/done")
    location = r.headers["location"]
    assert location.startswith("/.auth/login/done#token=")
    body = json.loads(unquote(location.split("#token=", 1)[1]))
    assert body["user"] == {"userId": uid}
    browser.cookies.clear()
    me = await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": body["authenticationToken"]})
    assert me.status_code == 200
    page = await browser.get("/.auth/login/done")
    assert page.status_code == 200
    assert "close this window" in page.text


async def test_expired_session_token_refreshes_within_72_hours_only(
        local_app: Starlette, browser: httpx.AsyncClient, frozen: FrozenClock) -> None:
    """An expired X-ZUMO-AUTH works at /.auth/refresh for 72 h after expiry, not after."""
    await add_alice(local_app)
    r = await local_login(browser, post_login_redirect_uri="/.auth/login/done")
    token = json.loads(unquote(r.headers["location"].split("#token=", 1)[1]))["authenticationToken"]
    browser.cookies.clear()
    frozen.advance(9 * 3600)  # the 8 h token has expired
    assert error_of(await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": token}))[0] == 401
    r = await browser.get("/.auth/refresh", headers={"X-ZUMO-AUTH": token})
    assert r.status_code == 200, r.text
    fresh = r.json()["authenticationToken"]
    assert fresh != token
    assert (await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": fresh})).status_code == 200
    frozen.advance(8 * 3600 + 73 * 3600)  # both tokens now expired more than 72 h ago
    for t in (token, fresh):
        assert error_of(await browser.get("/.auth/refresh", headers={"X-ZUMO-AUTH": t}))[0] == 401


async def test_bearer_access_token_callers_can_refresh(local_app: Starlette,
                                                       browser: httpx.AsyncClient) -> None:
    """A caller holding one of our access tokens (Bearer) refreshes its stored grant."""
    await add_alice(local_app)
    await local_login(browser)
    entry = (await browser.get("/.auth/me")).json()[0]
    browser.cookies.clear()
    r = await browser.post("/.auth/refresh",
                           headers={"Authorization": f"Bearer {entry['access_token']}"})
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] != entry["refresh_token"]
    assert "authenticationToken" not in r.json()


async def test_client_directed_login_with_our_access_token(local_app: Starlette,
                                                           browser: httpx.AsyncClient) -> None:
    """POST /.auth/login/local {access_token} answers authenticationToken + user."""
    uid = await add_alice(local_app)
    await local_login(browser)
    entry = (await browser.get("/.auth/me")).json()[0]
    browser.cookies.clear()
    r = await browser.post("/.auth/login/local", json={"access_token": entry["access_token"]})
    assert r.status_code == 200, r.text
    assert r.json()["user"] == {"userId": uid}
    me = await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": r.json()["authenticationToken"]})
    assert me.status_code == 200
    assert me.json()[0]["access_token"] == entry["access_token"]
    r = await browser.post("/.auth/login/local", json={"id_token": entry["id_token"]})
    assert r.status_code == 200, r.text
    bad = await browser.post("/.auth/login/local", json={"access_token": entry["access_token"][:-4]})
    assert error_of(bad) == (401, "invalid_token")
    assert error_of(await browser.post("/.auth/login/local", json={"nothing": 1})) == (
        400, "invalid_request")
    assert error_of(await browser.post("/.auth/login/local", content=b"[1,",
                                       headers={"Content-Type": "application/json"})) == (
        400, "invalid_request")


async def test_unknown_provider_is_404(local_app: Starlette, browser: httpx.AsyncClient) -> None:
    """Login at a provider that is not configured is a 404 JSON error, not a 500."""
    assert error_of(await browser.get("/.auth/login/nope")) == (404, "unknown_provider")
    assert error_of(await browser.get("/.auth/login/nope/callback")) == (404, "unknown_provider")


async def test_sign_out_everywhere_ends_the_gateway_session(local_app: Starlette,
                                                            browser: httpx.AsyncClient) -> None:
    """`authgate tokens revoke --user` (and disabling the user) signs the browser out too."""
    uid = await add_alice(local_app)
    await local_login(browser)
    assert (await browser.get("/.auth/me")).status_code == 200
    gw = gateway_of_app(local_app)
    await gw.gate.sign_out_everywhere(uid)
    await asyncio.sleep(sessions.CACHE_SECONDS + 0.1)  # this process's cached copy lets go
    assert (await browser.get("/.auth/me")).status_code == 401
    assert await gw.provider_tokens.get(f"local|{uid}", "local", cached=False) is None
