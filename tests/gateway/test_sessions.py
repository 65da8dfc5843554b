"""Gateway sessions and session tokens read through their short in-process caches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from authgate.clock import FrozenClock
from authgate.errors import InvalidToken
from authgate.gateway import Gateway, sessions
from authgate.gateway.provider_tokens import ProviderTokens

from ..support import open_gate
from .conftest import gateway_settings


async def test_a_session_ended_elsewhere_is_refused_within_the_cache_time(tmp_path: Path) -> None:
    """Two gateways on one store stand for two instances: one ends, the other follows."""
    gate = await open_gate(tmp_path, settings=gateway_settings(tmp_path))
    here, there = Gateway(gate), Gateway(gate)
    try:
        cookie, session = await here.sessions.start(provider="corp", user_id="u", name="U", claims=[])
        assert await here.sessions.by_cookie(cookie) is not None  # now cached here
        ended = await there.sessions.by_sid(session.sid)
        assert ended is not None
        await there.sessions.end(ended)
        assert await there.sessions.by_cookie(cookie) is None  # at once where it was ended
        await asyncio.sleep(sessions.CACHE_SECONDS + 0.1)
        assert await here.sessions.by_cookie(cookie) is None  # and here within CACHE_SECONDS
    finally:
        await here.close()
        await there.close()
        await gate.close()


async def test_a_cached_session_still_expires_and_a_wrong_secret_still_fails(tmp_path: Path) -> None:
    clock = FrozenClock()
    gate = await open_gate(tmp_path, clock, gateway_settings(tmp_path))
    gw = Gateway(gate)
    try:
        cookie, _ = await gw.sessions.start(provider="corp", user_id="u", name="U", claims=[],
                                            lifetime=60)
        assert await gw.sessions.by_cookie(cookie) is not None
        sid, secret = cookie.split(".")
        # The second look skips the keyed hash (the secret was checked once): a wrong
        # secret must still fail, and the right one still pass after it.
        assert await gw.sessions.by_cookie(f"{sid}.{secret[:-2]}xx") is None
        assert await gw.sessions.by_cookie(cookie) is not None
        clock.advance(61)
        assert await gw.sessions.by_cookie(cookie) is None
    finally:
        await gw.close()
        await gate.close()


async def test_a_cached_session_token_is_still_checked_for_expiry(tmp_path: Path) -> None:
    clock = FrozenClock()
    gate = await open_gate(tmp_path, clock, gateway_settings(tmp_path))
    gw = Gateway(gate)
    try:
        now = clock.now()
        token = gw.session_tokens.mint(sid="s1", user_key="corp|u", user_id="u", provider="corp",
                                       name="U", now=now, lifetime=100)
        assert gw.session_tokens.verify(token, now=now, leeway=0).sid == "s1"
        assert gw.session_tokens.verify(token, now=now + 99, leeway=0).user_id == "u"
        with pytest.raises(InvalidToken, match="expired"):
            gw.session_tokens.verify(token, now=now + 100, leeway=0)
        # /.auth/refresh accepts a recently expired token, from the cache too.
        assert gw.session_tokens.verify(token, now=now + 150, leeway=0, expired_grace=60).sid == "s1"
        with pytest.raises(InvalidToken):
            gw.session_tokens.verify(token[:-4] + "AAAA", now=now, leeway=0)
    finally:
        await gw.close()
        await gate.close()


async def test_provider_tokens_written_here_are_read_back_at_once(tmp_path: Path) -> None:
    gate = await open_gate(tmp_path, settings=gateway_settings(tmp_path))
    gw = Gateway(gate)
    try:
        store = gw.provider_tokens
        assert await store.get("corp|u", "corp") is None  # "none stored" is cached too...
        await store.save("corp|u", ProviderTokens(provider="corp", user_id="u", access_token="one"))
        first = await store.get("corp|u", "corp")  # ...and forgotten when this process saves
        assert first is not None and first.access_token == "one"
        await store.save("corp|u", ProviderTokens(provider="corp", user_id="u", access_token="two"))
        second = await store.get("corp|u", "corp")
        assert second is not None and second.access_token == "two"
        await store.delete("corp|u", "corp")
        assert await store.get("corp|u", "corp") is None
    finally:
        await gw.close()
        await gate.close()
