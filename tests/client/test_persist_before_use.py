"""Rotated tokens are saved before they are used, so a crash never loses the only valid refresh token.

authgate rotates refresh tokens: the moment it answers a refresh, the old
refresh token is spent, and presenting it again after the 30 s grace window
revokes the whole family. A client that used its new tokens before saving
them, and died meanwhile, would come back with a spent token -- logged out.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from authgate.client import (
    EncryptedFileStorage,
    LoginRequired,
    MemoryStorage,
    OAuth2Auth,
    StorageError,
    TokenSet,
)
from authgate.clock import FrozenClock

from .conftest import TOKEN_ENDPOINT, USERINFO, Server

LIFETIME = 3600
GRACE = 30


class Crash(Exception):
    """The process dies here."""


class FailingStorage(MemoryStorage):
    """Memory storage whose next save fails (a full disk, a locked keyring)."""

    fail_next = False

    def save(self, tokens: TokenSet) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full")
        super().save(tokens)


async def test_failed_save_means_the_new_tokens_are_never_used(server: Server) -> None:
    """Save fails -> the request fails before using them; a retry within grace recovers."""
    clock = FrozenClock(server.clock.now())
    storage = FailingStorage()
    auth = OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret, storage=storage,
                      tokens=TokenSet.from_response(await server.login(), now=clock.now()),
                      clock=clock.now)
    before = storage.load()
    server.clock.advance(LIFETIME)
    clock.advance(LIFETIME)
    storage.fail_next = True
    async with server.http() as http:
        with pytest.raises(StorageError):
            await http.get(USERINFO, auth=auth)
        # The server rotated, but nothing went out with the unsaved tokens.
        assert [(c.path, c.grant_type) for c in server.wire.calls] == [
            ("/.auth/oauth2/token", "refresh_token")]
        assert storage.load() == before and auth.tokens == before

        server.clock.advance(GRACE / 2)  # within grace the spent token yields the same successor
        clock.advance(GRACE / 2)
        assert (await http.get(USERINFO, auth=auth)).status_code == 200
        saved = storage.load()
        assert saved is not None and before is not None
        assert saved.refresh_token != before.refresh_token and saved == auth.tokens

        # Long after the grace window, what was saved is the family's live token.
        server.clock.advance(LIFETIME)
        clock.advance(LIFETIME)
        assert (await http.get(USERINFO, auth=auth)).status_code == 200
    assert len(server.wire.refreshes()) == 3


async def test_crash_while_using_fresh_tokens_leaves_a_working_refresh_token(
        server: Server, tmp_path: Path) -> None:
    """Refresh, save, then die mid-request: after restart (past grace) the stored tokens work."""
    path = tmp_path / "tokens.json"
    clock = FrozenClock(server.clock.now())
    first = OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret,
                       storage=EncryptedFileStorage(path, passphrase="pw", scrypt_n=2**12),
                       tokens=TokenSet.from_response(await server.login(), now=clock.now()),
                       clock=clock.now)
    server.clock.advance(LIFETIME)
    clock.advance(LIFETIME)

    def die_on_the_api(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/.auth/oauth2/userinfo":
            raise Crash
        return None

    server.wire.fault = die_on_the_api
    async with server.http() as http:
        with pytest.raises(Crash):
            await http.get(USERINFO, auth=first)
    assert len(server.wire.refreshes()) == 1
    del first  # the process is gone

    server.wire.fault = None
    server.clock.advance(10 * GRACE)  # well past grace: a spent token would now revoke the family
    clock.advance(10 * GRACE)
    restarted = OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret,
                           storage=EncryptedFileStorage(path, passphrase="pw"), clock=clock.now)
    async with server.http() as http:
        assert (await http.get(USERINFO, auth=restarted)).status_code == 200
        assert len(server.wire.refreshes()) == 1  # the saved access token was still good
        server.clock.advance(LIFETIME)
        clock.advance(LIFETIME)
        assert (await http.get(USERINFO, auth=restarted)).status_code == 200
    assert [c.status for c in server.wire.refreshes()] == [200, 200]


async def test_a_spent_refresh_token_is_what_using_before_saving_would_leave(server: Server) -> None:
    """The control: presenting the pre-rotation token after grace logs the user out."""
    clock = FrozenClock(server.clock.now())
    tokens = TokenSet.from_response(await server.login(), now=clock.now())
    auth = OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret, tokens=tokens,
                      clock=clock.now)
    async with server.http() as http:
        await auth.arefresh(http)  # rotates; `tokens` now holds a spent refresh token
        server.clock.advance(10 * GRACE)
        stale = OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret, tokens=tokens,
                           clock=clock.now)
        with pytest.raises(LoginRequired):
            await stale.arefresh(http)
        with pytest.raises(LoginRequired):  # and reuse revoked the whole family
            await auth.arefresh(http)


async def test_processes_sharing_a_token_file_never_spend_a_rotated_token(
        server: Server, tmp_path: Path) -> None:
    """Two processes on one file: the second adopts what the first saved instead of reusing."""
    path = tmp_path / "shared-tokens"
    clock = FrozenClock(server.clock.now())
    key = EncryptedFileStorage.generate_key_file(tmp_path / "key")
    tokens = TokenSet.from_response(await server.login(), now=clock.now())
    one, two = (OAuth2Auth(TOKEN_ENDPOINT, server.client_id, server.secret, clock=clock.now,
                           storage=EncryptedFileStorage(path, key_file=key), tokens=tokens)
                for _ in range(2))
    async with server.http() as http:
        server.clock.advance(LIFETIME)
        clock.advance(LIFETIME)
        assert (await http.get(USERINFO, auth=one)).status_code == 200  # rotates, saves
        server.clock.advance(10 * GRACE)  # past grace: `two`'s refresh token is spent
        clock.advance(10 * GRACE)
        assert (await http.get(USERINFO, auth=two)).status_code == 200
    assert len(server.wire.refreshes()) == 1
    assert two.tokens == one.tokens
