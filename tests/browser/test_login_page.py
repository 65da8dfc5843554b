"""A real browser (Chromium through Playwright) signs in on our login page.

What only a browser can prove: the CSRF cookie round-trips, the
``Origin``/``Sec-Fetch-Site`` headers it really sends pass our same-origin
check, the Content-Security-Policy of the page does not block the form or
the redirect chain that follows it (``form-action`` also applies to
redirects after a submission), and the browser ends up at the client's
redirect URI -- on another origin -- with a code that redeems.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from authgate.app import create_app
from authgate.config import Settings
from authgate.service import AuthGate

from ..live import free_port, serve
from ..oauth._fixtures import PASSWORD, pkce_pair

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


async def callback(request: Request) -> Response:
    return PlainTextResponse("callback reached")


def playwright() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install -e '.[dev]'` "
                    "(it drives the system Chromium; no `playwright install` needed)")
    return async_playwright()


async def test_browser_signs_in_and_lands_on_the_redirect_uri_with_a_code(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    redirect = f"http://localhost:{port}/cb"  # another origin than the issuer, as for a real RP
    settings = Settings(public_url=base, store=f"sqlite:///{tmp_path}/a.db", data_dir=str(tmp_path))
    setup = await AuthGate.open(settings)  # keys.json in tmp_path, shared with the server
    try:
        await setup.accounts.add("alice", PASSWORD)
        await setup.clients.add("web", public=True, redirect_uris=[redirect],
                                scopes=["openid", "profile"])
    finally:
        await setup.close()

    verifier, challenge = pkce_pair()
    query = urlencode({"response_type": "code", "client_id": "web", "redirect_uri": redirect,
                       "scope": "openid profile", "state": "browser-state", "nonce": "bn",
                       "code_challenge": challenge, "code_challenge_method": "S256"})
    with serve(create_app(settings, extra_routes=[Route("/cb", callback)]), port):
        async with playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{base}/.auth/oauth2/authorize?{query}")
                assert urlsplit(page.url).path == "/.auth/account/login"

                await page.fill("#username", "alice")
                await page.fill("#password", "not the password")
                await page.click("button[type=submit]")
                assert "Wrong username or password." in await page.inner_text("main")

                await page.fill("#username", "alice")
                await page.fill("#password", PASSWORD)
                async with page.expect_navigation(url=re.compile(r"^http://localhost:\d+/cb\?")):
                    await page.click("button[type=submit]")
                assert await page.inner_text("body") == "callback reached"
                params = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
                assert params["state"] == "browser-state"
                assert params["iss"] == f"{base}/.auth"

                cookies = {c["name"]: c for c in await page.context.cookies(base)}
                assert cookies["agsso"]["httpOnly"] is True
                assert cookies["agsso"]["sameSite"] == "Lax"

                # Silent renewal with the SSO cookie: no form this time.
                await page.goto(f"{base}/.auth/oauth2/authorize?{query}&prompt=none")
                assert page.url.startswith(redirect + "?code=")
            finally:
                await browser.close()

        async with httpx.AsyncClient(base_url=base) as rp:
            tok = await rp.post("/.auth/oauth2/token", data={
                "grant_type": "authorization_code", "code": params["code"],
                "redirect_uri": redirect, "client_id": "web", "code_verifier": verifier})
        assert tok.status_code == 200, tok.text
        assert tok.json()["token_type"] == "Bearer"
