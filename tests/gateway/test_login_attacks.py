"""SECURITY.md 39-41 against the real IdP: state, nonce and issuer mix-up at the callback.

Each refused case also checks that no code reached the provider's token
endpoint (counted on the provider's own HTTP client, whose requests still go
to the peer).
"""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from ._login_helpers import at_peer, count_requests, error_of, query, start_login
from .conftest import browser_for, gateway_of_app

pytestmark = pytest.mark.node


def with_param(url: str, name: str, value: str | None) -> str:
    base, _, q = url.partition("?")
    parts = [p for p in q.split("&") if not p.startswith(f"{name}=")]
    if value is not None:
        parts.append(f"{name}={value}")
    return f"{base}?{'&'.join(parts)}"


async def test_callback_without_state_is_refused(peer_app: Starlette,
                                                 browser: httpx.AsyncClient) -> None:
    """39: no state -> 400, no code exchange."""
    url = await at_peer(browser, await start_login(browser))
    sent = count_requests(gateway_of_app(peer_app), "corp", "/token")
    assert error_of(await browser.get(with_param(url, "state", None))) == (400, "invalid_state")
    assert sent == []


async def test_callback_with_a_foreign_state_is_refused(peer_app: Starlette,
                                                        browser: httpx.AsyncClient) -> None:
    """39: a state authgate never issued (or malformed) -> 400, no code exchange."""
    url = await at_peer(browser, await start_login(browser))
    sent = count_requests(gateway_of_app(peer_app), "corp", "/token")
    for forged in ("A" * 43, "not-a-state", "%00"):
        assert error_of(await browser.get(with_param(url, "state", forged)))[0] == 400
    assert sent == []


async def test_replayed_callback_is_refused(peer_app: Starlette,
                                            browser: httpx.AsyncClient) -> None:
    """39: the same callback twice -> the second is 400 and exchanges nothing."""
    url = await at_peer(browser, await start_login(browser))
    assert (await browser.get(url)).status_code == 302
    sent = count_requests(gateway_of_app(peer_app), "corp", "/token")
    assert error_of(await browser.get(url)) == (400, "invalid_state")
    assert sent == []


async def test_callback_in_another_browser_is_refused(peer_app: Starlette,
                                                      browser: httpx.AsyncClient) -> None:
    """39: a callback URL carried to another browser (login CSRF) -> 400; the owner still can."""
    url = await at_peer(browser, await start_login(browser))
    sent = count_requests(gateway_of_app(peer_app), "corp", "/token")
    async with browser_for(peer_app) as other:
        assert error_of(await other.get(url)) == (400, "invalid_state")
        other.cookies.set("authgate_login", "B" * 43)
        assert error_of(await other.get(url)) == (400, "invalid_state")
    assert sent == []
    assert (await browser.get(url)).status_code == 302  # not burnt by the attempts


async def test_state_of_another_provider_is_refused(peer_app: Starlette,
                                                    browser: httpx.AsyncClient) -> None:
    """A state issued for corp presented at plain's callback -> 400."""
    url = await at_peer(browser, await start_login(browser))
    wrong = url.replace("/.auth/login/corp/callback", "/.auth/login/plain/callback")
    assert error_of(await browser.get(wrong)) == (400, "invalid_state")


async def test_issuer_mix_up_is_refused(peer_app: Starlette, browser: httpx.AsyncClient) -> None:
    """41: iss naming another IdP (or missing, as the peer supports RFC 9207) -> 401, no exchange."""
    sent = count_requests(gateway_of_app(peer_app), "corp", "/token")
    for iss in ("https%3A%2F%2Fattacker.example", None):
        url = await at_peer(browser, await start_login(browser))
        status, error = error_of(await browser.get(with_param(url, "iss", iss)))
        assert (status, error) == (401, "login_refused")
    assert sent == []


async def test_nonce_mismatch_is_refused(peer_app: Starlette, browser: httpx.AsyncClient) -> None:
    """40: an ID token minted for another nonce (injected request) -> 401."""
    auth = with_param(await start_login(browser), "nonce", "attacker-nonce")
    r = await browser.get(await at_peer(browser, auth))
    assert error_of(r) == (401, "login_refused")
    assert "nonce" in r.json()["error_description"]
    assert gateway_of_app(peer_app).cookie_name not in browser.cookies


async def test_provider_error_response_is_refused(peer_app: Starlette,
                                                  browser: httpx.AsyncClient) -> None:
    """An error from the provider (user declined) is a clear 401, not a 500."""
    q = query(await start_login(browser))
    r = await browser.get("/.auth/login/corp/callback",
                          params={"error": "access_denied", "state": q["state"]})
    assert error_of(r) == (401, "login_refused")


async def test_wrong_code_verifier_is_refused(peer_app: Starlette,
                                              browser: httpx.AsyncClient) -> None:
    """A code from another authorization request (other PKCE challenge) fails the exchange."""
    first = await at_peer(browser, await start_login(browser))
    second = await at_peer(browser, await start_login(browser))
    spliced = with_param(second, "code", query(first)["code"])
    assert error_of(await browser.get(spliced)) == (401, "login_refused")
