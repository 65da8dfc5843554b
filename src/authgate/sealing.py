"""Sealing secrets at rest with AES-256-GCM under rotating key ids.

A sealed blob is ``b"ag1" | len(kid) | kid | nonce(12) | ciphertext+tag``.
The associated data is the record's identity (kind and id), so a blob copied
onto another record -- another user's, say -- fails to open (SECURITY.md 55).
Keys form an ordered list: the first seals, all of them open, so a new key can
be introduced without downtime and old records re-sealed lazily.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import CorruptRecord

MAGIC = b"ag1"


@dataclass(frozen=True)
class SealingKey:
    kid: str
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("AES-256-GCM keys are 32 bytes")
        if not self.kid or len(self.kid.encode()) > 64:
            raise ValueError("a sealing key id must be 1-64 bytes")

    def __repr__(self) -> str:
        return f"SealingKey(kid={self.kid!r}, key=<hidden>)"


class Sealer:
    """Seals with the first key of the list, opens with any of them."""

    RELOAD_SECONDS = 1.0

    def __init__(self, keys: list[SealingKey],
                 reload: Callable[[], list[SealingKey]] | None = None) -> None:
        """``reload`` re-reads the key list (e.g. keys.json) when a record names a key we
        do not know yet -- another process rotated keys -- at most once a second."""
        self._reload = reload
        self._reloaded_at = float("-inf")
        self._install(keys)

    def _install(self, keys: list[SealingKey]) -> None:
        if not keys:
            raise ValueError("at least one sealing key is required")
        self.keys = list(keys)
        self._by_kid = {k.kid: AESGCM(k.key) for k in keys}
        self._active = keys[0].kid
        self._active_aead = self._by_kid[self._active]
        kid = self._active.encode()
        self._header = MAGIC + bytes([len(kid)]) + kid
        """What every blob sealed under the active key starts with."""

    def _try_reload(self) -> bool:
        now = time.monotonic()
        if self._reload is None or now - self._reloaded_at < self.RELOAD_SECONDS:
            return False
        self._reloaded_at = now
        try:
            self._install(self._reload())
        except (OSError, ValueError):
            return False
        return True

    @property
    def active_kid(self) -> str:
        return self._active

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return self._header + nonce + self._active_aead.encrypt(nonce, plaintext, aad)

    def kid_of(self, blob: bytes) -> str:
        if len(blob) < 4 or blob[:3] != MAGIC:
            raise CorruptRecord("not a sealed record")
        n = blob[3]
        return blob[4 : 4 + n].decode("utf-8", "replace")

    def open(self, blob: bytes, aad: bytes) -> bytes:
        kid = self.kid_of(blob)
        aead = self._by_kid.get(kid)
        if aead is None and self._try_reload():
            aead = self._by_kid.get(kid)
        if aead is None:
            raise CorruptRecord(f"record sealed with unknown key id {kid!r}")
        start = 4 + blob[3]
        nonce, ct = blob[start : start + 12], blob[start + 12 :]
        if len(nonce) != 12 or len(ct) < 16:
            raise CorruptRecord("sealed record is truncated")
        try:
            return aead.decrypt(nonce, ct, aad)
        except InvalidTag:
            raise CorruptRecord("sealed record failed authentication") from None

    def needs_reseal(self, blob: bytes) -> bool:
        return self.kid_of(blob) != self._active
