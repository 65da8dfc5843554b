"""Our refresh tokens: opaque, rotated on every use, reuse-detected, revocable.

A *family* is every refresh token descending from one grant (one login of one
user at one client); its id is the grant id carried by the access tokens as
``gid``. The rules (DESIGN.md §1, RFC 9700 §4.14.2):

* Every use rotates: the presented token is consumed and a successor issued.
* The successor is derived from the presented token with a keyed hash
  (:meth:`TokenHasher.derive`), so concurrent rotations of one token all
  arrive at the *same* successor and the store's idempotent ``insert`` makes
  exactly one record for it -- never two live successors -- and a crash
  between consuming and inserting is healed by the client's retry.
* Within the grace window a rotated token yields that same successor again
  (lost response, parallel tabs); after it, presenting a rotated token is
  reuse: the whole family and every access token issued from it are revoked.
* A family dies ``absolute`` seconds after the user authenticated, and a
  token dies when unused for ``inactivity`` seconds.

Only the HMAC of a token is stored; the token itself exists only in responses.

A token carries its client binding: ``agr_`` + 256-bit body + a tag, the keyed
hash of the client id and the body (:meth:`RefreshTokens.bind`). A token
presented by another client fails the tag check before the store is touched,
so the common refresh -- no ``scope`` parameter -- consumes at once instead of
reading first. Tokens issued before tags existed (no tag) and requests that
narrow the scope take the longer road: read, check client and scope, consume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .audit import AuditLog
from .clients import Client
from .config import TokenSettings
from .denylist import Denylist
from .errors import InvalidGrant, InvalidScope
from .hashing import REFRESH_PREFIX, TokenHasher, equal, new_token
from .store.sealed import Entry, SealedStore, Write

KIND = "refresh_token"
MAX_TOKEN_CHARS = 512
BODY_CHARS = 43
"""A token's body: 32 bytes, base64url."""
TAG_CHARS = 22
"""Its client tag: 128 bits of an HMAC-SHA256, base64url (the last character carries 4 more)."""


@dataclass(frozen=True)
class Grant:
    """What a refresh token stands for."""

    family: str
    user_id: str
    client_id: str
    scope: str
    auth_time: float
    absolute_expires_at: float
    sid: str | None = None
    """The issuer's SSO session the grant was made in; its logout revokes the grant."""

    @classmethod
    def from_data(cls, family: str, d: dict[str, Any]) -> Grant:
        return cls(family, d["user_id"], d["client_id"], d["scope"], d["auth_time"],
                   d["absolute_expires_at"], d.get("sid"))


def parse_scope(scope: str) -> list[str]:
    return [s for s in scope.split(" ") if s]


class RefreshTokens:
    def __init__(self, store: SealedStore, hasher: TokenHasher, denylist: Denylist,
                 audit: AuditLog, settings: TokenSettings) -> None:
        self.store = store
        self.hasher = hasher
        self.denylist = denylist
        self.audit = audit
        self.settings = settings

    def _lifetimes(self, client: Client) -> tuple[float, float]:
        s = self.settings
        return (client.refresh_absolute_lifetime or s.refresh_absolute_lifetime,
                client.refresh_inactivity_lifetime or s.refresh_inactivity_lifetime)

    def _at_lifetime(self, client: Client | None) -> float:
        s = self.settings
        own = client.access_token_lifetime if client is not None else None
        return max(own or 0, s.access_token_lifetime) + s.leeway

    async def issue(self, *, family: str, user_id: str, client: Client, scope: str,
                    auth_time: float, sid: str | None = None) -> str:
        """The first token of a new family."""
        absolute, idle = self._lifetimes(client)
        now = self.store.clock.now()
        grant = Grant(family, user_id, client.client_id, scope, auth_time, auth_time + absolute, sid)
        token = self.bind(new_token(REFRESH_PREFIX), client.client_id)
        await self._store(token, grant, now, idle, parent=None)
        await self.audit.record("refresh_token.issued", user=user_id, client=client.client_id,
                                family=family, reason="authorization_code grant")
        return token

    def _write(self, token: str, grant: Grant, now: float, idle: float, parent: str | None) -> Write:
        data = {"user_id": grant.user_id, "client_id": grant.client_id, "scope": grant.scope,
                "auth_time": grant.auth_time, "absolute_expires_at": grant.absolute_expires_at,
                "issued_at": now, "parent": parent, "sid": grant.sid}
        return Write(KIND, self.hasher.hash(token), data,
                     expires_at=min(now + idle, grant.absolute_expires_at),
                     grant_id=grant.family, subject=grant.user_id)

    async def _store(self, token: str, grant: Grant, now: float, idle: float,
                     parent: str | None) -> bool:
        return await self.store.write(self._write(token, grant, now, idle, parent))

    async def _store_successor(self, successor: str, grant: Grant, now: float, idle: float,
                               parent: str) -> None:
        """Store a rotation's successor -- unless the family was revoked meanwhile (the grace
        path's late successor; a first use rotates through :meth:`SealedStore.rotate`).

        Consuming the parent and storing the successor are two store operations here, and a
        revocation landing between them (reuse detected by a concurrent request or another
        instance, sign-out everywhere) deletes the family but not a successor stored after
        it. Revocation deletes the consumed parent too, so a parent gone once the successor
        is stored means exactly that: the successor is taken back and the rotation fails.
        """
        await self._store(successor, grant, now, idle, parent=parent)
        if not await self.store.exists(KIND, parent, now=now):
            await self.store.delete(KIND, self.hasher.hash(successor))
            raise InvalidGrant("the grant was revoked while the refresh token was being rotated")

    def bind(self, unbound: str, client_id: str) -> str:
        """``unbound`` (prefix + body) with the tag that binds it to ``client_id``."""
        return unbound + self._tag(unbound[len(REFRESH_PREFIX):], client_id)

    def _tag(self, body: str, client_id: str) -> str:
        # Client ids never contain NUL (clients.py), so "client\0<id>" is unambiguous.
        return self.hasher.derive(f"client\x00{client_id}", body, "")[:TAG_CHARS]

    def _bound_to(self, token: str, client_id: str) -> bool | None:
        """Whether a tagged token was issued to ``client_id``; None for an untagged one."""
        if len(token) != len(REFRESH_PREFIX) + BODY_CHARS + TAG_CHARS:
            return None
        cut = len(REFRESH_PREFIX) + BODY_CHARS
        return equal(token[cut:], self._tag(token[len(REFRESH_PREFIX):cut], client_id))

    async def lookup(self, token: str) -> Entry | None:
        if not token.startswith(REFRESH_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            return None
        return await self.store.get(KIND, self.hasher.hash(token))

    async def rotate(self, token: str, client: Client, scope: str | None) -> tuple[str, Grant, str]:
        """Use a refresh token: returns (successor, grant, granted scope).

        Checks that cannot burn the token (client, scope) run before it is consumed,
        so a bad request from the rightful client does not turn into reuse later.
        """
        if not token.startswith(REFRESH_PREFIX) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidGrant("refresh token is invalid, expired or revoked")
        bound = self._bound_to(token, client.client_id)
        if bound is False:
            # Another client's token: refuse, and touch nothing of the victim's.
            raise InvalidGrant("refresh token was issued to another client")
        new_scope = None
        if bound is None or scope is not None:
            new_scope = self._checked_scope(await self.lookup(token), client, scope)
        _absolute, idle = self._lifetimes(client)
        now = self.store.clock.now()
        derived = self.hasher.derive("rotate", token, REFRESH_PREFIX)
        successor = self.bind(derived, client.client_id)
        event: list[Write] = []

        def follow(parent: Entry) -> list[Write]:
            """What a first use writes: the successor and the audit event, atomically with
            the consume where the backend can (:meth:`SealedStore.rotate`)."""
            if parent.grant_id is None or not equal(parent.data["client_id"], client.client_id):
                return []  # refused below
            grant = Grant.from_data(parent.grant_id, parent.data)
            event.append(self.audit.write("refresh_token.rotated", user=grant.user_id,
                                          client=grant.client_id, family=grant.family))
            return [self._write(successor, grant, now, idle, parent=parent.id), event[0]]

        consumed, stands = await self.store.rotate(KIND, self.hasher.hash(token), follow)
        if consumed is None or consumed.grant_id is None:
            raise InvalidGrant("refresh token is invalid, expired or revoked")
        grant = Grant.from_data(consumed.grant_id, consumed.data)
        if not equal(grant.client_id, client.client_id):  # a tag made with our key says otherwise
            raise InvalidGrant("refresh token was issued to another client")
        new_scope = grant.scope if new_scope is None else new_scope
        if consumed.consumed_at is None:
            if not stands:
                raise InvalidGrant("the grant was revoked while the refresh token was being rotated")
            self.audit.log(event[0])
            return successor, grant, new_scope
        grace = self.settings.refresh_grace
        if grace > 0 and now - consumed.consumed_at <= grace:
            # An untagged token may have been rotated, just before an upgrade, into an untagged
            # successor: that one is the successor, lest the family get two live ones.
            for candidate in (successor, derived) if bound is None else (successor,):
                nxt = await self.store.get(KIND, self.hasher.hash(candidate))
                if nxt is not None:
                    successor = candidate
                    break
            if nxt is None:
                # The first rotation was cut short before its successor was stored.
                await self._store_successor(successor, grant, now, idle, parent=consumed.id)
                return successor, grant, new_scope
            if nxt.consumed_at is None:
                await self.audit.record("refresh_token.grace", user=grant.user_id,
                                        client=grant.client_id, family=grant.family,
                                        reason="rotated token presented again within grace window")
                return successor, grant, new_scope
        await self.revoke_family(grant.family, user=grant.user_id, client=client,
                                 event="refresh_token.reuse",
                                 reason="a rotated refresh token was presented again")
        raise InvalidGrant("refresh token was already used; the grant has been revoked")

    @staticmethod
    def _checked_scope(entry: Entry | None, client: Client, scope: str | None) -> str:
        """The scope a refresh grants, from the token's record read before consuming it."""
        if entry is None or entry.grant_id is None:
            raise InvalidGrant("refresh token is invalid, expired or revoked")
        if not equal(entry.data["client_id"], client.client_id):
            # Another client's token: refuse, and touch nothing of the victim's.
            raise InvalidGrant("refresh token was issued to another client")
        granted = parse_scope(entry.data["scope"])
        if scope is None:
            return str(entry.data["scope"])
        wanted = parse_scope(scope)
        if not wanted or not set(wanted) <= set(granted):
            raise InvalidScope("a refresh may keep or narrow the scope, never widen it")
        return " ".join(s for s in granted if s in wanted)

    async def revoke_family(self, family: str, *, user: str | None, client: Client | None,
                            event: str = "family.revoked", reason: str = "") -> int:
        """Delete every token of the family and deny its outstanding access tokens."""
        n = await self.store.revoke_grant(family)
        # Deny until the longest-lived access token this family can hold has expired.
        await self.denylist.deny_grant(family, self.store.clock.now() + self._at_lifetime(client))
        await self.audit.record(event, user=user, client=client.client_id if client else None,
                                family=family, reason=reason)
        return n

    async def revoke_session(self, user_id: str, sid: str, *, reason: str) -> int:
        """Revoke the grants made in one SSO session (RP-initiated logout)."""
        families = [f for f, e in (await self.families_of(user_id)).items() if e.data.get("sid") == sid]
        for family in families:
            await self.revoke_family(family, user=user_id, client=None, reason=reason)
        return len(families)

    async def families_of(self, user_id: str) -> dict[str, Entry]:
        """The live (unconsumed) token of each family of a user, by family id."""
        out: dict[str, Entry] = {}
        for e in await self.store.by_subject(KIND, user_id, limit=10_000):
            if e.grant_id and e.consumed_at is None:
                out[e.grant_id] = e
        return out
