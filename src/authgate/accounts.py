"""Built-in accounts: the users of the ``local`` provider.

A user record is keyed by its stable id (the ``sub`` claim) with the
lower-cased username as subject, so login looks the name up through the
subject index. Failed logins are counted per account; past
``login.max_failures`` the account is locked for a delay that doubles with
every further failure (capped at ``login.lockout_max``), which bounds online
guessing without letting an attacker lock a user out for long.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .cache import Cache
from .config import LoginSettings
from .errors import ConfigError
from .hashing import new_id
from .passwords import hash_password, verify_password
from .store.sealed import SealedStore

KIND = "user"
THROTTLE = "throttle"
CACHE_SECONDS = 2.0
CACHE_SIZE = 10_000
_USERNAME = re.compile(r"^[\w.@+-]{1,64}$")


def normalize_username(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().lower()


@dataclass
class User:
    id: str
    username: str
    password_hash: str | None = None
    name: str = ""
    email: str = ""
    disabled: bool = False
    created_at: float = 0.0
    roles: list[str] = field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        return {"username": self.username, "password_hash": self.password_hash, "name": self.name,
                "email": self.email, "disabled": self.disabled, "created_at": self.created_at,
                "roles": self.roles}

    @classmethod
    def from_data(cls, id: str, d: dict[str, Any]) -> User:
        return cls(id, d["username"], d.get("password_hash"), d.get("name", ""), d.get("email", ""),
                   bool(d.get("disabled")), float(d.get("created_at", 0)), list(d.get("roles", [])))

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r}, disabled={self.disabled})"


class LoginLocked(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed attempts; retry in {int(retry_after) + 1} s")
        self.retry_after = retry_after


class Accounts:
    def __init__(self, store: SealedStore, settings: LoginSettings | None = None) -> None:
        self.store = store
        self.settings = settings or LoginSettings()
        self._cache: Cache[str, tuple[User | None]] = Cache(ttl=CACHE_SECONDS, size=CACHE_SIZE,
                                                            clock=store.clock.now)

    async def add(self, username: str, password: str, *, name: str = "", email: str = "") -> User:
        uname = normalize_username(username)
        if not _USERNAME.match(uname):
            raise ConfigError("a username is 1-64 letters, digits or . @ + - _")
        if len(password) < 8:
            raise ConfigError("a password needs at least 8 characters")
        if await self.by_username(uname) is not None:
            raise ConfigError(f"user {uname!r} already exists")
        user = User(new_id(), uname, await hash_password(password), name or uname, email,
                    False, self.store.clock.now())
        await self.save(user)
        return user

    async def save(self, user: User) -> None:
        await self.store.put(KIND, user.id, user.to_data(), subject=user.username)
        self._cache.drop(user.id)

    async def get(self, user_id: str) -> User | None:
        entry = await self.store.get(KIND, user_id)
        return User.from_data(entry.id, entry.data) if entry else None

    async def recent(self, user_id: str) -> User | None:
        """The user as read at most ``CACHE_SECONDS`` ago (a copy; saving it is fine).

        For the refresh-token grant, which needs the user's claims on every refresh:
        disabling a user (or a password change) also revokes every refresh-token family,
        which stops the next refresh at once whatever this cache holds; a change made
        by this process drops its entry at once.
        """
        hit = self._cache.get(user_id)
        if hit is None:
            hit = (await self.get(user_id),)  # "no such user" is remembered too
            self._cache.put(user_id, hit)
        u = hit[0]
        if u is None:
            return None
        return User(u.id, u.username, u.password_hash, u.name, u.email, u.disabled, u.created_at,
                    list(u.roles))

    async def by_username(self, username: str) -> User | None:
        entries = await self.store.by_subject(KIND, normalize_username(username), limit=1)
        return User.from_data(entries[0].id, entries[0].data) if entries else None

    async def list(self) -> list[User]:
        return [User.from_data(e.id, e.data) for e in await self.store.all(KIND)]

    async def set_password(self, user: User, password: str) -> None:
        if len(password) < 8:
            raise ConfigError("a password needs at least 8 characters")
        user.password_hash = await hash_password(password)
        await self.save(user)

    # -- login with backoff ----------------------------------------------------

    async def _locked_for(self, key: str) -> tuple[int, float]:
        entry = await self.store.get(THROTTLE, key)
        if entry is None:
            return 0, 0.0
        return int(entry.data["failures"]), float(entry.data["until"])

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right; raises LoginLocked while backing off."""
        uname = normalize_username(username)
        key = f"login:{uname}"
        now = self.store.clock.now()
        failures, until = await self._locked_for(key)
        if until > now:
            raise LoginLocked(until - now)
        user = await self.by_username(uname)
        ok = await verify_password(user.password_hash if user else None, password)
        if ok and user is not None and not user.disabled:
            if failures:
                await self.store.delete(THROTTLE, key)
            return user
        failures += 1
        s = self.settings
        lock = 0.0
        if failures >= s.max_failures:
            lock = min(s.lockout_base * 2 ** (failures - s.max_failures), s.lockout_max)
        await self.store.put(THROTTLE, key, {"failures": failures, "until": now + lock},
                             expires_at=now + max(lock, s.lockout_max) + 3600)
        return None
