"""Local key material: the sealing keys and the token-hashing key.

These keys protect the store, so they cannot live in it. They come from the
environment (``AUTHGATE_SEALING_KEYS="kid:base64key,..."``, first one seals;
``AUTHGATE_HASH_KEY=base64``) or from ``<data_dir>/keys.json`` (mode 0600),
which is generated on first start. Every instance sharing a store must share
these keys. Signing keys, by contrast, are kept sealed in the store
(:mod:`authgate.signing`) so every instance serves the same JWKS.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .hashing import b64url, b64url_decode
from .sealing import SealingKey

KEYS_FILE = "keys.json"


@dataclass
class LocalKeys:
    sealing: list[SealingKey]
    hash_key: bytes
    path: Path | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "sealing": [{"kid": k.kid, "key": b64url(k.key)} for k in self.sealing],
                "hash_key": b64url(self.hash_key),
            },
            indent=2,
        )


def new_sealing_key() -> SealingKey:
    return SealingKey(kid=time.strftime("s%Y%m%d-") + secrets.token_hex(3), key=secrets.token_bytes(32))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _parse_sealing(value: str) -> list[SealingKey]:
    keys = []
    for item in value.split(","):
        kid, sep, key = item.strip().partition(":")
        if not sep:
            raise ConfigError("AUTHGATE_SEALING_KEYS must be 'kid:base64key[,kid:base64key...]'")
        try:
            keys.append(SealingKey(kid, b64url_decode(key)))
        except ValueError as exc:
            raise ConfigError(f"AUTHGATE_SEALING_KEYS: key {kid!r}: {exc}") from None
    return keys


def load_local_keys(data_dir: str | Path, environ: dict[str, str] | None = None,
                    create: bool = True) -> LocalKeys:
    env = os.environ if environ is None else environ
    if env.get("AUTHGATE_SEALING_KEYS") and env.get("AUTHGATE_HASH_KEY"):
        return LocalKeys(_parse_sealing(env["AUTHGATE_SEALING_KEYS"]),
                         b64url_decode(env["AUTHGATE_HASH_KEY"]))
    path = Path(data_dir) / KEYS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keys = LocalKeys(
                [SealingKey(k["kid"], b64url_decode(k["key"])) for k in data["sealing"]],
                b64url_decode(data["hash_key"]),
                path,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a valid keys file: {exc}") from None
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return keys
    if not create:
        raise ConfigError(f"no key material: {path} does not exist (run `authgate init`)")
    keys = LocalKeys([new_sealing_key()], secrets.token_bytes(32), path)
    _write_private(path, keys.to_json())
    return keys


def save_local_keys(keys: LocalKeys) -> None:
    if keys.path is None:
        raise ConfigError("key material comes from the environment; update AUTHGATE_SEALING_KEYS there")
    _write_private(keys.path, keys.to_json())
