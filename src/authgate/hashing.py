"""Opaque credentials: generation, keyed hashing, constant-time comparison.

Refresh tokens, authorization codes, session ids and client secrets are 256-bit
random strings, so a fast keyed hash (HMAC-SHA256 under a server "pepper") is
all that is needed to store them: a database dump alone yields nothing usable,
and lookup by hash stays O(1). Slow password hashes (argon2) are only for
human passwords (:mod:`authgate.passwords`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from typing import Final

REFRESH_PREFIX: Final = "agr_"
CODE_PREFIX: Final = "agc_"
SESSION_PREFIX: Final = "ags_"
CLIENT_SECRET_PREFIX: Final = "agcs_"


class Secret:
    """A string that never shows itself in ``repr`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def b64url(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token(prefix: str, nbytes: int = 32) -> str:
    """A fresh opaque credential: recognisable prefix + 256 random bits."""
    return prefix + b64url(os.urandom(nbytes))  # what secrets.token_bytes returns, minus two calls


def new_id(nbytes: int = 16) -> str:
    """A random identifier (not a credential): 128 bits, url-safe."""
    return b64url(os.urandom(nbytes))


class TokenHasher:
    """HMAC-SHA256 under a server key; what the store keeps instead of a credential."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the token hashing key must be at least 32 bytes")
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        # RFC 2104 with both pads absorbed once: each MAC continues copies of the two
        # states. The same bytes as hmac.new(key, data, "sha256") at well under half
        # the cost of copying an hmac.HMAC (a Python object) per call.
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def _mac(self, data: str) -> bytes:
        inner = self._inner.copy()
        inner.update(data.encode("utf-8", "surrogatepass"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def hash(self, token: str) -> str:
        return b64url(self._mac(token))

    def verify(self, token: str, expected_hash: str) -> bool:
        return hmac.compare_digest(self.hash(token), expected_hash)

    def derive(self, label: str, token: str, prefix: str) -> str:
        """A credential derived deterministically from another (rotation successors).

        Knowing ``token`` is not enough to compute the result: it also takes the
        server key. Every concurrent rotation of one refresh token therefore
        arrives at the *same* successor without coordinating.
        """
        return prefix + b64url(self._mac(f"{label}\x00{token}"))


def equal(a: str, b: str) -> bool:
    """Constant-time string comparison for secrets."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))
