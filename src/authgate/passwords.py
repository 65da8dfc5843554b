"""Human passwords: argon2id, always off the event loop.

An argon2 hash or verify costs ~150 ms with the library defaults, which would
stall every other request if run inline; :func:`hash_password` and
:func:`verify_password` run it in a worker thread.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
_dummy: str | None = None


def _dummy_hash() -> str:
    """A real hash to verify against when the account does not exist, so a missing
    user costs the same time as a wrong password (no username enumeration)."""
    global _dummy
    if _dummy is None:
        _dummy = _hasher.hash("authgate-dummy-password")
    return _dummy

MAX_PASSWORD_CHARS = 1024


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(hash_: str, password: str) -> bool:
    try:
        return _hasher.verify(hash_, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(hash_: str | None, password: str) -> bool:
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    ok = await asyncio.to_thread(_verify, hash_ or _dummy_hash(), password)
    return ok and hash_ is not None
