"""Token hashing: the stored form of every credential must not change between versions."""

from __future__ import annotations

import base64
import hashlib
import hmac

from authgate.hashing import TokenHasher, b64url

KEY = bytes(range(32))


def reference(message: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(KEY, message, hashlib.sha256).digest()).rstrip(b"=").decode()


def test_hash_and_derive_are_plain_hmac_sha256() -> None:
    """Hashes stored by earlier versions still match, however often the hasher is used."""
    hasher = TokenHasher(KEY)
    for token in ("agr_abc", "agr_abc", "ünïcode", ""):
        assert hasher.hash(token) == reference(token.encode())
    assert hasher.derive("rotate", "agr_x", "agr_") == "agr_" + reference(b"rotate\x00agr_x")


def test_b64url_is_unpadded_urlsafe_base64() -> None:
    """Every length, every byte value."""
    for n in range(67):
        data = bytes((i * 37 + 250) % 256 for i in range(n))
        assert b64url(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_every_key_length_gives_plain_hmac_sha256() -> None:
    """Keys shorter than, equal to and longer than SHA-256's block are used as RFC 2104 says."""
    for n in (32, 48, 64, 65, 100):
        key = bytes((i * 7 + n) % 256 for i in range(n))
        for text in ("", "agr_abc", "x" * 200):
            want = b64url(hmac.new(key, text.encode(), hashlib.sha256).digest())
            assert TokenHasher(key).hash(text) == want
