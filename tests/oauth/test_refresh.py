"""Refresh tokens at the token endpoint: rotation, grace, reuse, lifetimes (DESIGN.md §1, SECURITY 17-26)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authgate.accounts import User
from authgate.clock import FrozenClock
from authgate.hashing import REFRESH_PREFIX, new_token
from authgate.refresh_tokens import BODY_CHARS, KIND, TAG_CHARS, Grant
from authgate.service import AuthGate

from .conftest import CONF_ID, basic, introspect, login_tokens, refresh


async def test_every_use_rotates(http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str],
                                 alice: User, clock: FrozenClock) -> None:
    """A refresh returns a new refresh token and a new access token; the old one is spent."""
    first = await login_tokens(http, gate, conf, alice)
    r = await refresh(http, conf, first["refresh_token"])
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["refresh_token"].startswith(REFRESH_PREFIX)
    assert second["access_token"] != first["access_token"]
    assert (await introspect(http, conf, first["refresh_token"])) == {"active": False}
    assert (await introspect(http, conf, second["refresh_token"]))["active"] is True


async def test_grace_window_returns_same_successor(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User, clock: FrozenClock
) -> None:
    """A lost response retried within the grace window gets the same successor (SECURITY 26)."""
    first = await login_tokens(http, gate, conf, alice)
    a = (await refresh(http, conf, first["refresh_token"])).json()
    clock.advance(29)
    b = (await refresh(http, conf, first["refresh_token"])).json()
    assert a["refresh_token"] == b["refresh_token"]
    assert (await refresh(http, conf, b["refresh_token"])).status_code == 200


async def test_reuse_after_grace_revokes_family_and_access_tokens(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User, clock: FrozenClock
) -> None:
    """Replay after the grace window revokes the family; the newest token and access tokens die (SECURITY 17)."""
    first = await login_tokens(http, gate, conf, alice)
    second = (await refresh(http, conf, first["refresh_token"])).json()
    clock.advance(31)
    r = await refresh(http, conf, first["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert (await refresh(http, conf, second["refresh_token"])).json()["error"] == "invalid_grant"
    assert await introspect(http, conf, second["access_token"]) == {"active": False}
    assert await introspect(http, conf, first["access_token"]) == {"active": False}
    events = [e.event for e in await gate.audit.for_subject(alice.id)]
    assert "refresh_token.reuse" in events


async def test_grace_zero_disables_grace(
    tmp_path: object, http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """With refresh_grace = 0 any second presentation is reuse."""
    gate.settings.tokens.refresh_grace = 0
    first = await login_tokens(http, gate, conf, alice)
    assert (await refresh(http, conf, first["refresh_token"])).status_code == 200
    assert (await refresh(http, conf, first["refresh_token"])).json()["error"] == "invalid_grant"


async def test_inactivity_lifetime(http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str],
                                   alice: User, clock: FrozenClock) -> None:
    """Unused for 14 days, a refresh token is dead; used within, it slides (SECURITY 22)."""
    tokens = await login_tokens(http, gate, conf, alice)
    rt = tokens["refresh_token"]
    for _ in range(3):
        clock.advance(13 * 86400)
        r = await refresh(http, conf, rt)
        assert r.status_code == 200, r.text
        rt = r.json()["refresh_token"]
    clock.advance(14 * 86400 + 1)
    assert (await refresh(http, conf, rt)).json()["error"] == "invalid_grant"


async def test_absolute_lifetime(http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str],
                                 alice: User, clock: FrozenClock) -> None:
    """However often used, a family dies 90 days after authentication (SECURITY 22)."""
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    for _ in range(8):
        clock.advance(10 * 86400)
        r = await refresh(http, conf, rt)
        assert r.status_code == 200
        rt = r.json()["refresh_token"]
    clock.advance(10 * 86400)
    assert (await refresh(http, conf, rt)).json()["error"] == "invalid_grant"


async def test_per_client_lifetime_override(http: httpx.AsyncClient, gate: AuthGate,
                                            alice: User, clock: FrozenClock) -> None:
    """A client's own inactivity lifetime wins over the default."""
    _c, secret = await gate.clients.add("short", redirect_uris=["https://app.example/cb"],
                                        refresh_inactivity_lifetime=3600)
    assert secret
    rt = (await login_tokens(http, gate, ("short", secret), alice))["refresh_token"]
    clock.advance(3601)
    assert (await refresh(http, ("short", secret), rt)).json()["error"] == "invalid_grant"


async def test_scope_may_narrow_never_widen(http: httpx.AsyncClient, gate: AuthGate,
                                            conf: tuple[str, str], alice: User) -> None:
    """Narrowing works; widening is invalid_scope and does not burn the token (SECURITY 21)."""
    rt = (await login_tokens(http, gate, conf, alice, scope="openid offline_access api"))["refresh_token"]
    wide = await refresh(http, conf, rt, scope="openid offline_access api email")
    assert wide.status_code == 400 and wide.json()["error"] == "invalid_scope"
    narrow = await refresh(http, conf, rt, scope="openid api")
    assert narrow.status_code == 200 and narrow.json()["scope"] == "openid api"


async def test_another_clients_token_revokes_nothing(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """A refresh token presented by another client is invalid_grant and the victim keeps working (SECURITY 19)."""
    _c, secret = await gate.clients.add("thief", redirect_uris=["https://evil.example/cb"])
    assert secret
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    for extra in ({}, {"scope": "openid"}):  # tag checked first / record read first
        r = await refresh(http, ("thief", secret), rt, **extra)
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        entry = await gate.refresh.lookup(rt)
        assert entry is not None and entry.consumed_at is None  # not even spent
    assert (await refresh(http, conf, rt)).status_code == 200


@pytest.mark.parametrize("kind", ["access_token", "id_token", "garbage"])
async def test_other_tokens_as_refresh_token(http: httpx.AsyncClient, gate: AuthGate,
                                             conf: tuple[str, str], alice: User, kind: str) -> None:
    """Access or ID tokens sent as refresh tokens are invalid_grant (SECURITY 23)."""
    tokens = await login_tokens(http, gate, conf, alice)
    value = tokens.get(kind, "agr_" + "x" * 43)
    r = await refresh(http, conf, value)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_refresh_needs_client_auth(http: httpx.AsyncClient, gate: AuthGate,
                                         conf: tuple[str, str], alice: User) -> None:
    """No or wrong secret is 401 invalid_client (SECURITY 20)."""
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    r = await http.post("/.auth/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": rt})
    assert r.status_code == 401
    r = await refresh(http, (conf[0], "nope"), rt)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert (await refresh(http, conf, rt)).status_code == 200  # failed attempts burnt nothing


async def test_fifty_parallel_refreshes_one_successor(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """50 simultaneous refreshes of one token: all get the same successor, exactly one exists (SECURITY 24)."""
    tokens = await login_tokens(http, gate, conf, alice)
    rs = await asyncio.gather(*(refresh(http, conf, tokens["refresh_token"]) for _ in range(50)))
    assert all(r.status_code == 200 for r in rs), {r.status_code for r in rs}
    assert len({r.json()["refresh_token"] for r in rs}) == 1
    family = await gate.store.by_subject(KIND, alice.id)
    assert len(family) == 2  # the original (consumed) and exactly one successor
    assert sum(1 for e in family if e.consumed_at is None) == 1


async def test_crash_between_consume_and_successor_heals_on_retry(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """If rotation dies after consuming (kill -9), a retry within grace still gets a working token (SECURITY 25)."""
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    consumed = await gate.store.consume(KIND, gate.hasher.hash(rt))  # the crashed first attempt
    assert consumed is not None and consumed.consumed_at is None
    r = await refresh(http, conf, rt)
    assert r.status_code == 200
    assert (await refresh(http, conf, r.json()["refresh_token"])).status_code == 200


async def test_disabled_user_cannot_refresh(http: httpx.AsyncClient, gate: AuthGate,
                                            conf: tuple[str, str], alice: User) -> None:
    """Signing a user out everywhere kills their refresh and access tokens."""
    tokens = await login_tokens(http, gate, conf, alice)
    await gate.sign_out_everywhere(alice.id)
    assert (await refresh(http, conf, tokens["refresh_token"])).json()["error"] == "invalid_grant"
    assert await introspect(http, conf, tokens["access_token"]) == {"active": False}


async def test_refresh_token_is_stored_only_as_hash(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """A dump of the store contains no refresh token, code or client secret (SECURITY 56)."""
    tokens = await login_tokens(http, gate, conf, alice)
    backend = gate.store.backend
    dump = b""
    for kind in ("refresh_token", "code", "client", "sso", "user", "audit"):
        for rec in await backend.scan(kind, limit=1000):
            dump += rec.id.encode() + rec.payload + (rec.subject or "").encode()
    for secret in (tokens["refresh_token"], conf[1]):
        assert secret.encode() not in dump
        assert secret[4:20].encode() not in dump
    assert b"alice@example.com" not in dump  # payloads are sealed


async def test_public_client_refresh_rotates(http: httpx.AsyncClient, gate: AuthGate, spa: str,
                                             alice: User) -> None:
    """A public client gets rotating refresh tokens identified by client_id alone."""
    from .conftest import REDIRECT, VERIFIER, issue_code

    code, _ = await issue_code(gate, spa, alice)
    r = await http.post("/.auth/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER, "client_id": spa})
    rt = r.json()["refresh_token"]
    r2 = await http.post("/.auth/oauth2/token", data={"grant_type": "refresh_token",
                                                       "refresh_token": rt, "client_id": spa})
    assert r2.status_code == 200 and r2.json()["refresh_token"] != rt
    r3 = await http.post("/.auth/oauth2/token", headers=basic(spa, "secret"),
                         data={"grant_type": "refresh_token", "refresh_token": rt})
    assert r3.status_code == 401


async def test_revocation_during_rotation_leaves_no_live_successor(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A family revoked between consuming a token and storing its successor stays revoked
    (the fallback rotation, for backends without ``consume_then``)."""
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    family = (await gate.refresh.lookup(rt)).grant_id  # type: ignore[union-attr]
    store_add = gate.store.add

    async def revoked_first(*args: object, **kwargs: object) -> bool:
        await gate.store.revoke_grant(str(family))  # reuse detected elsewhere, meanwhile
        return await store_add(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gate.store, "_consume_then", None)
    monkeypatch.setattr(gate.store, "add", revoked_first)
    r = await refresh(http, conf, rt)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    monkeypatch.undo()
    assert [e for e in await gate.store.by_subject(KIND, alice.id) if e.consumed_at is None] == []
    events = [e.event for e in await gate.audit.for_subject(alice.id)]
    assert "refresh_token.rotated" not in events  # the rotation did not stand


@pytest.mark.parametrize("path", ["consume_then", "fallback"])
async def test_revocation_racing_rotation_leaves_no_live_successor(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User,
    monkeypatch: pytest.MonkeyPatch, path: str,
) -> None:
    """A refresh and a revocation of its family started together, in either order: the
    family ends with no live member, whichever got there first."""
    if path == "fallback":
        monkeypatch.setattr(gate.store, "_consume_then", None)
    for first in ("refresh", "revoke"):
        rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
        family = (await gate.refresh.lookup(rt)).grant_id  # type: ignore[union-attr]
        assert family is not None
        jobs = [refresh(http, conf, rt), gate.store.revoke_grant(family)]
        await asyncio.gather(*(jobs if first == "refresh" else reversed(jobs)))
        left = [e for e in await gate.store.by_subject(KIND, alice.id) if e.grant_id == family]
        assert left == [], (first, left)


async def test_user_is_read_at_most_every_few_seconds(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User, clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refreshes reuse a user read within CACHE_SECONDS; a local change is seen at once."""
    from authgate.accounts import CACHE_SECONDS

    reads: list[str] = []
    get = gate.accounts.get

    async def counted(user_id: str) -> User | None:
        reads.append(user_id)
        return await get(user_id)

    monkeypatch.setattr(gate.accounts, "get", counted)
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    reads.clear()
    for _ in range(3):
        rt = (await refresh(http, conf, rt)).json()["refresh_token"]
    assert reads == [alice.id]
    clock.advance(CACHE_SECONDS)
    rt = (await refresh(http, conf, rt)).json()["refresh_token"]
    assert reads == [alice.id] * 2
    alice.disabled = True
    await gate.accounts.save(alice)  # without signing out: only the user check stops it
    r = await refresh(http, conf, rt)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def legacy_token(gate: AuthGate, user: User) -> str:
    """A refresh token as issued before tokens carried a client tag (prefix + body only)."""
    client = await gate.clients.get(CONF_ID)
    assert client is not None
    token = new_token(REFRESH_PREFIX)
    now = gate.clock.now()
    grant = Grant("fam-legacy", user.id, CONF_ID, "openid offline_access", now, now + 86400)
    assert await gate.refresh._store(token, grant, now, 3600, parent=None)
    return token


async def test_tokens_issued_before_client_tags_keep_working(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """An untagged token still refreshes (nobody is logged out by an upgrade); its successor is tagged."""
    old = await legacy_token(gate, alice)
    r = await refresh(http, conf, old)
    assert r.status_code == 200, r.text
    successor = r.json()["refresh_token"]
    assert len(successor) == len(REFRESH_PREFIX) + BODY_CHARS + TAG_CHARS
    assert (await refresh(http, conf, old)).json()["refresh_token"] == successor  # grace as ever
    assert (await refresh(http, conf, successor)).status_code == 200


async def test_untagged_token_of_another_client_is_not_spent(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """Without a tag the record is read first: another client gets invalid_grant, nothing is spent."""
    _c, secret = await gate.clients.add("thief", redirect_uris=["https://evil.example/cb"])
    assert secret
    old = await legacy_token(gate, alice)
    r = await refresh(http, ("thief", secret), old)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    entry = await gate.refresh.lookup(old)
    assert entry is not None and entry.consumed_at is None
    assert (await refresh(http, conf, old)).status_code == 200


async def test_a_forged_tag_is_refused_before_the_store(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """A token whose tag was altered is invalid_grant and the real token stays unspent."""
    rt = (await login_tokens(http, gate, conf, alice))["refresh_token"]
    forged = rt[:-TAG_CHARS] + ("A" if rt[-TAG_CHARS] != "A" else "B") + rt[-TAG_CHARS + 1:]
    r = await refresh(http, conf, forged)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert (await refresh(http, conf, rt)).status_code == 200


async def test_untagged_successor_from_before_an_upgrade_is_the_grace_answer(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """Rotated by the previous version just before the upgrade, then retried: one live successor."""
    old = await legacy_token(gate, alice)
    consumed = await gate.store.consume(KIND, gate.hasher.hash(old))  # the old version's rotation...
    assert consumed is not None and consumed.grant_id is not None
    untagged = gate.hasher.derive("rotate", old, REFRESH_PREFIX)  # ...and its untagged successor
    grant = Grant.from_data(consumed.grant_id, consumed.data)
    assert await gate.refresh._store(untagged, grant, gate.clock.now(), 3600, parent=consumed.id)
    r = await refresh(http, conf, old)  # the lost response, retried within grace
    assert r.status_code == 200 and r.json()["refresh_token"] == untagged
    live = [e for e in await gate.store.by_subject(KIND, alice.id) if e.consumed_at is None]
    assert [e.id for e in live] == [gate.hasher.hash(untagged)]
