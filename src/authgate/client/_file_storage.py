"""Tokens in a local file: AES-256-GCM sealed, mode 0600, replaced atomically.

The file is a small JSON envelope: ``{"v": 1, "kdf": "scrypt"|"key-file",
"n", "r", "p", "salt", "nonce", "ct"}``. The header fields are the AEAD's
associated data, so changing the KDF parameters or salt breaks authentication
instead of silently deriving another key.

The key comes either from a passphrase through scrypt (RFC 7914; N=2^15, r=8,
p=1 by default -- about 50 ms and 32 MiB, once per process) or from a key
file of 32 random bytes that must itself be private (0600), as ssh insists
for its keys.

A save writes a temporary file in the same directory, fsyncs it, renames it
over the old one and fsyncs the directory: a crash leaves either the old file
or the new one, never a torn one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ._errors import StorageError
from ._tokens import TokenSet

VERSION = 1
KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.urlsafe_b64decode(text)


def _check_private(path: Path, what: str) -> None:
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StorageError(f"{what} {path} is readable by other users: chmod 600 {path}")


class EncryptedFileStorage:
    """A :class:`~authgate.client.TokenStorage` in an encrypted 0600 file.

    Give exactly one of ``passphrase`` or ``key_file``
    (:meth:`generate_key_file` makes one).
    """

    def __init__(self, path: str | os.PathLike[str], *, passphrase: str | bytes | None = None,
                 key_file: str | os.PathLike[str] | None = None, scrypt_n: int = 2**15) -> None:
        if (passphrase is None) == (key_file is None):
            raise ValueError("give exactly one of passphrase= or key_file=")
        if isinstance(passphrase, str):
            passphrase = passphrase.encode()
        if passphrase is not None and not passphrase:
            raise ValueError("the passphrase must not be empty")
        self.path = Path(path)
        self._passphrase = passphrase
        self._key_file = Path(key_file) if key_file is not None else None
        self._n = scrypt_n
        self._keys: dict[tuple[bytes, int, int, int], bytes] = {}

    def __repr__(self) -> str:
        return f"EncryptedFileStorage({str(self.path)!r})"

    @staticmethod
    def generate_key_file(path: str | os.PathLike[str]) -> Path:
        """Write 32 random bytes to a new 0600 file (refuses to overwrite)."""
        p = Path(path)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        return p

    # -- keys -----------------------------------------------------------------

    def _key(self, header: dict[str, Any]) -> bytes:
        if header["kdf"] == "key-file":
            if self._key_file is None:
                raise StorageError(f"{self.path} was sealed with a key file; pass key_file=")
            _check_private(self._key_file, "key file")
            key = self._key_file.read_bytes()
            if len(key) != KEY_BYTES:
                raise StorageError(f"key file {self._key_file} must hold exactly {KEY_BYTES} bytes")
            return key
        if self._passphrase is None:
            raise StorageError(f"{self.path} was sealed with a passphrase; pass passphrase=")
        salt, n, r, p = _unb64(header["salt"]), int(header["n"]), int(header["r"]), int(header["p"])
        if not (2**10 <= n <= 2**20 and r == 8 and p == 1):
            raise StorageError(f"{self.path} has unexpected scrypt parameters")
        cached = self._keys.get((salt, n, r, p))
        if cached is None:
            cached = Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(self._passphrase)
            self._keys = {(salt, n, r, p): cached}
        return cached

    def _new_header(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        if self._key_file is not None:
            return {"v": VERSION, "kdf": "key-file"}
        if previous is not None and previous.get("kdf") == "scrypt":
            # Keep the salt: the derived key is cached, so a save costs no scrypt run.
            return {k: previous[k] for k in ("v", "kdf", "n", "r", "p", "salt")}
        return {"v": VERSION, "kdf": "scrypt", "n": self._n, "r": 8, "p": 1,
                "salt": _b64(secrets.token_bytes(16))}

    @staticmethod
    def _aad(header: dict[str, Any]) -> bytes:
        return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()

    # -- TokenStorage ---------------------------------------------------------

    def _read_envelope(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            env = json.loads(raw)
            if not isinstance(env, dict) or env.get("v") != VERSION:
                raise ValueError
        except ValueError:
            raise StorageError(f"{self.path} is not an authgate token file") from None
        return env

    def load(self) -> TokenSet | None:
        env = self._read_envelope()
        if env is None:
            return None
        header = {k: v for k, v in env.items() if k not in ("nonce", "ct")}
        try:
            plain = AESGCM(self._key(header)).decrypt(_unb64(env["nonce"]), _unb64(env["ct"]),
                                                      self._aad(header))
            return TokenSet.from_dict(json.loads(plain))
        except (InvalidTag, KeyError, ValueError, TypeError):
            raise StorageError(f"cannot open {self.path}: wrong passphrase or key, "
                               "or the file was modified") from None

    def save(self, tokens: TokenSet) -> None:
        try:
            previous = self._read_envelope()
        except StorageError:
            previous = None
        header = self._new_header(previous)
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._key(header)).encrypt(nonce, json.dumps(tokens.to_dict()).encode(),
                                               self._aad(header))
        data = json.dumps({**header, "nonce": _b64(nonce), "ct": _b64(ct)}).encode()
        self._write_atomically(data)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write_atomically(self, data: bytes) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"cannot write in {directory}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp created it 0600
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"cannot write {self.path}: {exc.strerror}") from None
        if os.name == "posix":
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
