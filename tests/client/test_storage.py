"""Token storages: the encrypted file (permissions, sealing, atomic replace) and the OS keyring."""

from __future__ import annotations

import json
import os
import stat
import sys
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authgate.client import (
    EncryptedFileStorage,
    KeyringStorage,
    KeyringUnavailable,
    MemoryStorage,
    StorageError,
    TokenSet,
    TokenStorage,
)

TOKENS = TokenSet("at-secret-value", expires_at=1_800_003_600.0, refresh_token="rt-secret-value",
                  id_token="id-secret-value", scope="openid offline_access")
FAST = 2**12  # scrypt cost for tests; the default is 2**15


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_is_private_sealed_and_round_trips(tmp_path: Path) -> None:
    """The file is 0600 (in a 0700 directory it creates), holds no token in clear, and reads back."""
    path = tmp_path / "app" / "tokens"
    storage = EncryptedFileStorage(path, passphrase="correct horse", scrypt_n=FAST)
    assert storage.load() is None
    storage.save(TOKENS)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    raw = path.read_bytes()
    for secret in ("at-secret-value", "rt-secret-value", "id-secret-value"):
        assert secret.encode() not in raw
    assert EncryptedFileStorage(path, passphrase="correct horse").load() == TOKENS
    assert not [p for p in path.parent.iterdir() if p.name != "tokens"]  # no temp file left


def test_save_replaces_the_file_atomically(tmp_path: Path) -> None:
    """Each save writes a new inode and renames it over: readers see the old file or the new one."""
    path = tmp_path / "tokens"
    storage = EncryptedFileStorage(path, passphrase="pw", scrypt_n=FAST)
    storage.save(TOKENS)
    inode = path.stat().st_ino
    os.chmod(path, 0o644)  # even a loosened file comes back private
    storage.save(TokenSet("second"))
    assert path.stat().st_ino != inode and mode(path) == 0o600
    assert storage.load() == TokenSet("second")


def test_wrong_passphrase_and_tampering_fail_closed(tmp_path: Path) -> None:
    """A wrong passphrase, an edited ciphertext or an edited header all refuse to open."""
    path = tmp_path / "tokens"
    EncryptedFileStorage(path, passphrase="right", scrypt_n=FAST).save(TOKENS)
    with pytest.raises(StorageError, match="wrong passphrase"):
        EncryptedFileStorage(path, passphrase="wrong").load()
    envelope = json.loads(path.read_text())
    for field, value in (("n", FAST * 2), ("ct", envelope["ct"][:-4] + "AAAA")):
        path.write_text(json.dumps({**envelope, field: value}))
        with pytest.raises(StorageError):
            EncryptedFileStorage(path, passphrase="right").load()


def test_key_file_must_be_private(tmp_path: Path) -> None:
    """A key file readable by others is refused, like ssh refuses such a key."""
    key = EncryptedFileStorage.generate_key_file(tmp_path / "key")
    assert mode(key) == 0o600
    storage = EncryptedFileStorage(tmp_path / "tokens", key_file=key)
    storage.save(TOKENS)
    assert storage.load() == TOKENS
    os.chmod(key, 0o644)
    with pytest.raises(StorageError, match="chmod 600"):
        storage.load()
    with pytest.raises(StorageError, match="key_file="):
        EncryptedFileStorage(tmp_path / "tokens", passphrase="pw").load()


def test_every_storage_is_a_token_storage(tmp_path: Path) -> None:
    """MemoryStorage and EncryptedFileStorage satisfy the TokenStorage protocol, clear included."""
    for storage in (MemoryStorage(), EncryptedFileStorage(tmp_path / "t", passphrase="p",
                                                          scrypt_n=FAST)):
        assert isinstance(storage, TokenStorage)
        storage.save(TOKENS)
        storage.clear()
        assert storage.load() is None
        storage.clear()  # clearing twice is fine


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(access=st.text(min_size=1), refresh=st.none() | st.text(), expires=st.none() | st.floats(
    min_value=0, max_value=4e9), scope=st.none() | st.text())
def test_sealing_round_trips(tmp_path: Path, access: str, refresh: str | None,
                             expires: float | None, scope: str | None) -> None:
    """Whatever the tokens hold (any unicode), the file gives back exactly what was saved."""
    tokens = TokenSet(access, expires_at=expires, refresh_token=refresh, scope=scope)
    key = tmp_path / "key"
    if not key.exists():
        EncryptedFileStorage.generate_key_file(key)
    storage = EncryptedFileStorage(tmp_path / "tokens", key_file=key)
    storage.save(tokens)
    assert storage.load() == tokens


def test_keyring_absent_gives_a_clear_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the keyring package: say how to install it, and what to use instead."""
    monkeypatch.setitem(sys.modules, "keyring", None)  # import keyring -> ImportError
    with pytest.raises(KeyringUnavailable) as caught:
        KeyringStorage("authgate-test", "alice")
    message = str(caught.value)
    assert "pip install 'authgate[keyring]'" in message
    assert "EncryptedFileStorage(" in message


def fake_keyring(*, backend_missing: bool = False) -> types.ModuleType:
    """A stand-in for the keyring package's three functions (its real backends are OS services)."""
    module = types.ModuleType("keyring")
    vault: dict[tuple[str, str], str] = {}

    class NoKeyringError(RuntimeError):
        pass

    def check() -> None:
        if backend_missing:
            raise NoKeyringError("No recommended backend was available.")

    def get_password(service: str, user: str) -> str | None:
        check()
        return vault.get((service, user))

    def set_password(service: str, user: str, password: str) -> None:
        check()
        vault[(service, user)] = password

    def delete_password(service: str, user: str) -> None:
        check()
        vault.pop((service, user))

    module.get_password = get_password  # type: ignore[attr-defined]
    module.set_password = set_password  # type: ignore[attr-defined]
    module.delete_password = delete_password  # type: ignore[attr-defined]
    module.vault = vault  # type: ignore[attr-defined]
    return module


def test_keyring_storage_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a keyring, tokens are one JSON entry under (service, username)."""
    module = fake_keyring()
    monkeypatch.setitem(sys.modules, "keyring", module)
    storage = KeyringStorage("authgate-test", "alice")
    assert storage.load() is None
    storage.save(TOKENS)
    assert set(module.vault) == {("authgate-test", "alice")}
    assert KeyringStorage("authgate-test", "alice").load() == TOKENS
    storage.clear()
    assert storage.load() is None


def test_keyring_without_a_backend_explains_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """keyring installed but no OS keyring (a headless server): same clear advice on first use."""
    monkeypatch.setitem(sys.modules, "keyring", fake_keyring(backend_missing=True))
    storage = KeyringStorage("authgate-test", "alice")
    with pytest.raises(KeyringUnavailable, match="EncryptedFileStorage"):
        storage.save(TOKENS)
