"""Pending logins: ``state``, ``nonce`` and the PKCE verifier, bound to one browser.

RFC 6749 §10.12 and RFC 9700 §4.7 require the ``state`` of an authorization
response to be bound to the user agent that started the request. Each login
gets a store record (kind ``gw_login``, ten minutes, id = HMAC of the 256-bit
``state``) holding the nonce (OIDC Core §3.1.2.1), the PKCE verifier (RFC 7636
§4.1), the provider and where to go afterwards, plus the HMAC of the
browser's *binding* secret. The binding lives in an HttpOnly cookie
(``authgate_login``) shared by the logins of that browser, so tabs may log in
in parallel. At the callback the record must exist, name the same provider,
match the cookie of *this* browser, and be consumed for the first time:
missing, foreign, replayed or expired states are refused before any code is
exchanged (SECURITY.md 39).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...hashing import TokenHasher, equal, new_id
from ...store.sealed import SealedStore
from .base import LoginRefused

KIND = "gw_login"
COOKIE = "authgate_login"
LIFETIME = 600
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass
class PendingLogin:
    provider: str
    nonce: str
    code_verifier: str
    redirect_to: str
    created_at: float


def new_binding() -> str:
    return new_id(32)


def valid_binding(value: str | None) -> bool:
    return value is not None and _TOKEN.match(value) is not None


class LoginStates:
    def __init__(self, store: SealedStore, hasher: TokenHasher) -> None:
        self.store = store
        self.hasher = hasher

    async def begin(self, *, binding: str, provider: str,
                    redirect_to: str) -> tuple[str, PendingLogin]:
        """A new pending login; returns its ``state`` (shown once, stored as an HMAC)."""
        now = self.store.clock.now()
        state = new_id(32)
        pending = PendingLogin(provider, new_id(32), new_id(48), redirect_to, now)
        data: dict[str, Any] = {**pending.__dict__, "binding": self.hasher.hash(binding)}
        await self.store.put(KIND, self.hasher.hash(state), data, expires_at=now + LIFETIME)
        return state, pending

    async def finish(self, state: str | None, binding: str | None, *,
                     provider: str) -> PendingLogin:
        """The pending login of this callback, consumed; :class:`LoginRefused` says why not."""
        if not state:
            raise LoginRefused("the callback has no state")
        if not _TOKEN.match(state):
            raise LoginRefused("the state is not one authgate issued")
        key = self.hasher.hash(state)
        entry = await self.store.get(KIND, key)
        if entry is None:
            raise LoginRefused("the state is unknown, expired or already used")
        if not valid_binding(binding):
            raise LoginRefused("this browser has no login cookie: the login was started "
                               "elsewhere (or cookies are blocked)")
        assert binding is not None
        if not equal(self.hasher.hash(binding), str(entry.data.get("binding", ""))):
            raise LoginRefused("the state belongs to a login started in another browser")
        if entry.data.get("provider") != provider:
            raise LoginRefused("the state belongs to a login at another provider")
        used = await self.store.consume(KIND, key)
        if used is None or used.consumed_at is not None:
            raise LoginRefused("the state was already used")
        d = entry.data
        return PendingLogin(d["provider"], d["nonce"], d["code_verifier"], d["redirect_to"],
                            d["created_at"])
