"""Freshness: when a refresh happens, what it raises, and the background refresher.

Grants are real: refresh tokens issued by authgate's own issuer and refreshed
through the ``local`` provider in-process, on a frozen clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from starlette.applications import Starlette

from authgate.app import create_app
from authgate.clock import FrozenClock
from authgate.gateway import Gateway
from authgate.gateway.freshness import (
    NoRefreshToken,
    ProviderRefused,
    ProviderUnavailable,
    run_refresher,
)
from authgate.gateway.provider_tokens import ProviderTokens
from authgate.gateway.providers.local import LocalProvider
from authgate.hashing import new_id

from ..support import open_gate
from ._login_helpers import add_user
from .conftest import gateway_of_app, gateway_settings


async def grant(gw: Gateway, username: str, *, expires_in: float = 3600) -> tuple[str, str]:
    """A user with a stored local grant (our refresh token); returns (user key, family)."""
    user = await add_user(gw, username, email=f"{username}@example.com")
    local = gw.providers["local"]
    assert isinstance(local, LocalProvider)
    client = await local.client()
    family = new_id()
    rt = await gw.gate.refresh.issue(family=family, user_id=user.id, client=client,
                                     scope="openid offline_access", auth_time=gw.gate.clock.now())
    now = gw.gate.clock.now()
    key = f"local|{user.id}"
    await gw.provider_tokens.save(key, ProviderTokens("local", user.id, access_token="old",
                                                      refresh_token=rt, expires_on=now + expires_in))
    return key, family


async def test_fresh_tokens_are_returned_without_refreshing(local_app: Starlette) -> None:
    """Not expiring within the skew: the stored tokens, untouched."""
    gw = gateway_of_app(local_app)
    key, _ = await grant(gw, "alice")
    got = await gw.freshness.ensure_fresh(key, "local")
    assert got is not None and got.access_token == "old"
    assert await gw.freshness.ensure_fresh("local|nobody", "local") is None


async def test_expiring_within_the_skew_refreshes_and_saves_first(local_app: Starlette,
                                                                  frozen: FrozenClock) -> None:
    """Inside refresh_skew the token is refreshed and the rotated grant stored."""
    gw = gateway_of_app(local_app)
    key, _ = await grant(gw, "alice")
    before = await gw.provider_tokens.get(key, "local")
    frozen.advance(3600 - gw.settings.gateway.refresh_skew + 1)
    got = await gw.freshness.ensure_fresh(key, "local")
    assert got is not None and got.access_token != "old"
    stored = await gw.provider_tokens.get(key, "local")
    assert stored is not None and before is not None
    assert stored.refresh_token == got.refresh_token != before.refresh_token
    assert stored.claims == got.claims and stored.user_id == before.user_id


async def test_concurrent_callers_share_one_refresh(local_app: Starlette,
                                                    frozen: FrozenClock) -> None:
    """50 concurrent forced calls: one rotation (a second would be reuse and kill the family)."""
    gw = gateway_of_app(local_app)
    key, _ = await grant(gw, "alice")
    results = await asyncio.gather(*(gw.freshness.ensure_fresh(key, "local", force=True)
                                     for _ in range(50)))
    assert len({r.refresh_token for r in results if r is not None}) == 1
    events = [e.event for e in await gw.gate.audit.for_subject(key)]
    assert events.count("provider_token.refreshed") == 1
    assert results[0] is not None and results[0].refresh_token is not None
    assert await gw.gate.refresh.lookup(results[0].refresh_token) is not None  # family alive


async def test_refused_grant_is_marked_and_not_retried(local_app: Starlette) -> None:
    """invalid_grant -> ProviderRefused, refresh_failed stored, later calls fail fast."""
    gw = gateway_of_app(local_app)
    key, family = await grant(gw, "alice")
    local = gw.providers["local"]
    assert isinstance(local, LocalProvider)
    await gw.gate.refresh.revoke_family(family, user=key, client=await local.client(),
                                        reason="test")
    with pytest.raises(ProviderRefused, match="invalid_grant"):
        await gw.freshness.ensure_fresh(key, "local", force=True)
    stored = await gw.provider_tokens.get(key, "local")
    assert stored is not None and stored.refresh_failed
    with pytest.raises(ProviderRefused):
        await gw.freshness.ensure_fresh(key, "local", force=True)


async def test_no_refresh_token_is_its_own_error(local_app: Starlette) -> None:
    """Tokens without a refresh token (offline scope not granted) -> NoRefreshToken."""
    gw = gateway_of_app(local_app)
    await gw.provider_tokens.save("local|u", ProviderTokens("local", "u", access_token="a",
                                                            expires_on=0))
    with pytest.raises(NoRefreshToken):
        await gw.freshness.ensure_fresh("local|u", "local")
    await gw.provider_tokens.save("gone|u", ProviderTokens("gone", "u", refresh_token="r",
                                                           expires_on=0))
    with pytest.raises(NoRefreshToken, match="no longer configured"):
        await gw.freshness.ensure_fresh("gone|u", "gone")


async def test_unreachable_provider_is_unavailable_and_changes_nothing(
        tmp_path: Path, frozen: FrozenClock) -> None:
    """A provider that cannot be reached -> ProviderUnavailable; stored tokens untouched."""
    providers = {"down": {"type": "oauth2", "client_id": "c", "client_secret": "s",
                          "authorization_endpoint": "http://127.0.0.1:9/auth",
                          "token_endpoint": "http://127.0.0.1:9/token"}}
    gate = await open_gate(tmp_path, frozen, gateway_settings(tmp_path, providers=providers))
    app = create_app(gate=gate)
    gw = gateway_of_app(app)
    try:
        tokens = ProviderTokens("down", "u", access_token="a", refresh_token="r", expires_on=0)
        await gw.provider_tokens.save("down|u", tokens)
        with pytest.raises(ProviderUnavailable):
            await gw.freshness.ensure_fresh("down|u", "down")
        stored = await gw.provider_tokens.get("down|u", "down")
        assert stored is not None
        assert (stored.refresh_token, stored.refresh_failed) == ("r", None)
    finally:
        await gw.close()
        await gate.close()


async def test_lock_factory_wraps_each_refresh(local_app: Starlette) -> None:
    """The cross-instance lock hook is entered once per refresh, with the grant's key."""
    gw = gateway_of_app(local_app)
    key, _ = await grant(gw, "alice")
    entered: list[str] = []

    @asynccontextmanager
    async def lock(name: str) -> AsyncIterator[None]:
        entered.append(name)
        yield

    gw.freshness.lock_factory = lock
    await asyncio.gather(*(gw.freshness.ensure_fresh(key, "local", force=True) for _ in range(5)))
    assert entered == [f"{key}\x00local"]


async def test_refresh_all_refreshes_due_grants_and_reports_dead_ones(
        local_app: Starlette, frozen: FrozenClock) -> None:
    """The background pass refreshes what is due, skips what is not, reports dead grants."""
    gw = gateway_of_app(local_app)
    fresh_key, _ = await grant(gw, "fresh", expires_in=10 * 3600)
    due_key, _ = await grant(gw, "due", expires_in=3600)
    dead_key, dead_family = await grant(gw, "dead", expires_in=3600)
    local = gw.providers["local"]
    assert isinstance(local, LocalProvider)
    await gw.gate.refresh.revoke_family(dead_family, user=dead_key,
                                        client=await local.client(), reason="test")
    frozen.advance(1801)  # past half the 1 h lifetime, well inside the 10 h one
    report = await gw.freshness.refresh_all()
    assert report.checked == 3
    assert report.refreshed == 1
    assert [(d.user_key, d.provider) for d in report.dead] == [(dead_key, "local")]
    assert "invalid_grant" in report.dead[0].reason
    due = await gw.provider_tokens.get(due_key, "local")
    assert due is not None and due.access_token != "old"
    untouched = await gw.provider_tokens.get(fresh_key, "local")
    assert untouched is not None and untouched.access_token == "old"
    again = await run_refresher(gw, interval=60, once=True)
    assert again.refreshed == 0 and [d.user_key for d in again.dead] == [dead_key]


async def test_due_rules(local_app: Starlette) -> None:
    """Due within the skew (5 min) or past half its lifetime; unknown expiry is never due."""
    f = gateway_of_app(local_app).freshness
    t = ProviderTokens("p", "u", expires_on=10_000, updated_at=6_400)
    assert not f.due(t, 6_500)
    assert f.due(t, 8_200)  # past half of 3 600 s
    assert f.due(ProviderTokens("p", "u", expires_on=10_000), 9_800)  # inside the skew
    assert not f.due(ProviderTokens("p", "u"), 1e12)
