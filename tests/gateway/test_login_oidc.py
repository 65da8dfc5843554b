"""End to end with an independent OpenID Connect provider: npm ``oidc-provider`` on loopback.

authgate runs in-process; its provider client talks to the peer over real
HTTP; the "browser" is an httpx client that follows the login through both.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
import secrets
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from authgate.gateway.providers.claims import EMAIL, NAME, NAMEIDENTIFIER

from ..peers.oidc_provider import authorize_url, scripted_login_async
from ._login_helpers import (
    SAME_ORIGIN,
    at_peer,
    count_requests,
    error_of,
    peer_login,
    query,
    start_login,
)
from .conftest import RP_ID, RP_SECRET, callback, gateway_of_app

pytestmark = pytest.mark.node

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


async def peer_meta(browser: httpx.AsyncClient, issuer: str) -> dict[str, Any]:
    meta: dict[str, Any] = (await browser.get(f"{issuer}/.well-known/openid-configuration")).json()
    return meta


async def introspect(browser: httpx.AsyncClient, issuer: str, token: str) -> dict[str, Any]:
    meta = await peer_meta(browser, issuer)
    r = await browser.post(meta["introspection_endpoint"], auth=(RP_ID, RP_SECRET),
                           data={"token": token})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_login_then_me_lists_the_provider_tokens(peer_app: Starlette,
                                                       browser: httpx.AsyncClient) -> None:
    """After a login at the peer, /.auth/me shows its tokens and claims, Easy Auth style."""
    r = await peer_login(browser, post_login_redirect_uri="/app/page?x=1")
    assert r.status_code == 302, r.text
    assert r.headers["location"] == "/app/page?x=1"
    me = await browser.get("/.auth/me")
    assert me.status_code == 200, me.text
    [entry] = me.json()
    assert set(entry) == {"access_token", "expires_on", "id_token", "provider_name",
                          "refresh_token", "user_claims", "user_id"}
    assert entry["provider_name"] == "corp"
    assert entry["user_id"] == "alice"
    assert ISO.match(entry["expires_on"])
    claims = {(c["typ"], c["val"]) for c in entry["user_claims"]}
    assert {(NAMEIDENTIFIER, "alice"), (NAME, "Alice Liddell"),
            (EMAIL, "alice@example.test"), ("sub", "alice")} <= claims
    one = await browser.get("/.auth/me", params={"provider": "corp"})
    assert one.json() == entry
    assert error_of(await browser.get("/.auth/me", params={"provider": "other"}))[0] == 404


async def test_fields_that_do_not_apply_are_absent(peer_app: Starlette,
                                                   browser: httpx.AsyncClient) -> None:
    """Without offline_access there is no refresh_token field, and refresh says 400."""
    await peer_login(browser, scope="openid email")
    [entry] = (await browser.get("/.auth/me")).json()
    assert "refresh_token" not in entry
    assert "access_token_secret" not in entry
    r = await browser.get("/.auth/refresh", headers=SAME_ORIGIN)
    assert error_of(r) == (400, "no_refresh_token")


async def test_refresh_rotates_provider_tokens(peer_app: Starlette, browser: httpx.AsyncClient,
                                               oidc_peer: str) -> None:
    """/.auth/refresh gets a new access token and the peer's rotated refresh token."""
    await peer_login(browser)
    before = (await browser.get("/.auth/me")).json()[0]
    r = await browser.get("/.auth/refresh", headers=SAME_ORIGIN)
    assert r.status_code == 200, r.text
    after = r.json()
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]
    assert (await browser.get("/.auth/me")).json()[0]["refresh_token"] == after["refresh_token"]
    assert (await introspect(browser, oidc_peer, after["access_token"]))["active"] is True
    assert (await introspect(browser, oidc_peer, before["refresh_token"]))["active"] is False


async def test_revocation_at_the_provider_makes_refresh_403(peer_app: Starlette,
                                                            browser: httpx.AsyncClient,
                                                            oidc_peer: str) -> None:
    """A refresh token revoked at the peer turns /.auth/refresh into 403, and it stays so."""
    await peer_login(browser)
    entry = (await browser.get("/.auth/me")).json()[0]
    meta = await peer_meta(browser, oidc_peer)
    r = await browser.post(meta["revocation_endpoint"], auth=(RP_ID, RP_SECRET),
                           data={"token": entry["refresh_token"], "token_type_hint": "refresh_token"})
    assert r.status_code == 200
    assert error_of(await browser.get("/.auth/refresh", headers=SAME_ORIGIN)) == (
        403, "provider_refused")
    asked = count_requests(gateway_of_app(peer_app), "corp", "/token")
    assert error_of(await browser.post("/.auth/refresh", headers=SAME_ORIGIN)) == (
        403, "provider_refused")
    assert asked == []  # a dead grant is not retried at the provider


async def test_logout_revokes_at_the_provider_and_ends_the_session(
        peer_app: Starlette, browser: httpx.AsyncClient, oidc_peer: str) -> None:
    """Logout revokes at the peer (introspection: inactive), clears the cookie, kills replay."""
    await peer_login(browser)
    entry = (await browser.get("/.auth/me")).json()[0]
    gw = gateway_of_app(peer_app)
    cookie = browser.cookies[gw.cookie_name]
    r = await browser.get("/.auth/logout", params={"post_logout_redirect_uri": "/bye"},
                          headers=SAME_ORIGIN)
    assert r.status_code == 302
    assert r.headers["location"] == "/bye"
    assert gw.cookie_name not in browser.cookies
    for token in (entry["refresh_token"], entry["access_token"]):
        assert (await introspect(browser, oidc_peer, token))["active"] is False
    replay = await browser.get("/.auth/me", headers={"Cookie": f"{gw.cookie_name}={cookie}"})
    assert error_of(replay)[0] == 401


async def peer_tokens(browser: httpx.AsyncClient, issuer: str) -> tuple[dict[str, Any], str]:
    """Tokens the peer gives the app itself (as a mobile SDK would get them)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    url = authorize_url(issuer, RP_ID, callback("corp"), scope="openid profile email",
                        state="s", nonce="n", code_challenge=challenge.rstrip(b"=").decode(),
                        code_challenge_method="S256")
    code = query(await scripted_login_async(url, http=browser,
                                            redirect_uri=callback("corp")))["code"]
    return {"code": code, "verifier": verifier}, verifier


async def test_client_directed_login_with_peer_tokens(peer_app: Starlette,
                                                      browser: httpx.AsyncClient,
                                                      oidc_peer: str) -> None:
    """id_token, access_token and authorization_code bodies each yield a session token."""
    got, verifier = await peer_tokens(browser, oidc_peer)
    r = await browser.post("/.auth/login/corp", json={
        "authorization_code": got["code"], "code_verifier": verifier,
        "redirect_uri": callback("corp")})
    assert r.status_code == 200, r.text
    assert r.json()["user"] == {"userId": "alice"}
    zumo = {"X-ZUMO-AUTH": r.json()["authenticationToken"]}
    entry = (await browser.get("/.auth/me", headers=zumo)).json()[0]
    assert entry["user_id"] == "alice"
    for body in ({"id_token": entry["id_token"]}, {"access_token": entry["access_token"]},
                 {"id_token": entry["id_token"], "access_token": entry["access_token"]}):
        r = await browser.post("/.auth/login/corp", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["user"] == {"userId": "alice"}
        me = await browser.get("/.auth/me", headers={"X-ZUMO-AUTH": r.json()["authenticationToken"]})
        assert me.status_code == 200
    head, payload, sig = entry["id_token"].split(".")
    forged = f"{head}.{payload}.{sig[::-1]}"
    assert error_of(await browser.post("/.auth/login/corp", json={"id_token": forged})) == (
        401, "invalid_token")
    assert error_of(await browser.post("/.auth/login/corp", json={"access_token": "nope"})) == (
        401, "invalid_token")
    reused = await browser.post("/.auth/login/corp", json={
        "authorization_code": got["code"], "code_verifier": verifier,
        "redirect_uri": callback("corp")})
    assert error_of(reused) == (401, "invalid_token")


async def test_plain_oauth2_provider_uses_userinfo(peer_app: Starlette,
                                                   browser: httpx.AsyncClient) -> None:
    """type = "oauth2" with hand-named endpoints: the user comes from the user-info endpoint."""
    r = await peer_login(browser, provider="plain")
    assert r.status_code == 302, r.text
    [entry] = (await browser.get("/.auth/me")).json()
    assert entry["provider_name"] == "plain"
    assert entry["user_id"] == "alice"


async def test_login_params_pass_through_but_protected_ones_do_not(
        peer_app: Starlette, browser: httpx.AsyncClient) -> None:
    """Allow-listed query parameters reach the provider; state/redirect_uri/… cannot be set."""
    url = await start_login(browser, "corp", login_hint="bob", ui_locales="de",
                            scope="openid email", prompt="login", state="evil",
                            redirect_uri="https://evil.example/cb", client_id="evil",
                            code_challenge="evil", response_type="token", nonce="evil")
    q = query(url)
    assert q["login_hint"] == "bob" and q["ui_locales"] == "de" and q["prompt"] == "login"
    assert q["scope"] == "openid email"
    assert q["redirect_uri"] == callback("corp")
    assert q["client_id"] == RP_ID and q["response_type"] == "code"
    assert "evil" not in (q["state"], q["nonce"], q["code_challenge"])
    assert q["code_challenge_method"] == "S256"


async def test_single_flight_refresh_under_100_concurrent_callers(
        peer_app: Starlette, browser: httpx.AsyncClient, oidc_peer: str) -> None:
    """100 concurrent ensure_fresh calls on an expired token: one refresh reaches the peer."""
    await peer_login(browser)
    gw = gateway_of_app(peer_app)
    [(key, stored)] = [(k, t) for k, t in await gw.provider_tokens.all_with_refresh_token()]
    stored.expires_on = gw.gate.clock.now() - 10
    await gw.provider_tokens.save(key, stored)
    sent = count_requests(gw, "corp", "/token")
    results = await asyncio.gather(*(gw.freshness.ensure_fresh(key, "corp") for _ in range(100)))
    assert len(sent) == 1
    assert len({r.access_token for r in results if r is not None}) == 1
    saved = await gw.provider_tokens.get(key, "corp")
    assert saved is not None and saved.refresh_token == results[0].refresh_token  # type: ignore[union-attr]
    assert saved.refresh_token != stored.refresh_token
    assert (await introspect(browser, oidc_peer, saved.refresh_token or ""))["active"] is True
    again = await gw.freshness.ensure_fresh(key, "corp")  # fresh now: no request
    assert again is not None and again.access_token == saved.access_token
    assert len(sent) == 1


async def test_token_store_disabled(tmp_path: Any, oidc_peer: str) -> None:
    """token_store = false: login works, /.auth/me is 404 and /.auth/refresh 400."""
    from authgate.app import create_app
    from authgate.clock import SystemClock

    from ..support import open_gate
    from .conftest import browser_for, gateway_settings, peer_providers

    s = gateway_settings(tmp_path, providers=peer_providers(oidc_peer), token_store=False)
    gate = await open_gate(tmp_path, SystemClock(), s)
    app = create_app(gate=gate)
    try:
        async with browser_for(app) as b:
            r = await peer_login(b)
            assert r.status_code == 302
            assert error_of(await b.get("/.auth/me")) == (404, "token_store_disabled")
            assert error_of(await b.get("/.auth/refresh", headers=SAME_ORIGIN)) == (
                400, "token_store_disabled")
    finally:
        await gateway_of_app(app).close()
        await gate.close()


async def test_at_peer_helper_reaches_our_callback(peer_app: Starlette,
                                                   browser: httpx.AsyncClient) -> None:
    """The scripted login at the peer comes back to authgate's callback with code, state, iss."""
    url = await at_peer(browser, await start_login(browser))
    q = query(url)
    assert url.startswith(callback("corp"))
    assert {"code", "state", "iss"} <= set(q)


async def test_no_token_or_code_reaches_the_log(peer_app: Starlette, browser: httpx.AsyncClient,
                                                oidc_peer: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Login, refresh, refusals and logout log why -- never a token, code or secret."""
    caplog.set_level(logging.DEBUG)
    callback_url = await at_peer(browser, await start_login(browser))
    secrets_seen = {query(callback_url)["code"], RP_SECRET}
    await browser.get(callback_url)
    await browser.get(callback_url)  # replay: refused and logged
    first = (await browser.get("/.auth/me")).json()[0]
    second = (await browser.get("/.auth/refresh", headers=SAME_ORIGIN)).json()
    r = await browser.post("/.auth/login/corp", json={"id_token": first["id_token"]})
    forged = first["id_token"][:-3] + "AAA"
    await browser.post("/.auth/login/corp", json={"id_token": forged})
    await browser.get("/.auth/logout", headers=SAME_ORIGIN)
    await browser.get("/.auth/refresh", headers={"X-ZUMO-AUTH": r.json()["authenticationToken"]})
    for entry in (first, second):
        secrets_seen |= {entry[k] for k in ("access_token", "refresh_token", "id_token")}
    secrets_seen |= {r.json()["authenticationToken"], forged}
    ours = [rec.getMessage() for rec in caplog.records if rec.name.startswith("authgate")]
    assert any("invalid_state" in m for m in ours) and any("invalid_token" in m for m in ours)
    for message in ours:
        for secret in secrets_seen:
            assert secret not in message
