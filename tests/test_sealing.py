"""AES-256-GCM sealing at rest (SECURITY.md 55): round trips, tampering, swaps, rotation."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgate.errors import CorruptRecord
from authgate.keystore import new_sealing_key
from authgate.sealing import Sealer, SealingKey

KEY = new_sealing_key()


@given(st.binary(max_size=4096), st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    """Whatever is sealed opens to the same bytes under the same associated data."""
    s = Sealer([KEY])
    assert s.open(s.seal(plaintext, aad), aad) == plaintext


@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_bit_flip_fails_closed(plaintext: bytes, data: st.DataObject) -> None:
    """Flipping any bit of a sealed blob makes it fail to open."""
    s = Sealer([KEY])
    blob = bytearray(s.seal(plaintext, b"user:1"))
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(CorruptRecord):
        s.open(bytes(blob), b"user:1")


@given(st.binary(max_size=256), st.integers(0, 40))
def test_truncation_fails_closed(plaintext: bytes, cut: int) -> None:
    """A truncated blob never opens."""
    s = Sealer([KEY])
    blob = s.seal(plaintext, b"a")
    with pytest.raises(CorruptRecord):
        s.open(blob[: max(0, len(blob) - 1 - cut)], b"a")


def test_swapped_between_records_fails() -> None:
    """A blob copied onto another record id does not open (associated data)."""
    s = Sealer([KEY])
    with pytest.raises(CorruptRecord):
        s.open(s.seal(b"alice's tokens", b"provider_token:alice"), b"provider_token:mallory")


def test_rotation_old_keys_open_new_key_seals() -> None:
    """After rotation the new key seals and old blobs still open and ask to be re-sealed."""
    old = Sealer([KEY])
    blob = old.seal(b"x", b"a")
    new_key = new_sealing_key()
    rotated = Sealer([new_key, KEY])
    assert rotated.open(blob, b"a") == b"x"
    assert rotated.needs_reseal(blob)
    assert not rotated.needs_reseal(rotated.seal(b"x", b"a"))
    with pytest.raises(CorruptRecord):
        Sealer([new_key]).open(blob, b"a")


def test_key_validation() -> None:
    """Keys must be 32 bytes; their repr never shows them."""
    with pytest.raises(ValueError, match="32 bytes"):
        SealingKey("k", os.urandom(16))
    assert "key=<hidden>" in repr(KEY)


def test_unknown_key_id_triggers_one_reload() -> None:
    """A record sealed by another process under a newly rotated key opens after a reload."""
    new_key = new_sealing_key()
    writer = Sealer([new_key, KEY])
    calls: list[int] = []

    def reload() -> list[SealingKey]:
        calls.append(1)
        return [new_key, KEY]

    reader = Sealer([KEY], reload=reload)
    assert reader.open(writer.seal(b"x", b"a"), b"a") == b"x"
    assert len(calls) == 1 and reader.active_kid == new_key.kid
