"""Browser-less logins through authgate's gateway, and small helpers for asserting on them."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from authgate.accounts import User
from authgate.gateway import Gateway
from authgate.gateway.providers.oauth2 import OAuth2Provider
from authgate.hashing import new_id

from ..oauth._fixtures import hidden_fields
from ..peers.oidc_provider import scripted_login_async
from .conftest import PUBLIC, callback

SAME_ORIGIN = {"Origin": PUBLIC, "Sec-Fetch-Site": "same-origin"}
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
PASSWORD = "correct horse battery staple"


async def start_login(browser: httpx.AsyncClient, provider: str = "corp",
                      **params: str) -> str:
    """``GET /.auth/login/<provider>``; the provider's authorization URL it redirects to."""
    r = await browser.get(f"/.auth/login/{provider}", params=params)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def at_peer(browser: httpx.AsyncClient, authorization_url: str, provider: str = "corp",
                  login: str = "alice") -> str:
    """Sign in at the peer; the callback URL it sends the browser back to (not followed)."""
    return await scripted_login_async(authorization_url, login=login, http=browser,
                                      redirect_uri=callback(provider))


async def peer_login(browser: httpx.AsyncClient, provider: str = "corp", login: str = "alice",
                     **params: str) -> httpx.Response:
    """A whole server-directed login at the peer; the callback's response."""
    url = await at_peer(browser, await start_login(browser, provider, **params), provider, login)
    return await browser.get(url)




async def local_login(browser: httpx.AsyncClient, username: str = "alice",
                      origin: str = PUBLIC, **params: str) -> httpx.Response:
    """A whole login with the ``local`` provider: authorize, sign-in form, callback."""
    url = await start_login(browser, "local", **params)
    for _ in range(8):
        r = await browser.get(url)
        if r.status_code == 200 and "<form" in r.text:  # the sign-in page
            fields = hidden_fields(r.text)
            r = await browser.post("/.auth/account/login", data={
                **fields, "username": username, "password": PASSWORD},
                headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
        assert r.status_code in (302, 303), r.text
        url = r.headers["location"]
        if urlsplit(url).path == "/.auth/login/local/callback":
            return await browser.get(url)
    raise AssertionError("the local login did not reach the callback")


@cache
def _password_hash() -> str:
    from argon2 import PasswordHasher

    return PasswordHasher().hash(PASSWORD)  # once per run: argon2 costs ~0.3 s here


async def add_user(gw: Gateway, username: str = "alice", *,
                   email: str = "alice@example.com") -> User:
    """A local account with :data:`PASSWORD` (the hash computed once per test run)."""
    user = User(new_id(), username, _password_hash(), username.title(), email, False,
                gw.gate.clock.now())
    await gw.gate.accounts.save(user)
    return user


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def count_requests(gw: Gateway, provider: str, path_suffix: str) -> list[httpx.Request]:
    """Record every request the provider's own HTTP client sends to a URL ending so."""
    p = gw.providers[provider]
    assert isinstance(p, OAuth2Provider)
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        if request.url.path.endswith(path_suffix):
            seen.append(request)

    p.http.event_hooks["request"].append(hook)
    return seen


def error_of(r: httpx.Response) -> tuple[int, str]:
    body: dict[str, Any] = r.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error_description"]
    return r.status_code, str(body["error"])
